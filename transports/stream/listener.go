package stream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/evq/evq"
)

// ListenerOptions configure a Listener. The zero value of each field means
// the default in its comment.
type ListenerOptions struct {
	// EventParam, if set, names the param that holds the event name, as
	// OpenSIPS's event_param; the method is then ignored.
	EventParam string
	// MaxMessage bounds one JSON object. 0 means 64 KiB.
	MaxMessage int
	// MaxPending bounds the requests read from one connection and not yet
	// answered; reading pauses beyond it. 0 means 1024.
	MaxPending int
	// MaxConns bounds open connections; one more is closed at once. 0
	// means 1024.
	MaxConns int
	// ObjectTimeout bounds how long one object may take to arrive once it
	// has started (a slowloris sender is cut off). Idle time between
	// objects is not bounded: OpenSIPS keeps its connection open. 0 means
	// 30 seconds.
	ObjectTimeout time.Duration
	// Logger receives dropped connections. nil means slog.Default().
	Logger *slog.Logger
	// ObserveFunc, if set, is called with the time from reading each
	// request to writing its answer (for metrics).
	ObserveFunc func(took time.Duration)
}

// StoreEach stores events with one RaiseBatch and records in failed (which
// it clears first) the error of every event that was not stored. If the
// batch fails, the events are stored one by one, so that one bad event does
// not fail the others; ingest listeners use it for every batch they read.
func StoreEach(ctx context.Context, r evq.Raiser, events []*evq.Event, failed map[*evq.Event]error) {
	clear(failed)
	if len(events) == 0 {
		return
	}
	err := r.RaiseBatch(ctx, events)
	if err == nil {
		return
	}
	if len(events) == 1 {
		failed[events[0]] = err
		return
	}
	for _, ev := range events {
		if err := r.RaiseBatch(ctx, []*evq.Event{ev}); err != nil {
			failed[ev] = err
		}
	}
}

// maxIngestBatch bounds the requests of one connection stored together.
const maxIngestBatch = 1024

// ListenerStats count what listeners accepted and refused.
type ListenerStats struct {
	Accepted, Rejected, StoreFailed, Connections atomic.Uint64
	// Refused counts connections closed at once because MaxConns were open.
	Refused atomic.Uint64
	// TimedOut counts connections cut off for sending an object too slowly.
	TimedOut atomic.Uint64
	// Rejected, by reason: invalid JSON, not a request, bad params or event
	// name, and objects over MaxMessage.
	ParseErrors, InvalidRequests, InvalidParams, Oversize atomic.Uint64
}

func (s *ListenerStats) reject(code int, oversize bool) {
	s.Rejected.Add(1)
	switch {
	case oversize:
		s.Oversize.Add(1)
	case code == CodeParseError:
		s.ParseErrors.Add(1)
	case code == CodeInvalidRequest:
		s.InvalidRequests.Add(1)
	default:
		s.InvalidParams.Add(1)
	}
}

// Listener accepts the JSON-RPC stream that OpenSIPS's event_stream writes
// and stores every event before it answers: a request (with an id) is
// answered {"result": seq} once its event is fsynced, or with an error if it
// could not be stored; a notification is stored without an answer. Requests
// on one connection are stored in the order they came and answered in that
// order, one reply per write, so that OpenSIPS (which handles at most 5
// replies per read) never sees a burst.
type Listener struct {
	ln      net.Listener
	r       evq.Raiser
	opts    ListenerOptions
	stats   ListenerStats
	lastLog atomic.Int64

	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

// Listen starts a Listener on addr (host:port).
func Listen(addr string, r evq.Raiser, opts *ListenerOptions) (*Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen tcp:%s: %w", addr, err)
	}
	var o ListenerOptions
	if opts != nil {
		o = *opts
	}
	if o.MaxMessage <= 0 {
		o.MaxMessage = 64 << 10
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 1024
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 1024
	}
	if o.ObjectTimeout <= 0 {
		o.ObjectTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Listener{ln: ln, r: r, opts: o, ctx: ctx, cancel: cancel, conns: make(map[net.Conn]bool)}
	l.wg.Add(1)
	go l.accept()
	return l, nil
}

// Addr returns the listening address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Stats returns the listener's counters.
func (l *Listener) Stats() *ListenerStats { return &l.stats }

func (l *Listener) accept() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
		}
		l.mu.Lock()
		full := len(l.conns) >= l.opts.MaxConns
		if !full {
			l.conns[c] = true
		}
		l.mu.Unlock()
		if full {
			l.stats.Refused.Add(1)
			c.Close()
			l.warn("refused a connection: too many open", "max_conns", l.opts.MaxConns, "remote", c.RemoteAddr().String())
			continue
		}
		l.stats.Connections.Add(1)
		l.wg.Add(1)
		go l.serve(c)
	}
}

// item is one request in a connection's queue: an event to store, or an
// error to answer, in arrival order.
type item struct {
	ev    *evq.Event
	id    []byte
	reply []byte    // a ready error reply, or nil
	read  time.Time // when the request was read
}

func (l *Listener) serve(c net.Conn) {
	defer l.wg.Done()
	defer func() {
		l.mu.Lock()
		delete(l.conns, c)
		l.mu.Unlock()
		c.Close()
	}()
	queue := make(chan item, l.opts.MaxPending)
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.answer(c, queue)
	}()
	l.read(c, queue)
	close(queue)
	<-done
}

// read parses requests off c into queue until the stream ends or cannot be
// resynchronised.
func (l *Listener) read(c net.Conn, queue chan<- item) {
	br := bufio.NewReaderSize(c, 64<<10)
	for {
		// Wait as long as it takes for the next object to start, then give
		// it ObjectTimeout to arrive whole.
		c.SetReadDeadline(time.Time{})
		if _, err := br.Peek(1); err != nil {
			return
		}
		c.SetReadDeadline(time.Now().Add(l.opts.ObjectTimeout))
		obj, err := ReadObject(br, nil, l.opts.MaxMessage)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				l.stats.TimedOut.Add(1)
				l.warn("closing an ingest connection: an object took too long", "remote", c.RemoteAddr().String(), "timeout", l.opts.ObjectTimeout)
				return
			}
			// Not an object, too large, or cut short: the byte stream cannot
			// be resynchronised. Say why, then close.
			code, msg := CodeParseError, "Parse error: "+err.Error()
			if errors.Is(err, ErrNotObject) {
				code = CodeInvalidRequest
				msg = "Invalid Request: " + err.Error()
			}
			l.stats.reject(code, errors.Is(err, ErrTooLarge))
			queue <- item{reply: AppendError(nil, code, msg, nil)}
			l.warn("closing an ingest connection", "remote", c.RemoteAddr().String(), "err", err)
			return
		}
		req, err := ParseRequest(obj, l.opts.EventParam)
		if err != nil {
			var re *RequestError
			errors.As(err, &re)
			l.stats.reject(re.Code, false)
			queue <- item{reply: AppendError(nil, re.Code, re.Message, req.ID)}
			continue
		}
		queue <- item{ev: req.Event, id: req.ID, read: time.Now()}
	}
}

// answer stores the queued events, everything waiting at once in one batch
// (in order), and writes each reply in its own write.
func (l *Listener) answer(c net.Conn, queue <-chan item) {
	batch := make([]item, 0, 64)
	events := make([]*evq.Event, 0, 64)
	failed := make(map[*evq.Event]error)
	var out []byte
	dead := false // the peer is gone: keep storing, stop writing
	write := func(b []byte) {
		if dead {
			return
		}
		c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write(b); err != nil {
			dead = true
		}
	}
	for it := range queue {
		batch = append(batch[:0], it)
	drain:
		for len(batch) < maxIngestBatch {
			select {
			case it, ok := <-queue:
				if !ok {
					break drain
				}
				batch = append(batch, it)
			default:
				break drain
			}
		}
		events = events[:0]
		for _, it := range batch {
			if it.ev != nil {
				events = append(events, it.ev)
			}
		}
		StoreEach(l.ctx, l.r, events, failed)
		l.stats.StoreFailed.Add(uint64(len(failed)))
		l.stats.Accepted.Add(uint64(len(events) - len(failed)))
		for _, it := range batch {
			switch {
			case it.reply != nil:
				write(it.reply)
			case it.id == nil: // a notification: no answer
				if err := failed[it.ev]; err != nil {
					l.warn("an ingested notification was not stored", "event", it.ev.Name, "err", err)
				}
			case failed[it.ev] != nil:
				out = AppendError(out[:0], CodeServerError, "event not stored: "+failed[it.ev].Error(), it.id)
				write(out)
			default:
				out = AppendResult(out[:0], it.ev.Seq, it.id)
				write(out)
				if l.opts.ObserveFunc != nil {
					l.opts.ObserveFunc(time.Since(it.read))
				}
			}
		}
	}
}

// warn logs at most one line every 10 seconds, so that a flood of bad
// input cannot flood the log; the counters keep the full story.
func (l *Listener) warn(msg string, args ...any) {
	now := time.Now().UnixNano()
	if last := l.lastLog.Load(); now-last > int64(10*time.Second) && l.lastLog.CompareAndSwap(last, now) {
		l.opts.Logger.Warn(msg, append(args, "rejected_so_far", l.stats.Rejected.Load(), "refused_so_far", l.stats.Refused.Load())...)
	}
}

// Close stops accepting, closes every connection (events already read are
// still stored and answered if the connection allows), and waits.
func (l *Listener) Close() error {
	err := l.ln.Close()
	l.mu.Lock()
	for c := range l.conns {
		c.(interface{ CloseRead() error }).CloseRead()
	}
	l.mu.Unlock()
	l.wg.Wait()
	l.cancel()
	return err
}
