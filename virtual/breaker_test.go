package virtual_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/virtual"
)

// switchable is a member transport that fails while down. It stands in for
// a socket only where the breaker's timing is under test: gobreaker reads
// time.Now, so these tests run in a synctest bubble, whose fake clock
// cannot wait on real sockets. The tests with real sockets are beside.
type switchable struct {
	mu    sync.Mutex
	down  bool
	sends int
}

func (s *switchable) set(down bool) { s.mu.Lock(); s.down = down; s.mu.Unlock() }

func (s *switchable) calls() int { s.mu.Lock(); defer s.mu.Unlock(); return s.sends }

func (s *switchable) Send(_ context.Context, events []*evq.Event) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sends++
	if s.down {
		return 0, errors.New("connection refused")
	}
	return len(events), nil
}

func (s *switchable) Close() error { return nil }

func fakeGroup(t *testing.T, policy string, opts evq.Options, n int) (*virtual.Group, []*switchable) {
	t.Helper()
	socket := "virtual:" + policy
	for i := 0; i < n; i++ {
		socket += " tcp:127.0.0.1:" + string(rune('1'+i))
	}
	sock, err := evq.ParseSocket(socket)
	if err != nil {
		t.Fatal(err)
	}
	var members []*switchable
	g, err := virtual.New(sock, opts, func(evq.Socket) (evq.Transport, error) {
		m := &switchable{}
		members = append(members, m)
		return m, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return g, members
}

func states(g *virtual.Group) []string {
	var out []string
	for _, m := range g.MemberStates() {
		out = append(out, m.State)
	}
	return out
}

func wantStates(t *testing.T, g *virtual.Group, want ...string) {
	t.Helper()
	got := states(g)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("breakers %v, want %v", got, want)
		}
	}
}

// The default breaker, as OpenSIPS's failover: one failure opens it for 30 s,
// then one probe goes through; its result closes or reopens it.
func TestBreaker_DefaultTimeline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, m := fakeGroup(t, evq.PolicyFailover, evq.Options{}, 2)
		send := func() {
			t.Helper()
			if n, err := g.Send(context.Background(), ev(1)); n != 1 || err != nil {
				t.Fatal(n, err)
			}
		}
		m[0].set(true)
		send() // fails on the first member, goes to the second at once
		wantStates(t, g, "open", "closed")
		if m[0].calls() != 1 || m[1].calls() != 1 {
			t.Fatalf("calls %d %d", m[0].calls(), m[1].calls())
		}

		time.Sleep(29 * time.Second)
		send() // still open: the first member is not even tried
		if m[0].calls() != 1 {
			t.Fatal("an open breaker let a send through")
		}

		time.Sleep(time.Second + time.Millisecond) // gobreaker half-opens just after the timeout
		wantStates(t, g, "half-open", "closed")
		send() // the probe fails: open for another 30 s
		wantStates(t, g, "open", "closed")
		if m[0].calls() != 2 || m[1].calls() != 3 {
			t.Fatalf("calls %d %d", m[0].calls(), m[1].calls())
		}

		m[0].set(false)
		time.Sleep(30*time.Second + time.Millisecond)
		send() // the probe succeeds: traffic is back on the first member
		wantStates(t, g, "closed", "closed")
		send()
		if m[0].calls() != 4 || m[1].calls() != 3 {
			t.Fatalf("calls %d %d", m[0].calls(), m[1].calls())
		}
		if st := g.MemberStates(); st[0].Delivered != 2 || st[0].Failures != 2 || st[1].Delivered != 3 {
			t.Fatalf("member counts %+v", st)
		}
	})
}

// breaker_failures sets how many consecutive failures open a breaker, and
// failover_timeout how long it stays open.
func TestBreaker_Configured(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, m := fakeGroup(t, evq.PolicyFailover, evq.Options{BreakerFailures: 3, FailoverTimeout: 5 * time.Second}, 2)
		m[0].set(true)
		for i := 1; i <= 3; i++ {
			if _, err := g.Send(context.Background(), ev(i)); err != nil {
				t.Fatal(err)
			}
			want := "closed"
			if i == 3 {
				want = "open"
			}
			wantStates(t, g, want)
		}
		time.Sleep(5 * time.Second)
		wantStates(t, g, "open")
		time.Sleep(time.Millisecond)
		wantStates(t, g, "half-open")
	})
}

// A half-open breaker lets one probe through; while it is out, the member is
// skipped.
func TestBreaker_OneProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sock, _ := evq.ParseSocket("tcp:127.0.0.1:1")
		probe := make(chan struct{})
		var sends int
		var mu sync.Mutex
		tr := transportFunc(func(ctx context.Context, events []*evq.Event) (int, error) {
			mu.Lock()
			sends++
			first := sends == 1
			mu.Unlock()
			if first {
				return 0, errors.New("down")
			}
			<-probe
			return len(events), nil
		})
		m := virtual.NewMember(sock, evq.Options{}, tr)
		m.Send(context.Background(), ev(1))
		time.Sleep(evq.DefaultFailoverTimeout + time.Millisecond)
		done := make(chan error)
		go func() { _, err := m.Send(context.Background(), ev(2)); done <- err }()
		synctest.Wait() // the probe is out
		if _, err := m.Send(context.Background(), ev(3)); err == nil || m.State() != "half-open" {
			t.Fatalf("a second send went through a half-open breaker: %v", err)
		}
		close(probe)
		if err := <-done; err != nil || m.State() != "closed" {
			t.Fatalf("probe: %v, breaker %s", err, m.State())
		}
	})
}

type transportFunc func(context.Context, []*evq.Event) (int, error)

func (f transportFunc) Send(ctx context.Context, events []*evq.Event) (int, error) {
	return f(ctx, events)
}

func (f transportFunc) Close() error { return nil }

// ROUND-ROBIN skips members whose breaker is open and comes back to them
// once a probe succeeds.
func TestBreaker_RoundRobinSkipsOpen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, m := fakeGroup(t, evq.PolicyRoundRobin, evq.Options{}, 3)
		m[1].set(true)
		for i := 0; i < 30; i++ {
			if n, err := g.Send(context.Background(), ev(i)); n != 1 || err != nil {
				t.Fatal(n, err)
			}
		}
		if m[1].calls() != 1 {
			t.Fatalf("the dead member was tried %d times, want once", m[1].calls())
		}
		m[1].set(false)
		time.Sleep(evq.DefaultFailoverTimeout + time.Millisecond)
		for i := 0; i < 30; i++ {
			g.Send(context.Background(), ev(i))
		}
		wantStates(t, g, "closed", "closed", "closed")
		if c := m[1].calls(); c < 10 {
			t.Fatalf("the recovered member got %d of 30, want its share", c)
		}
	})
}
