package delivery

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/evq/evq"
)

// worker delivers one subscription's events. It owns the subscription's
// cursor while it runs.
type worker struct {
	e   *Engine
	sub evq.Subscription
	tr  evq.Transport
	st  *counters

	cursor   atomic.Uint64
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{}
	redrive  chan struct{}
	bo       *backoff.ExponentialBackOff
	attempts int // failed attempts of the event at the head

	group *group // the PARALLEL group this worker is a lane of, or nil
	lane  int    // its index in group

	redriveStart time.Time // while redriving: max_age counts from here

	// Two batches' memory, reused from read to read: the batch being
	// delivered, and the next one, read meanwhile (see prefetch).
	bufs [2]batch
	cur  int // index in bufs of the batch being delivered

	bigReads bool // the last batch was delivered without a failure

	// readers counts the running workers of sub.Event. With shareReaders or
	// more, reads share what they decode (queue.Log.ReadShared).
	readers *atomic.Int32
}

// batch is one read from the log.
type batch struct {
	after  uint64          // the cursor it was read after
	size   int             // how many events were asked for
	notify <-chan struct{} // closed by the next append after the read began
	buf    []evq.Event
	ptrs   []*evq.Event
	err    error
}

// counters are a subscription's delivery counts; they outlive its workers.
type counters struct {
	delivered, failures, retries, parked atomic.Uint64
	mu                                   sync.Mutex
	state                                string
	lastErr                              string
	lastErrAt                            time.Time
}

func (c *counters) setState(s string) {
	c.mu.Lock()
	c.state = s
	c.mu.Unlock()
}

func newWorker(e *Engine, sub evq.Subscription, tr evq.Transport, cursor uint64) *worker {
	ctx, cancel := context.WithCancel(e.ctx)
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = e.opts.RetryInitial
	bo.MaxInterval = e.opts.RetryMax
	bo.Multiplier = 2
	bo.RandomizationFactor = 0.5
	bo.MaxElapsedTime = 0
	bo.Reset()
	readers := e.readers[sub.Event]
	if readers == nil {
		readers = new(atomic.Int32)
		e.readers[sub.Event] = readers
	}
	w := &worker{e: e, sub: sub, tr: tr, st: e.countersLocked(sub.ID), ctx: ctx, cancel: cancel,
		done: make(chan struct{}), redrive: make(chan struct{}, 1), bo: bo, readers: readers}
	w.cursor.Store(cursor)
	w.st.setState(StateActive)
	return w
}

// stopping reports whether the worker should return: it was stopped, or the
// engine is closing (in which case the batch in hand was finished).
func (w *worker) stopping() bool {
	select {
	case <-w.ctx.Done():
		return true
	case <-w.e.stop:
		return true
	default:
		return false
	}
}

func (w *worker) run() {
	defer w.e.wg.Done()
	w.readers.Add(1)
	defer w.readers.Add(-1)
	defer close(w.done)
	defer w.cancel()
	defer w.tr.Close()
	var expiry <-chan time.Time
	if at := w.sub.ExpiresAt(); !at.IsZero() {
		t := time.NewTimer(at.Sub(w.e.opts.NowFunc()))
		defer t.Stop()
		expiry = t.C
	}
	var next chan *batch // the prefetch in progress, if any
	defer func() {
		if next != nil {
			<-next
		}
	}()
	for !w.stopping() {
		if w.sub.Expired(w.e.opts.NowFunc()) {
			w.st.setState(StateExpired)
			return
		}
		select {
		case <-w.redrive:
			w.redriveAll()
			continue
		default:
		}
		var b *batch
		if next != nil {
			b, next = <-next, nil
			w.cur = 1 - w.cur
			if b.after != w.cursor.Load() {
				b = nil // the batch before it was not all delivered
			}
		}
		if b == nil {
			b = w.read(&w.bufs[w.cur], w.cursor.Load(), w.readSize())
		}
		if b.err != nil {
			w.fail(b.err)
			if !w.wait(w.bo.NextBackOff()) {
				return
			}
			continue
		}
		if len(b.ptrs) == 0 {
			select {
			case <-b.notify:
			case <-w.redrive:
				w.redriveAll()
			case <-expiry:
			case <-w.ctx.Done():
				return
			case <-w.e.stop:
				return
			}
			continue
		}
		if w.bigReads && len(b.ptrs) == b.size {
			// A full read: more is likely waiting. (A short one means the
			// worker has caught up, and a read ahead would find nothing.)
			next = w.prefetch(b.ptrs[len(b.ptrs)-1].Seq)
		}
		w.deliver(b.ptrs, w.advance, w.park)
	}
}

// prefetch reads the batch after seq into the spare buffer while the
// current batch is delivered, so that the transport does not sit idle while
// the store is read and decoded. The read is thrown away if the cursor did
// not reach the current batch's end (the worker was stopped midway).
func (w *worker) prefetch(after uint64) chan *batch {
	out := make(chan *batch, 1)
	b := &w.bufs[1-w.cur]
	n := w.readSize()
	go func() { out <- w.read(b, after, n) }()
	return out
}

// windowed reports whether the transport keeps max_inflight requests in
// flight by itself across a batch longer than the window (stream.Transport
// in reliable mode), so that batches need not be cut to the window and the
// pipe stays full from one window to the next.
func (w *worker) windowed() bool {
	wt, ok := w.tr.(interface{ Windowed() bool })
	return ok && wt.Windowed()
}

// readSize is how many events the next read takes: Options.ReadBatch, or,
// for a windowed transport that delivered the whole last batch, up to four
// windows, so that the window slides over more than one. A subscriber that
// fails drops back to ReadBatch: a dead one holds no more in memory.
func (w *worker) readSize() int {
	n := w.e.opts.ReadBatch
	if w.bigReads && w.windowed() {
		n = max(n, 4*w.sub.Options.Inflight())
	}
	return n
}

// shareReaders is how many workers of one event name make sharing their
// decoded events pay. Shared events are allocated for each read instead of
// decoded into the worker's reused memory: in the fan-out benchmark (tmpfs,
// interleaved) sharing cost 10–15% with 2 and 3 subscribers, broke even at
// 10, and gained 25% at 20, 45% at 50 and 60% at 100.
const shareReaders = 10

// read reads the batch after the given cursor into b's memory.
func (w *worker) read(b *batch, after uint64, n int) *batch {
	b.after, b.size = after, n
	b.notify = w.e.log.Notify()
	if w.readers.Load() >= shareReaders {
		b.buf, b.ptrs, b.err = w.e.log.ReadShared(b.buf, b.ptrs, w.sub.Event, after, n)
		return b
	}
	b.buf, b.err = w.e.log.ReadInto(b.buf, w.sub.Event, after, n)
	b.ptrs = b.ptrs[:0]
	for i := range b.buf {
		b.ptrs = append(b.ptrs, &b.buf[i])
	}
	return b
}

// advance moves the cursor over delivered log events.
func (w *worker) advance(events []*evq.Event) {
	c := events[len(events)-1].Seq
	w.cursor.Store(c)
	w.e.log.SetCursor(w.sub.ID, c)
	if w.group != nil {
		w.group.advanced(w.e.log)
	}
}

// park moves a failed log event to the dead letters and the cursor past it.
func (w *worker) park(ev *evq.Event, attempts int, cause error) error {
	if w.group != nil && w.group.any && w.group.deliveredElsewhere(w.lane, ev.Seq) {
		// parallel_success any: another member has it, so the group has
		// delivered it; this member gives up on it without a dead letter.
		w.e.opts.Logger.Warn("member gave up on an event another member delivered", "subscription", w.sub.Parent,
			"member", w.sub.Socket, "seq", ev.Seq, "event", ev.Name, "attempts", attempts, "err", cause)
		w.advance([]*evq.Event{ev})
		return nil
	}
	d := &evq.DeadLetter{Event: ev, Attempts: attempts, Error: cause.Error(), Time: w.e.opts.NowFunc()}
	if err := w.e.log.AddDeadLetter(w.sub.ID, d); err != nil {
		return err
	}
	w.st.parked.Add(1)
	w.e.opts.Logger.Warn("event parked in dead letters", "subscription", w.sub.ID, "socket", w.sub.Socket,
		"seq", ev.Seq, "event", ev.Name, "attempts", attempts, "err", cause)
	w.advance([]*evq.Event{ev})
	return nil
}

// deliver sends events in order through the transport, retrying failures
// with backoff, calling ok for delivered events and park for those that
// failed for good. It returns early when the worker is stopping.
func (w *worker) deliver(events []*evq.Event, ok func([]*evq.Event), park func(*evq.Event, int, error) error) {
	window := len(events)
	if w.sub.Options.Reliable && !w.windowed() {
		window = w.sub.Options.Inflight()
	}
	for len(events) > 0 {
		if w.stopping() {
			return
		}
		chunk := events[:min(window, len(events))]
		n, err := w.tr.Send(w.ctx, chunk)
		w.bigReads = err == nil
		if n > 0 {
			ok(chunk[:n])
			events = events[n:]
			w.st.delivered.Add(uint64(n))
			w.attempts = 0
			w.bo.Reset()
			w.st.setState(StateActive)
		}
		if err == nil {
			continue
		}
		if w.ctx.Err() != nil {
			return
		}
		if n >= len(chunk) {
			continue // the transport reported an error for nothing left
		}
		ev := events[0]
		w.attempts++
		w.fail(err)
		if w.giveUp(ev, err) {
			if perr := park(ev, w.attempts, err); perr == nil {
				events = events[1:]
				w.attempts = 0
				w.bo.Reset()
				w.st.setState(StateActive) // parked: delivery goes on with the next event
				continue
			} else {
				w.fail(perr)
			}
		}
		w.st.retries.Add(1)
		w.st.setState(StateRetrying)
		if !w.wait(w.bo.NextBackOff()) {
			return
		}
	}
}

// giveUp reports whether a failed event should be dead-lettered now.
// born is when ev's max_age starts: when it was raised, or for a redriven
// dead letter when the redrive began, so that a redrive gets a full max_age
// of attempts rather than one.
func (w *worker) born(ev *evq.Event) time.Time {
	if !w.redriveStart.IsZero() {
		return w.redriveStart
	}
	return ev.Time
}

func (w *worker) giveUp(ev *evq.Event, err error) bool {
	o := w.sub.Options
	switch {
	case evq.IsPermanent(err):
		return true
	case o.MaxAttempts > 0 && w.attempts >= o.MaxAttempts:
		return true
	case o.MaxAge > 0 && w.e.opts.NowFunc().Sub(w.born(ev)) >= o.MaxAge:
		return true
	}
	return false
}

func (w *worker) fail(err error) {
	w.st.failures.Add(1)
	w.st.mu.Lock()
	w.st.lastErr = err.Error()
	w.st.lastErrAt = w.e.opts.NowFunc()
	w.st.mu.Unlock()
	w.e.opts.Logger.Debug("delivery failed", "subscription", w.sub.ID, "socket", w.sub.Socket, "attempt", w.attempts, "err", err)
}

// wait sleeps for d unless the worker is stopped first; it reports whether
// the worker should go on.
func (w *worker) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-w.ctx.Done():
		return false
	case <-w.e.stop:
		return false
	}
}

// redriveAll sends the subscription's dead letters again, once each.
func (w *worker) redriveAll() {
	w.redriveStart = w.e.opts.NowFunc()
	defer func() { w.redriveStart = time.Time{} }()
	var after uint64
	for !w.stopping() {
		letters, err := w.e.log.DeadLetters(w.sub.ID, after, w.e.opts.ReadBatch)
		if err != nil {
			w.fail(err)
			return
		}
		if len(letters) == 0 {
			return
		}
		events := make([]*evq.Event, len(letters))
		for i, d := range letters {
			events[i] = d.Event
		}
		after = events[len(events)-1].Seq
		w.deliver(events, func(done []*evq.Event) {
			seqs := make([]uint64, len(done))
			for i, ev := range done {
				seqs[i] = ev.Seq
			}
			if _, err := w.e.log.DeleteDeadLetters(w.sub.ID, seqs...); err != nil {
				w.fail(err)
			}
		}, func(ev *evq.Event, attempts int, cause error) error {
			d := &evq.DeadLetter{Event: ev, Attempts: attempts, Error: cause.Error(), Time: w.e.opts.NowFunc()}
			return w.e.log.AddDeadLetter(w.sub.ID, d)
		})
	}
}
