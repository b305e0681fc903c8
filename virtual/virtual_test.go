package virtual_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/internal/evqtest"
	"github.com/evq/evq/transports"
	"github.com/evq/evq/virtual"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func group(t *testing.T, socket string) *virtual.Group {
	t.Helper()
	sock, err := evq.ParseSocket(socket)
	if err != nil {
		t.Fatal(err)
	}
	opts := evq.Options{Reliable: true, Timeout: 500 * time.Millisecond, FailoverTimeout: 200 * time.Millisecond}
	g, err := virtual.New(sock, opts, func(m evq.Socket) (evq.Transport, error) {
		return transports.New(evq.Subscription{Socket: m.String(), Options: opts})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

func ev(seq int) []*evq.Event { return []*evq.Event{{Seq: uint64(seq), Name: "E_V"}} }

func TestFailover(t *testing.T) {
	a, b := evqtest.NewReceiver(t), evqtest.NewReceiver(t)
	g := group(t, "virtual:FAILOVER "+a.Socket()+" "+b.Socket())
	if n, err := g.Send(context.Background(), ev(1)); n != 1 || err != nil {
		t.Fatal(n, err)
	}
	a.Stop()
	// The first member fails: the same event goes to the next at once.
	if n, err := g.Send(context.Background(), ev(2)); n != 1 || err != nil {
		t.Fatal(n, err)
	}
	if got := g.Members()[0].State(); got != "open" {
		t.Fatalf("the failed member's breaker is %s, want open", got)
	}
	if n, err := g.Send(context.Background(), ev(3)); n != 1 || err != nil {
		t.Fatal(n, err)
	}
	if len(a.Requests()) != 1 || len(b.WaitFor(2, 5*time.Second)) != 2 {
		t.Fatalf("a got %d, b got %d", len(a.Requests()), len(b.Requests()))
	}
	// The first member comes back: after failover_timeout a probe goes to
	// it, succeeds, and traffic moves back.
	a.Restart()
	deadline := time.Now().Add(5 * time.Second)
	for seq := 4; len(a.Requests()) < 2; seq++ {
		if time.Now().After(deadline) {
			t.Fatal("traffic never moved back to the recovered first member")
		}
		if n, err := g.Send(context.Background(), ev(seq)); n != 1 || err != nil {
			t.Fatal(n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := g.Members()[0].State(); got != "closed" {
		t.Fatalf("the recovered member's breaker is %s, want closed", got)
	}
}

func TestFailover_AllDown(t *testing.T) {
	a, b := evqtest.NewReceiver(t), evqtest.NewReceiver(t)
	g := group(t, "virtual:FAILOVER "+a.Socket()+" "+b.Socket())
	a.Stop()
	b.Stop()
	// OpenSIPS drops the event here; evq reports it, and the worker retries.
	n, err := g.Send(context.Background(), ev(1))
	if n != 0 || err == nil || !strings.Contains(err.Error(), "no member of the FAILOVER group") || evq.IsPermanent(err) {
		t.Fatalf("n=%d err=%v", n, err)
	}
	b.Restart()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if n, err := g.Send(context.Background(), ev(1)); n == 1 && err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no delivery after a member came back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.WaitFor(1, 5*time.Second)
}

func TestRoundRobin(t *testing.T) {
	a, b, c := evqtest.NewReceiver(t), evqtest.NewReceiver(t), evqtest.NewReceiver(t)
	g := group(t, "virtual:ROUND-ROBIN "+a.Socket()+" "+b.Socket()+" "+c.Socket())
	b.Stop() // OpenSIPS would keep sending every third event to it and lose it
	for seq := 1; seq <= 30; seq++ {
		if n, err := g.Send(context.Background(), ev(seq)); n != 1 || err != nil {
			t.Fatal(seq, n, err)
		}
	}
	got := make(map[uint64]int)
	for _, r := range []*evqtest.Receiver{a, c} {
		for _, q := range r.Requests() {
			got[*q.ID]++
		}
	}
	for seq := uint64(1); seq <= 30; seq++ {
		if got[seq] != 1 {
			t.Fatalf("event %d delivered %d times", seq, got[seq])
		}
	}
	if len(a.Requests()) < 10 || len(c.Requests()) < 10 {
		t.Fatalf("the live members got %d and %d: not rotated", len(a.Requests()), len(c.Requests()))
	}
}
