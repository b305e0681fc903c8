package stream_test

import (
	"context"
	"errors"
	"net"
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
