package delivery_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/delivery"
	"github.com/evq/evq/internal/evqtest"
	"github.com/evq/evq/transports"
)

func parallel(a, b *evqtest.Receiver) string {
	return "virtual:PARALLEL " + a.Socket() + " " + b.Socket()
}

// A dead member neither blocks the other nor misses anything: it catches up
// from its own cursor when it returns, and the group's cursor (policy all)
// follows the slower member.
func TestParallel_DeadMemberCatchesUp(t *testing.T) {
	e := newEngine(t, evqtest.MustOpenLog(t, nil), nil)
	a, b := evqtest.NewReceiver(t), evqtest.NewReceiver(t)
	b.Stop()
	st := subscribe(t, e, "E_P", parallel(a, b), evq.Options{Reliable: true, FailoverTimeout: time.Hour})
	raise(t, e, "E_P", 0, 100)
	assertInOrder(t, indexes(t, a.WaitFor(100, wait)), 0, 100)

	st = waitState(t, e, st.ID, func(s delivery.Status) bool { return s.Members[1].State == "open" && s.Members[0].Cursor == 100 })
	if m := st.Members; m[0].Cursor != 100 || m[0].Lag != 0 || m[0].Delivered != 100 || m[1].Cursor != 0 || m[1].Lag != 100 || m[1].Failures == 0 {
		t.Fatalf("members %+v", m)
	}
	if st.Cursor != 0 || st.Lag != 100 || st.State != delivery.StateRetrying || !strings.Contains(st.LastError, b.Socket()) {
		t.Fatalf("group status %+v", st)
	}
	if len(e.Subscriptions()) != 1 {
		t.Fatalf("the lanes show as subscriptions: %+v", e.Subscriptions())
	}

	b.Restart()
	// The breaker stays open for an hour: the member's retries are refused
	// until then. Replaying the group (as an operator would after fixing the
	// member) restarts its lanes with fresh breakers.
	if _, err := e.Replay(context.Background(), st.ID, delivery.Start{Kind: delivery.StartSeq, Seq: 101}); err != nil {
		t.Fatal(err)
	}
	raise(t, e, "E_P", 100, 10)
	assertInOrder(t, indexes(t, a.WaitFor(110, wait)), 0, 110)
	assertInOrder(t, indexes(t, b.WaitFor(10, wait)), 100, 10)
	waitState(t, e, st.ID, func(s delivery.Status) bool { return s.Cursor == 110 && s.Lag == 0 })
}

// With a short failover_timeout the member's breaker half-opens by itself,
// the probe succeeds, and the member catches up on everything it missed.
func TestParallel_BreakerRecovers(t *testing.T) {
	e := newEngine(t, evqtest.MustOpenLog(t, nil), nil)
	a, b := evqtest.NewReceiver(t), evqtest.NewReceiver(t)
	b.Stop()
	st := subscribe(t, e, "E_P", parallel(a, b), evq.Options{Reliable: true, FailoverTimeout: 100 * time.Millisecond})
	raise(t, e, "E_P", 0, 50)
	a.WaitFor(50, wait)
	b.Restart()
	raise(t, e, "E_P", 50, 50)
	assertInOrder(t, indexes(t, a.WaitFor(100, wait)), 0, 100)
	assertInOrder(t, indexes(t, b.WaitFor(100, wait)), 0, 100)
	st = waitState(t, e, st.ID, func(s delivery.Status) bool { return s.Cursor == 100 })
	if st.Members[1].State != "closed" || st.Members[1].Delivered != 100 {
		t.Fatalf("members %+v", st.Members)
	}
}

// Policy any: the group's cursor is the fastest member's, and a member that
// gives up on an event another member delivered does not dead-letter it.
// Policy all: it does, naming the member.
func TestParallel_SuccessPolicy(t *testing.T) {
	for _, policy := range []string{evq.SuccessAll, evq.SuccessAny} {
		t.Run(policy, func(t *testing.T) {
			e := newEngine(t, evqtest.MustOpenLog(t, nil), nil)
			a, b := evqtest.NewReceiver(t), evqtest.NewReceiver(t)
			b.Stop()
			// b gives up on each event once it is 300 ms old: by then a
			// has long delivered it.
			st := subscribe(t, e, "E_P", parallel(a, b), evq.Options{Reliable: true, MaxAge: 300 * time.Millisecond,
				FailoverTimeout: time.Millisecond, ParallelSuccess: policy})
			raise(t, e, "E_P", 0, 20)
			assertInOrder(t, indexes(t, a.WaitFor(20, wait)), 0, 20)
			st = waitState(t, e, st.ID, func(s delivery.Status) bool { return s.Members[1].Cursor == 20 })
			if st.Cursor != 20 {
				t.Fatalf("group cursor %d, want 20", st.Cursor)
			}
			ds, err := e.DeadLetters(st.ID, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			want := 20
			if policy == evq.SuccessAny {
				want = 0
			}
			if len(ds) != want || st.DeadLetters != want || st.Parked != uint64(want) {
				t.Fatalf("%d dead letters (status %d, parked %d), want %d", len(ds), st.DeadLetters, st.Parked, want)
			}
			if want > 0 && (ds[0].Member != b.Socket() || ds[0].Event.Seq != 1 || ds[19].Event.Seq != 20) {
				t.Fatalf("dead letter %+v", ds[0])
			}
			if want == 0 {
				return
			}
			// Redrive sends them to the member that failed them, and only to it.
			b.Restart()
			if n, err := e.Redrive(st.ID); n != 20 || err != nil {
				t.Fatal(n, err)
			}
			assertInOrder(t, indexes(t, b.WaitFor(20, wait)), 0, 20)
			waitState(t, e, st.ID, func(s delivery.Status) bool { return s.DeadLetters == 0 })
			if got := len(a.Requests()); got != 20 {
				t.Fatalf("the healthy member got %d events, want 20", got)
			}
		})
	}
}

// The lanes' cursors survive a restart of the engine: nothing is sent twice
// to the member that had it, and the member that was down gets everything.
func TestParallel_ResumesAfterRestart(t *testing.T) {
	l := evqtest.MustOpenLog(t, nil)
	e := delivery.New(l, &delivery.Options{NewTransportFunc: transports.New, RetryInitial: time.Millisecond, RetryMax: 20 * time.Millisecond})
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	a, b := evqtest.NewReceiver(t), evqtest.NewReceiver(t)
	b.Stop()
	st := subscribe(t, e, "E_P", parallel(a, b), evq.Options{Reliable: true, FailoverTimeout: 50 * time.Millisecond})
	raise(t, e, "E_P", 0, 30)
	a.WaitFor(30, wait)
	waitState(t, e, st.ID, func(s delivery.Status) bool { return s.Members[0].Cursor == 30 })
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	b.Restart()
	e = newEngine(t, l, nil)
	raise(t, e, "E_P", 30, 5)
	assertInOrder(t, indexes(t, a.WaitFor(35, wait)), 0, 35)
	assertInOrder(t, indexes(t, b.WaitFor(35, wait)), 0, 35)
	waitState(t, e, st.ID, func(s delivery.Status) bool { return s.Cursor == 35 })
	if got := len(a.Requests()); got != 35 {
		t.Fatalf("the member that had every event got %d after the restart, want 35", got)
	}
}

// Unsubscribing a group removes its lanes from the log.
func TestParallel_UnsubscribeRemovesLanes(t *testing.T) {
	l := evqtest.MustOpenLog(t, nil)
	e := newEngine(t, l, nil)
	a, b := evqtest.NewReceiver(t), evqtest.NewReceiver(t)
	st := subscribe(t, e, "E_P", parallel(a, b), evq.Options{Reliable: true})
	if subs, _ := l.Subscriptions(); len(subs) != 3 {
		t.Fatalf("stored %d subscriptions, want the group and 2 lanes", len(subs))
	}
	if err := e.Unsubscribe(context.Background(), st.ID); err != nil {
		t.Fatal(err)
	}
	if subs, _ := l.Subscriptions(); len(subs) != 0 {
		t.Fatalf("left %+v", subs)
	}
	if _, err := l.Check(); err != nil {
		t.Fatal(err)
	}
}

// A group stored without its lanes (a crash between the two writes) gets
// them at start, at the group's cursor; a lane without its group is removed.
func TestParallel_StartRepairsLanes(t *testing.T) {
	l := evqtest.MustOpenLog(t, nil)
	a, b := evqtest.NewReceiver(t), evqtest.NewReceiver(t)
	group := evq.Subscription{Event: "E_P", Socket: parallel(a, b), Options: evq.Options{Reliable: true}}
	orphan := evq.Subscription{Event: "E_P", Socket: a.Socket(), Parent: 999}
	for _, s := range []*evq.Subscription{&group, &orphan} {
		if err := l.PutSubscription(s, 0, true); err != nil {
			t.Fatal(err)
		}
	}
	e := newEngine(t, l, nil)
	raise(t, e, "E_P", 0, 3)
	assertInOrder(t, indexes(t, a.WaitFor(3, wait)), 0, 3)
	assertInOrder(t, indexes(t, b.WaitFor(3, wait)), 0, 3)
	if subs, _ := l.Subscriptions(); len(subs) != 3 {
		t.Fatalf("stored %+v, want the group and its 2 lanes", subs)
	}
	if got := len(a.Requests()); got != 3 {
		t.Fatalf("the orphan lane delivered too: %d requests", got)
	}
}
