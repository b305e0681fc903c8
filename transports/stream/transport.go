package stream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/evq/evq"
)

var _ evq.Transport = (*Transport)(nil)

// maxReply bounds one reply object from a subscriber.
const maxReply = 1 << 20

// ErrReplyTimeout means a reliable subscriber did not answer in time.
var ErrReplyTimeout = errors.New("no reply within the timeout")

// Transport sends events to one tcp:/jsonrpc: socket over one persistent
// connection, reconnecting on the next Send after any failure.
//
// In reliable mode Send itself reads the replies: the worker that sends the
// window is the goroutine that wakes when replies arrive, with no hand-off in
// between. In fire-and-forget mode a reader goroutine drains the connection,
// so that a peer that hung up is noticed before the next write.
type Transport struct {
	sock     evq.Socket
	msg      Message
	reliable bool
	timeout  time.Duration
	window   int // requests awaiting a reply at most, in reliable mode
	dialer   net.Dialer

	conn    net.Conn
	br      *bufio.Reader // reliable mode: the replies
	obj     []byte        // reliable mode: the last reply read, memory reused
	gone    chan struct{} // fire-and-forget mode: closed once the peer hung up
	readers sync.WaitGroup
	buf     []byte
	pending map[uint64]int // seq -> index in the current batch
}

// New returns a Transport for sock (scheme tcp or jsonrpc). It does not
// connect until the first Send.
func New(sock evq.Socket, opts evq.Options) (*Transport, error) {
	if sock.Scheme != "tcp" && sock.Scheme != "jsonrpc" {
		return nil, fmt.Errorf("stream transport: %w: scheme %q", evq.ErrInvalidSocket, sock.Scheme)
	}
	return &Transport{
		sock:     sock,
		msg:      Message{Method: sock.Method, EventParam: opts.EventParam, Request: opts.Reliable},
		reliable: opts.Reliable,
		timeout:  opts.TimeoutOrDefault(),
		window:   opts.Inflight(),
		pending:  make(map[uint64]int),
	}, nil
}

func (t *Transport) connect(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	conn, err := t.dialer.DialContext(dctx, "tcp", t.sock.Addr())
	if err != nil {
		return fmt.Errorf("connect %s: %w", t.sock.Addr(), err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	t.conn = conn
	if t.reliable {
		t.br = bufio.NewReaderSize(conn, 64<<10)
		return nil
	}
	t.gone = make(chan struct{})
	t.readers.Add(1)
	go t.drain(conn, t.gone)
	return nil
}

// drain reads and drops whatever a fire-and-forget peer sends until the
// connection fails, then closes gone.
func (t *Transport) drain(conn net.Conn, gone chan<- struct{}) {
	defer t.readers.Done()
	defer close(gone)
	io.Copy(io.Discard, conn)
}

func (t *Transport) drop() {
	if t.conn != nil {
		t.conn.Close()
		t.readers.Wait()
		t.conn, t.br, t.gone = nil, nil, nil
	}
}

// Send writes events in order and, in reliable mode, waits for their replies.
func (t *Transport) Send(ctx context.Context, events []*evq.Event) (int, error) {
	if len(events) == 0 {
		return 0, nil
	}
	if t.gone != nil {
		select {
		case <-t.gone: // the peer hung up
			t.drop()
		default:
		}
	}
	if t.conn == nil {
		if err := t.connect(ctx); err != nil {
			return 0, err
		}
	}
	if !t.reliable {
		if err := t.write(events); err != nil {
			return 0, err
		}
		return len(events), nil
	}
	return t.sendWindowed(ctx, events)
}

// Windowed reports that in reliable mode Send keeps max_inflight requests
// in flight across a batch of any length, writing more as replies arrive,
// so the caller need not cut batches to the window.
func (t *Transport) Windowed() bool { return t.reliable }

// write encodes events and writes them in one call.
func (t *Transport) write(events []*evq.Event) error {
	t.buf = t.buf[:0]
	for _, ev := range events {
		t.buf = t.msg.Append(t.buf, ev)
	}
	t.conn.SetWriteDeadline(time.Now().Add(t.timeout))
	if _, err := t.conn.Write(t.buf); err != nil {
		t.drop()
		return fmt.Errorf("write to %s: %w", t.sock.Addr(), err)
	}
	return nil
}

// sendWindowed writes events with at most t.window awaiting a reply,
// writing more, a quarter window or more at a time, as replies come in. After
// the first failed event it writes nothing more and collects what is in
// flight. It returns how many leading events were acknowledged.
func (t *Transport) sendWindowed(ctx context.Context, events []*evq.Event) (int, error) {
	clear(t.pending)
	acked := make([]bool, len(events))
	failed := make([]error, len(events))
	sent, done := 0, 0
	send := func(to int) error {
		for i := sent; i < to; i++ {
			t.pending[events[i].Seq] = i
		}
		from := sent
		sent = to
		return t.write(events[from:to])
	}
	if err := send(min(t.window, len(events))); err != nil {
		return 0, err
	}
	// A cancelled ctx interrupts a read that waits for the peer.
	conn := t.conn
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	var connErr error
	failedAt := -1
	for done < sent && connErr == nil {
		if t.br.Buffered() == 0 {
			// About to wait for the peer: it has the timeout to answer.
			conn.SetReadDeadline(time.Now().Add(t.timeout))
			if err := ctx.Err(); err != nil {
				connErr = err
				break
			}
		}
		rep, err := t.readReply()
		if err != nil {
			connErr = err
			if ctx.Err() != nil {
				connErr = ctx.Err()
			}
			break
		}
		i, mine := t.pending[rep.ID]
		if !rep.HasID || !mine {
			continue // not an answer to this batch's requests
		}
		delete(t.pending, rep.ID)
		done++
		switch {
		case rep.HasError:
			failed[i] = fmt.Errorf("%s replied error %s", t.sock.Addr(), truncate(rep.Error, 200))
		case !rep.HasResult:
			failed[i] = fmt.Errorf("%s replied with neither result nor error", t.sock.Addr())
		default:
			acked[i] = true
		}
		if failed[i] != nil && (failedAt < 0 || i < failedAt) {
			failedAt = i
		}
		if failedAt < 0 && sent < len(events) {
			if free := t.window - (sent - done); free >= max(1, t.window/4) {
				if err := send(min(len(events), sent+free)); err != nil {
					connErr = err
				}
			}
		}
	}
	n := 0
	for n < len(events) && acked[n] {
		n++
	}
	if n == len(events) {
		return n, nil
	}
	if connErr != nil {
		// Replies still owed would arrive out of step: start afresh.
		t.drop()
		return n, connErr
	}
	return n, failed[n]
}

// readReply reads and parses the next reply object.
func (t *Transport) readReply() (Reply, error) {
	obj, err := ReadObject(t.br, t.obj, maxReply)
	if err != nil {
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			return Reply{}, fmt.Errorf("%s: %w (%s)", t.sock.Addr(), ErrReplyTimeout, t.timeout)
		case errors.Is(err, ErrNotObject), errors.Is(err, ErrTooLarge):
			return Reply{}, fmt.Errorf("reply from %s: %w", t.sock.Addr(), err)
		}
		return Reply{}, fmt.Errorf("connection to %s lost: %w", t.sock.Addr(), err)
	}
	t.obj = obj
	rep, err := ParseReply(obj)
	if err != nil {
		return Reply{}, fmt.Errorf("reply from %s: %w", t.sock.Addr(), err)
	}
	return rep, nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// Close closes the connection.
func (t *Transport) Close() error {
	t.drop()
	return nil
}
