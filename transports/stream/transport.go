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
	t.buf = t.buf[:0]
	for _, ev := range events {
		t.buf = t.msg.Append(t.buf, ev)
	}
	t.conn.SetWriteDeadline(time.Now().Add(t.timeout))
	if _, err := t.conn.Write(t.buf); err != nil {
		t.drop()
		return 0, fmt.Errorf("write to %s: %w", t.sock.Addr(), err)
	}
	if !t.reliable {
		return len(events), nil
	}
	return t.await(ctx, events)
}

// await collects the replies of a written batch and returns how many
// leading events were acknowledged.
func (t *Transport) await(ctx context.Context, events []*evq.Event) (int, error) {
	clear(t.pending)
	for i, ev := range events {
		t.pending[ev.Seq] = i
	}
	acked := make([]bool, len(events))
	failed := make([]error, len(events))
	left := len(events)
	timer := time.NewTimer(t.timeout)
	defer timer.Stop()
	var connErr error
	for left > 0 && connErr == nil {
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
				left--
				switch {
				case r.rep.HasError:
					failed[i] = fmt.Errorf("%s replied error %s", t.sock.Addr(), truncate(r.rep.Error, 200))
				case !r.rep.HasResult:
					failed[i] = fmt.Errorf("%s replied with neither result nor error", t.sock.Addr())
				default:
					acked[i] = true
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
	}
	if failed[n] != nil {
		return n, failed[n]
	}
	return n, connErr
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
