package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/evq/evq"
)

// Default engine settings.
const (
	DefaultReadBatch    = 256
	DefaultRetryInitial = 100 * time.Millisecond
	DefaultRetryMax     = 30 * time.Second
	DefaultKeepExpired  = 7 * 24 * time.Hour
)

// Options configure an Engine. A nil *Options means all defaults, except
// NewTransportFunc, which is required.
type Options struct {
	// NewTransportFunc builds the transport of a subscription. It must not
	// connect; it is also called at subscribe time to validate the socket.
	NewTransportFunc func(evq.Subscription) (evq.Transport, error)
	// ReadBatch is how many events a worker reads from the log at once and,
	// for non-reliable subscriptions, sends in one write. 0 means 256.
	ReadBatch int
	// RetryInitial and RetryMax bound the exponential backoff between
	// attempts (factor 2, jitter ±50%). 0 means 100 ms and 30 s.
	RetryInitial, RetryMax time.Duration
	// KeepExpired is how long an expired subscription keeps its cursor (and
	// holds back retention) before it is removed; renewing it within that
	// time delivers what it missed. 0 means 7 days; negative means forever.
	KeepExpired time.Duration
	// SweepInterval is how often expired subscriptions are looked at. 0
	// means 1 minute.
	SweepInterval time.Duration
	// NowFunc returns the current time. nil means time.Now.
	NowFunc func() time.Time
	// Logger receives delivery failures. nil means slog.Default().
	Logger *slog.Logger
}

// Engine raises events and delivers them to subscribers.
type Engine struct {
	log  Log
	opts Options

	mu       sync.Mutex
	closed   bool
	closing  atomic.Bool                    // set with closed; read by raises without taking mu
	subs     map[uint64]*evq.Subscription   // by ID; the lanes of PARALLEL groups are not here
	lanes    map[uint64][]*evq.Subscription // a PARALLEL group's ID → its member lanes, in member order
	workers  map[uint64]*worker             // by subscription ID: plain subscriptions and lanes
	counters map[uint64]*counters
	readers  map[string]*atomic.Int32 // by event name: the workers running for it
	stop     chan struct{}            // closed by Close: workers finish their batch
	ctx      context.Context          // canceled when Close's deadline passes
	cancel   context.CancelFunc       // cancels ctx
	wg       sync.WaitGroup
}

// New returns an engine on log. Call Start to load the stored subscriptions.
func New(log Log, opts *Options) *Engine {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.ReadBatch <= 0 {
		o.ReadBatch = DefaultReadBatch
	}
	if o.RetryInitial <= 0 {
		o.RetryInitial = DefaultRetryInitial
	}
	if o.RetryMax <= 0 {
		o.RetryMax = DefaultRetryMax
	}
	if o.KeepExpired == 0 {
		o.KeepExpired = DefaultKeepExpired
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = time.Minute
	}
	if o.NowFunc == nil {
		o.NowFunc = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Engine{
		log:     log,
		opts:    o,
		subs:    make(map[uint64]*evq.Subscription),
		lanes:   make(map[uint64][]*evq.Subscription),
		workers: make(map[uint64]*worker),
		readers: make(map[string]*atomic.Int32),
		stop:    make(chan struct{}),
		ctx:     ctx,
		cancel:  cancel,
	}
}

// Start loads the stored subscriptions and starts a worker for each one that
// has not expired. Delivery resumes from the stored cursors.
func (e *Engine) Start() error {
	subs, err := e.log.Subscriptions()
	if err != nil {
		return fmt.Errorf("start engine: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range subs {
		if s := &subs[i]; s.Parent == 0 {
			e.subs[s.ID] = s
		}
	}
	for i := range subs {
		s := &subs[i]
		if s.Parent == 0 {
			continue
		}
		if p := e.subs[s.Parent]; p == nil || !slices.Contains(parallelMembers(p), s.Socket) {
			// Left by a crash while its group was being removed.
			if err := e.log.DeleteSubscription(s.ID); err != nil {
				return fmt.Errorf("start engine: %w", err)
			}
			continue
		}
		e.lanes[s.Parent] = append(e.lanes[s.Parent], s)
	}
	for _, s := range e.subs {
		if members := parallelMembers(s); members != nil {
			if err := e.ensureLanesLocked(s, members, 0, false); err != nil {
				return fmt.Errorf("start engine: subscription %d: %w", s.ID, err)
			}
		}
		if err := e.startWorker(s); err != nil {
			e.opts.Logger.Error("subscription cannot run", "id", s.ID, "socket", s.Socket, "err", err)
		}
	}
	if e.opts.KeepExpired > 0 {
		e.wg.Add(1)
		go e.sweepLoop()
	}
	return nil
}

// sweepLoop removes subscriptions that expired more than KeepExpired ago.
func (e *Engine) sweepLoop() {
	defer e.wg.Done()
	t := time.NewTicker(e.opts.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			e.Sweep()
		}
	}
}

// Sweep removes the subscriptions that expired more than KeepExpired ago,
// with their cursors and dead letters, and returns how many it removed.
func (e *Engine) Sweep() int {
	if e.opts.KeepExpired <= 0 {
		return 0
	}
	now := e.opts.NowFunc()
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for id, s := range e.subs {
		if at := s.ExpiresAt(); at.IsZero() || now.Sub(at) <= e.opts.KeepExpired {
			continue
		}
		if err := e.unsubscribeLocked(id); err != nil {
			e.opts.Logger.Error("removing an expired subscription", "id", id, "err", err)
			continue
		}
		e.opts.Logger.Info("removed a long-expired subscription", "id", id, "event", s.Event, "socket", s.Socket)
		n++
	}
	return n
}

// Close stops accepting raises and subscriptions, lets workers finish the
// batch they are sending until ctx ends, then cancels them. Cursors are left
// for the log to flush when it closes. Close is safe to call twice.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.closing.Store(true)
	close(e.stop)
	e.mu.Unlock()
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("close engine: %w", ctx.Err())
	}
	e.cancel()
	<-done
	return err
}

// Raise stores ev durably and returns after the fsync, with ev.Seq set.
func (e *Engine) Raise(ctx context.Context, ev *evq.Event) error {
	return e.RaiseBatch(ctx, []*evq.Event{ev})
}

// RaiseBatch stores events durably in one commit, with consecutive seqs.
func (e *Engine) RaiseBatch(ctx context.Context, events []*evq.Event) error {
	if e.closing.Load() {
		return ErrClosed
	}
	if len(events) == 0 {
		return nil
	}
	return e.log.Append(ctx, events...)
}

// SubscribeRequest asks for a subscription of Event to Socket.
type SubscribeRequest struct {
	Event   string
	Socket  string
	Options evq.Options
	Expire  int   // seconds; 0 means never
	Start   Start // where to begin; see StartDefault
}

// Subscribe creates the (event, socket) subscription, or refreshes it if it
// exists: its options and expiry are replaced and its worker restarted. A
// refreshed subscription resumes from its cursor unless req.Start says
// otherwise, so a subscriber that comes back after expiring receives what it
// missed.
func (e *Engine) Subscribe(ctx context.Context, req SubscribeRequest) (Status, error) {
	if err := evq.ValidateName(req.Event); err != nil {
		return Status{}, err
	}
	if req.Expire < 0 {
		return Status{}, fmt.Errorf("expire %d: must be 0 (never) or a number of seconds", req.Expire)
	}
	sock, err := evq.ParseSocket(req.Socket)
	if err != nil {
		return Status{}, err
	}
	if err := checkGroupOptions(sock, req.Options); err != nil {
		return Status{}, err
	}
	now := e.opts.NowFunc()
	sub := evq.Subscription{Event: req.Event, Socket: sock.String(), Options: req.Options, Expire: req.Expire, Created: now, Refreshed: now}
	members := parallelMembers(&sub)
	if err := e.checkTransport(&sub, members); err != nil {
		return Status{}, err
	}
	warnings := sock.Warnings(sub.Options)
	for _, w := range warnings {
		e.opts.Logger.Warn("subscription: "+w, "event", sub.Event, "socket", sub.Socket)
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return Status{}, ErrClosed
	}
	old := e.findLocked(sub.Event, sub.Socket)
	setCursor := req.Start.Kind != StartDefault || old == nil
	var cursor uint64
	if setCursor {
		if cursor, err = e.cursorFor(sub.Event, req.Start); err != nil {
			return Status{}, err
		}
	}
	if old != nil {
		sub.ID, sub.Created = old.ID, old.Created
		e.stopWorkerLocked(old.ID)
	}
	err = e.log.PutSubscription(&sub, cursor, setCursor)
	if err == nil && members != nil {
		err = e.ensureLanesLocked(&sub, members, cursor, setCursor)
	}
	if err != nil {
		if old != nil {
			e.startWorker(old)
		}
		return Status{}, err
	}
	e.subs[sub.ID] = &sub
	if err := e.startWorker(&sub); err != nil {
		return Status{}, err
	}
	st := e.statusLocked(&sub)
	st.Warnings = warnings
	return st, nil
}

// checkGroupOptions refuses virtual group options that make no sense.
func checkGroupOptions(sock evq.Socket, o evq.Options) error {
	switch o.ParallelSuccess {
	case "", evq.SuccessAll, evq.SuccessAny:
	default:
		return fmt.Errorf("%w: parallel_success %q: want %q (every member acknowledged the event, the default) or %q (at least one did)",
			evq.ErrInvalidOptions, o.ParallelSuccess, evq.SuccessAll, evq.SuccessAny)
	}
	if o.ParallelSuccess != "" && sock.Policy != evq.PolicyParallel {
		return fmt.Errorf("%w: parallel_success applies to virtual:PARALLEL groups only", evq.ErrInvalidOptions)
	}
	if o.BreakerFailures < 0 {
		return fmt.Errorf("%w: breaker_failures %d: want a number of consecutive failures, 1 or more", evq.ErrInvalidOptions, o.BreakerFailures)
	}
	return nil
}

// checkTransport builds (without connecting) the transport of sub, or of
// each of its PARALLEL members, to see that evq can deliver to it.
func (e *Engine) checkTransport(sub *evq.Subscription, members []string) error {
	subs := []evq.Subscription{*sub}
	if members != nil {
		subs = subs[:0]
		for _, m := range members {
			lane := laneSubscription(sub, m)
			lane.Parent = 1 // any ID: its transport is built as a lane's
			subs = append(subs, lane)
		}
	}
	for _, s := range subs {
		tr, err := e.opts.NewTransportFunc(s)
		if err != nil {
			return err
		}
		if err := tr.Close(); err != nil {
			return err
		}
	}
	return nil
}

func (e *Engine) findLocked(event, socket string) *evq.Subscription {
	for _, s := range e.subs {
		if s.Event == event && s.Socket == socket {
			return s
		}
	}
	return nil
}

// Find returns the subscription of event to socket.
func (e *Engine) Find(event, socket string) (Status, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.findLocked(event, socket)
	if s == nil {
		return Status{}, fmt.Errorf("subscription of %s to %s: %w", event, socket, evq.ErrNotFound)
	}
	return e.statusLocked(s), nil
}

// Unsubscribe stops and removes subscription id with its cursor and dead
// letters.
func (e *Engine) Unsubscribe(ctx context.Context, id uint64) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.subs[id]; !ok {
		return fmt.Errorf("subscription %d: %w", id, evq.ErrNotFound)
	}
	return e.unsubscribeLocked(id)
}

func (e *Engine) unsubscribeLocked(id uint64) error {
	e.stopWorkerLocked(id)
	for _, lane := range e.lanes[id] {
		if err := e.log.DeleteSubscription(lane.ID); err != nil {
			return err
		}
		delete(e.counters, lane.ID)
	}
	delete(e.lanes, id)
	if err := e.log.DeleteSubscription(id); err != nil {
		return err
	}
	delete(e.subs, id)
	delete(e.counters, id)
	return nil
}

// Replay moves subscription id's cursor back (or forward) so that delivery
// starts again at from. Events already deleted by retention cannot be
// replayed.
func (e *Engine) Replay(ctx context.Context, id uint64, from Start) (Status, error) {
	if from.Kind != StartSeq && from.Kind != StartTime && from.Kind != StartEarliest && from.Kind != StartNow {
		return Status{}, fmt.Errorf("%w: replay needs a seq or a time", ErrBadStart)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	sub, ok := e.subs[id]
	if !ok {
		return Status{}, fmt.Errorf("subscription %d: %w", id, evq.ErrNotFound)
	}
	cursor, err := e.cursorFor(sub.Event, from)
	if err != nil {
		return Status{}, err
	}
	e.stopWorkerLocked(id)
	for _, lane := range e.lanes[id] {
		e.log.SetCursor(lane.ID, cursor)
	}
	err = e.log.SetCursorSync(ctx, id, cursor)
	if serr := e.startWorker(sub); err == nil {
		err = serr
	}
	if err != nil {
		return Status{}, fmt.Errorf("replay subscription %d: %w", id, err)
	}
	return e.statusLocked(sub), nil
}

// DeadLetters lists up to max dead letters of subscription id after seq.
// Those of a PARALLEL group's members name the member.
func (e *Engine) DeadLetters(id, after uint64, max int) ([]*evq.DeadLetter, error) {
	lanes, err := e.lanesOf(id)
	if err != nil {
		return nil, err
	}
	if lanes != nil {
		return e.laneDeadLetters(lanes, after, max)
	}
	return e.log.DeadLetters(id, after, max)
}

// PurgeDeadLetters deletes every dead letter of subscription id.
func (e *Engine) PurgeDeadLetters(id uint64) (int, error) {
	lanes, err := e.lanesOf(id)
	if err != nil {
		return 0, err
	}
	if lanes == nil {
		return e.log.DeleteDeadLetters(id)
	}
	total := 0
	for _, lane := range lanes {
		n, err := e.log.DeleteDeadLetters(lane.ID)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// lanesOf returns the lanes of subscription id, nil if it is not a PARALLEL
// group, or ErrNotFound.
func (e *Engine) lanesOf(id uint64) ([]*evq.Subscription, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.subs[id]; !ok {
		return nil, fmt.Errorf("subscription %d: %w", id, evq.ErrNotFound)
	}
	return e.lanes[id], nil
}

// Redrive asks subscription id's worker to send its dead letters again, and
// returns how many there are. Each one that is delivered leaves the
// dead-letter store; one that fails again for good stays there.
func (e *Engine) Redrive(id uint64) (int, error) {
	e.mu.Lock()
	_, ok := e.subs[id]
	ids := []uint64{id}
	if lanes := e.lanes[id]; lanes != nil {
		ids = ids[:0]
		for _, lane := range lanes {
			ids = append(ids, lane.ID)
		}
	}
	var workers []*worker
	for _, wid := range ids {
		if w := e.workers[wid]; w != nil {
			workers = append(workers, w)
		}
	}
	e.mu.Unlock()
	if !ok {
		return 0, fmt.Errorf("subscription %d: %w", id, evq.ErrNotFound)
	}
	if len(workers) < len(ids) {
		return 0, fmt.Errorf("subscription %d: %w", id, ErrNotRunning)
	}
	total := 0
	for i, w := range workers {
		n, err := e.log.DeadLetterCount(ids[i])
		if err != nil {
			return 0, err
		}
		total += n
		select {
		case w.redrive <- struct{}{}:
		default: // already asked
		}
	}
	return total, nil
}

// Subscription returns the status of subscription id.
func (e *Engine) Subscription(id uint64) (Status, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s, ok := e.subs[id]
	if !ok {
		return Status{}, fmt.Errorf("subscription %d: %w", id, evq.ErrNotFound)
	}
	return e.statusLocked(s), nil
}

// Subscriptions returns the status of every subscription, by ID.
func (e *Engine) Subscriptions() []Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Status, 0, len(e.subs))
	for _, s := range e.subs {
		out = append(out, e.statusLocked(s))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// startWorker starts a worker for sub unless it has expired. e.mu is held.
func (e *Engine) startWorker(sub *evq.Subscription) error {
	if e.closed || sub.Expired(e.opts.NowFunc()) {
		return nil
	}
	if e.lanes[sub.ID] != nil {
		return e.startLanes(sub)
	}
	cursor, err := e.log.Cursor(sub.ID)
	if err != nil {
		return err
	}
	tr, err := e.opts.NewTransportFunc(*sub)
	if err != nil {
		return err
	}
	w := newWorker(e, *sub, tr, cursor)
	e.workers[sub.ID] = w
	e.wg.Add(1)
	go w.run()
	return nil
}

// stopWorkerLocked stops sub id's worker and waits for it. Its cursor is
// handed to the log. e.mu is held; workers never take it.
func (e *Engine) stopWorkerLocked(id uint64) {
	for _, lane := range e.lanes[id] {
		e.stopWorkerLocked(lane.ID)
	}
	w := e.workers[id]
	if w == nil {
		return
	}
	delete(e.workers, id)
	w.cancel()
	<-w.done
}

// errExpired is the worker's exit reason when its subscription expires.
var errExpired = errors.New("expired")
