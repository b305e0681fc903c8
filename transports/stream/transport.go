package stream

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
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
type Transport struct {
	sock     evq.Socket
	msg      Message
	reliable bool
	timeout  time.Duration
	window   int // requests awaiting a reply at most, in reliable mode
	dialer   net.Dialer

	conn    net.Conn
	replies chan []reply // fed by the connection's reader goroutine, a run at a time
	readers sync.WaitGroup
	buf     []byte
	pending map[uint64]int // seq -> index in the current batch
}

type reply struct {
	rep Reply
	err error // read error: the connection is gone
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
	t.replies = make(chan []reply, 64)
	t.readers.Add(1)
	go t.read(conn, t.replies)
	return nil
}

// read parses replies off conn until it fails. In non-reliable mode the
// replies are dropped, but the read still notices a peer that hung up, so
// the next Send reconnects instead of writing into a dead socket. Replies
// already buffered are handed over together: one channel send per read from
// the socket rather than per reply.
func (t *Transport) read(conn net.Conn, out chan<- []reply) {
	defer t.readers.Done()
	defer close(out)
	br := bufio.NewReader(conn)
	var buf []byte
	var run []reply
	for {
		if len(run) > 0 && (br.Buffered() == 0 || len(run) >= 256) {
			out <- run
			run = nil
		}
		obj, err := ReadObject(br, buf, maxReply)
		if err != nil {
			out <- append(run, reply{err: err})
			return
		}
		buf = obj
		rep, err := ParseReply(obj)
		if err != nil {
			out <- append(run, reply{err: fmt.Errorf("reply from %s: %w", t.sock.Addr(), err)})
			return
		}
		if !t.reliable {
			continue
		}
		if rep.Error != nil {
			rep.Error = bytes.Clone(rep.Error) // buf is reused for the next object
		}
		run = append(run, reply{rep: rep})
	}
}

func (t *Transport) drop() {
	if t.conn != nil {
		t.conn.Close()
		for range t.replies {
		}
		t.readers.Wait()
		t.conn = nil
	}
}

// Send writes events in order and, in reliable mode, waits for their replies.
func (t *Transport) Send(ctx context.Context, events []*evq.Event) (int, error) {
	if len(events) == 0 {
		return 0, nil
	}
	if t.conn != nil && !t.reliable {
		// Only a failure can be waiting here: the peer hung up.
		select {
		case run, ok := <-t.replies:
			if !ok || len(run) > 0 && run[len(run)-1].err != nil {
				t.drop()
			}
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
	timer := time.NewTimer(t.timeout)
	defer timer.Stop()
	var connErr error
	failedAt := -1
	for done < sent && connErr == nil {
		select {
		case run, ok := <-t.replies:
			if !ok {
				connErr = fmt.Errorf("connection to %s lost: %w", t.sock.Addr(), replyErr(reply{}, false))
				break
			}
			for _, r := range run {
				if r.err != nil {
					connErr = fmt.Errorf("connection to %s lost: %w", t.sock.Addr(), replyErr(r, true))
					break
				}
				i, mine := t.pending[r.rep.ID]
				if !r.rep.HasID || !mine {
					continue // a late reply to an earlier, timed-out request
				}
				delete(t.pending, r.rep.ID)
				done++
				switch {
				case r.rep.HasError:
					failed[i] = fmt.Errorf("%s replied error %s", t.sock.Addr(), truncate(r.rep.Error, 200))
				case !r.rep.HasResult:
					failed[i] = fmt.Errorf("%s replied with neither result nor error", t.sock.Addr())
				default:
					acked[i] = true
				}
				if failed[i] != nil && (failedAt < 0 || i < failedAt) {
					failedAt = i
				}
			}
			if connErr == nil && failedAt < 0 && sent < len(events) {
				if free := t.window - (sent - done); free >= max(1, t.window/4) {
					if err := send(min(len(events), sent+free)); err != nil {
						connErr = err
					}
				}
			}
			// Since Go 1.23 Reset also discards a fire not yet received;
			// draining t.C after Stop, the older idiom, would block forever.
			timer.Reset(t.timeout)
		case <-timer.C:
			connErr = fmt.Errorf("%s: %w (%s)", t.sock.Addr(), ErrReplyTimeout, t.timeout)
		case <-ctx.Done():
			connErr = ctx.Err()
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

func replyErr(r reply, ok bool) error {
	if !ok || r.err == nil {
		return errors.New("closed")
	}
	return r.err
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
