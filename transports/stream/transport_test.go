package stream_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/internal/evqtest"
	"github.com/evq/evq/transports/stream"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func events(from, n int) []*evq.Event {
	out := make([]*evq.Event, n)
	for i := range out {
		out[i] = &evq.Event{Seq: uint64(from + i), Name: "E_T", Named: true, Params: []evq.Param{{Name: "i", Value: evq.Int(int64(from + i))}}}
	}
	return out
}

func newTransport(t *testing.T, socket string, opts evq.Options) *stream.Transport {
	t.Helper()
	sock, err := evq.ParseSocket(socket)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := stream.New(sock, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func TestTransport_Notify(t *testing.T) {
	r := evqtest.NewReceiver(t)
	tr := newTransport(t, r.Socket()+"/my_method", evq.Options{})
	n, err := tr.Send(context.Background(), events(1, 3))
	if n != 3 || err != nil {
		t.Fatalf("n=%d err=%v", n, err)
	}
	got := r.WaitFor(3, 5*time.Second)
	if string(got[0].Raw) != `{"jsonrpc":"2.0","method":"my_method","params":{"i":1}}` || got[0].ID != nil {
		t.Fatalf("%s", got[0].Raw)
	}
}

func TestTransport_Reliable(t *testing.T) {
	r := evqtest.NewReceiver(t)
	tr := newTransport(t, r.Socket(), evq.Options{Reliable: true, Timeout: 2 * time.Second})
	n, err := tr.Send(context.Background(), events(1, 64))
	if n != 64 || err != nil {
		t.Fatalf("n=%d err=%v", n, err)
	}
	got := r.Requests()
	if len(got) != 64 || *got[0].ID != 1 || *got[63].ID != 64 {
		t.Fatalf("%d requests", len(got))
	}

	t.Run("ErrorReply", func(t *testing.T) {
		r.RejectFirst(1)
		n, err := tr.Send(context.Background(), events(100, 4))
		if n != 0 || err == nil || !strings.Contains(err.Error(), "rejected by test") {
			t.Fatalf("n=%d err=%v", n, err)
		}
		n, err = tr.Send(context.Background(), events(100, 4))
		if n != 4 || err != nil {
			t.Fatalf("retry: n=%d err=%v", n, err)
		}
	})
	t.Run("Timeout", func(t *testing.T) {
		tr := newTransport(t, r.Socket(), evq.Options{Reliable: true, Timeout: 50 * time.Millisecond})
		r.Silent(true)
		defer r.Silent(false)
		n, err := tr.Send(context.Background(), events(200, 2))
		if n != 0 || !errors.Is(err, stream.ErrReplyTimeout) {
			t.Fatalf("n=%d err=%v", n, err)
		}
	})
	t.Run("CancelWhileWaiting", func(t *testing.T) {
		// A worker that is stopped does not wait out the reply timeout.
		tr := newTransport(t, r.Socket(), evq.Options{Reliable: true, Timeout: time.Minute})
		r.Silent(true)
		defer r.Silent(false)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		n, err := tr.Send(ctx, events(300, 2))
		if n != 0 || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("n=%d err=%v", n, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("Send returned after %s", d)
		}
		r.Silent(false)
		if n, err := tr.Send(context.Background(), events(400, 3)); n != 3 || err != nil {
			t.Fatalf("after the cancel: n=%d err=%v", n, err)
		}
	})
}

// TestTransport_MalformedReply: a subscriber that answers with something
// that is not a JSON-RPC reply fails the send with a clear error, and the
// next send starts on a new connection.
func TestTransport_MalformedReply(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			br := bufio.NewReader(c)
			for {
				obj, err := stream.ReadObject(br, nil, 1<<20)
				if err != nil {
					break
				}
				rep, _ := stream.ParseReply(obj)
				if i == 0 {
					io.WriteString(c, `["not","an","object"]`)
				} else {
					fmt.Fprintf(c, `{"jsonrpc":"2.0","result":"OK","id":%d}`, rep.ID)
				}
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	tr := newTransport(t, "tcp:"+ln.Addr().String(), evq.Options{Reliable: true, Timeout: 5 * time.Second})
	n, err := tr.Send(context.Background(), events(1, 2))
	if n != 0 || err == nil || !strings.Contains(err.Error(), "reply from "+ln.Addr().String()) {
		t.Fatalf("n=%d err=%v", n, err)
	}
	t.Log(err)
	if n, err := tr.Send(context.Background(), events(1, 2)); n != 2 || err != nil {
		t.Fatalf("on a new connection: n=%d err=%v", n, err)
	}
}

func TestTransport_Reconnect(t *testing.T) {
	r := evqtest.NewReceiver(t)
	tr := newTransport(t, r.Socket(), evq.Options{Reliable: true})
	if n, err := tr.Send(context.Background(), events(1, 1)); n != 1 || err != nil {
		t.Fatal(n, err)
	}
	r.Stop()
	if n, err := tr.Send(context.Background(), events(2, 1)); n != 0 || err == nil {
		t.Fatalf("send to a stopped receiver: n=%d err=%v", n, err)
	}
	r.Restart()
	if n, err := tr.Send(context.Background(), events(2, 1)); n != 1 || err != nil {
		t.Fatalf("after restart: n=%d err=%v", n, err)
	}
}

func TestTransport_Refused(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	tr := newTransport(t, "tcp:"+addr, evq.Options{})
	n, err := tr.Send(context.Background(), events(1, 1))
	if n != 0 || err == nil || !strings.Contains(err.Error(), "connect "+addr) {
		t.Fatalf("n=%d err=%v", n, err)
	}
}

// windowPeer is a reliable subscriber that answers only once it holds
// `hold` unanswered requests (or after a pause), records the most it ever
// held, and answers the request with id failID with an error.
type windowPeer struct {
	ln      net.Listener
	hold    int
	failID  uint64
	maxHeld int
	ids     []uint64
	done    chan struct{}
}

func newWindowPeer(t *testing.T, hold int, failID uint64) *windowPeer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &windowPeer{ln: ln, hold: hold, failID: failID, done: make(chan struct{})}
	go p.serve()
	t.Cleanup(func() { ln.Close(); <-p.done })
	return p
}

func (p *windowPeer) serve() {
	defer close(p.done)
	c, err := p.ln.Accept()
	if err != nil {
		return
	}
	defer c.Close()
	br := bufio.NewReader(c)
	var held []uint64
	answer := func() {
		for _, id := range held {
			if id == p.failID {
				fmt.Fprintf(c, `{"jsonrpc":"2.0","error":{"code":-1,"message":"no"},"id":%d}`, id)
			} else {
				fmt.Fprintf(c, `{"jsonrpc":"2.0","result":"ok","id":%d}`, id)
			}
		}
		held = held[:0]
	}
	for {
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		obj, err := stream.ReadObject(br, nil, 1<<20)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			answer() // the sender has stopped writing: answer what is held
			continue
		}
		if err != nil {
			return
		}
		rep, err := stream.ParseReply(obj)
		if err != nil {
			return
		}
		held = append(held, rep.ID)
		p.ids = append(p.ids, rep.ID)
		p.maxHeld = max(p.maxHeld, len(held))
		if len(held) >= p.hold {
			answer()
		}
	}
}

// TestTransport_SlidingWindow sends a batch far longer than max_inflight:
// the transport never has more than max_inflight requests unanswered, and
// every event is acknowledged in one Send.
func TestTransport_SlidingWindow(t *testing.T) {
	p := newWindowPeer(t, 100, 0)
	tr := newTransport(t, "tcp:"+p.ln.Addr().String(), evq.Options{Reliable: true, MaxInflight: 8, Timeout: 5 * time.Second})
	if !tr.Windowed() {
		t.Fatal("reliable stream transport is not windowed")
	}
	n, err := tr.Send(context.Background(), events(1, 100))
	if err != nil || n != 100 {
		t.Fatalf("sent %d of 100: %v", n, err)
	}
	tr.Close()
	p.ln.Close()
	<-p.done
	if p.maxHeld != 8 {
		t.Fatalf("the peer held up to %d unanswered requests, want the window of 8", p.maxHeld)
	}
}

// TestTransport_SlidingWindowStopsAtFailure: after an event fails, nothing
// more is written; Send reports the leading acknowledged events and the
// failure.
func TestTransport_SlidingWindowStopsAtFailure(t *testing.T) {
	p := newWindowPeer(t, 4, 10)
	tr := newTransport(t, "tcp:"+p.ln.Addr().String(), evq.Options{Reliable: true, MaxInflight: 4, Timeout: 5 * time.Second})
	n, err := tr.Send(context.Background(), events(1, 100))
	if n != 9 || err == nil || !strings.Contains(err.Error(), "replied error") {
		t.Fatalf("Send = %d, %v; want 9 acknowledged and the error reply", n, err)
	}
	tr.Close()
	p.ln.Close()
	<-p.done
	// Until the error reply for id 10 arrives, up to 4 requests may await a
	// reply: at most ids up to 13 can have gone out; none after.
	if last := p.ids[len(p.ids)-1]; last > 13 {
		t.Fatalf("the peer got requests up to id %d after id 10 failed in a window of 4", last)
	}
}
