package delivery_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/delivery"
	"github.com/evq/evq/internal/evqtest"
	"github.com/evq/evq/queue"
	"github.com/evq/evq/transports"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const wait = 10 * time.Second

func newEngine(t *testing.T, l delivery.Log, newTr func(evq.Subscription) (evq.Transport, error)) *delivery.Engine {
	t.Helper()
	return evqtest.StartEngine(t, l, &delivery.Options{NewTransportFunc: newTr, RetryInitial: time.Millisecond, RetryMax: 20 * time.Millisecond})
}

func raise(t *testing.T, e *delivery.Engine, name string, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		ev := &evq.Event{Name: name, Named: true, Params: []evq.Param{{Name: "i", Value: evq.Int(int64(i))}}}
		if err := e.Raise(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
}

// indexes returns the "i" param of each request.
func indexes(t *testing.T, reqs []evqtest.Request) []int {
	t.Helper()
	out := make([]int, len(reqs))
	for k, r := range reqs {
		var p struct{ I int }
		if err := json.Unmarshal(r.Params, &p); err != nil {
			t.Fatalf("%s: %v", r.Raw, err)
		}
		out[k] = p.I
	}
	return out
}

// lastOfEach keeps the last arrival of each event: a retried event comes
// again, and so do those sent after it while it was in flight.
func lastOfEach(got []int) []int {
	last := make(map[int]int)
	for k, i := range got {
		last[i] = k
	}
	var final []int
	for k, i := range got {
		if last[i] == k {
			final = append(final, i)
		}
	}
	return final
}

func assertInOrder(t *testing.T, got []int, from, n int) {
	t.Helper()
	if len(got) < n {
		t.Fatalf("got %d events, want %d", len(got), n)
	}
	for k := 0; k < n; k++ {
		if got[k] != from+k {
			t.Fatalf("event %d is %d, want %d (got %v…)", k, got[k], from+k, got[:min(len(got), 20)])
		}
	}
}

func subscribe(t *testing.T, e *delivery.Engine, event, socket string, o evq.Options) delivery.Status {
	t.Helper()
	st, err := e.Subscribe(context.Background(), delivery.SubscribeRequest{Event: event, Socket: socket, Options: o})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func waitState(t *testing.T, e *delivery.Engine, id uint64, ok func(delivery.Status) bool) delivery.Status {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		st, err := e.Subscription(id)
		if err != nil {
			t.Fatal(err)
		}
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscription %d never reached the state: %+v", id, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestEngine_Deliver(t *testing.T) {
	e := newEngine(t, evqtest.MustOpenLog(t, nil), nil)
	r := evqtest.NewReceiver(t)
	raise(t, e, "E_X", 0, 5) // before the subscription: not delivered (start=now)
	st := subscribe(t, e, "E_X", r.Socket(), evq.Options{})
	raise(t, e, "E_X", 100, 300)
	raise(t, e, "E_OTHER", 0, 3)
	assertInOrder(t, indexes(t, r.WaitFor(300, wait)), 100, 300)
	st = waitState(t, e, st.ID, func(s delivery.Status) bool { return s.Lag == 0 })
	if st.Delivered != 300 || st.State != delivery.StateActive {
		t.Fatalf("%+v", st)
	}
}

func TestEngine_ReliableRetries(t *testing.T) {
	for _, inflight := range []int{1, 64} {
		t.Run(fmt.Sprint("Inflight", inflight), func(t *testing.T) {
			e := newEngine(t, evqtest.MustOpenLog(t, nil), nil)
			r := evqtest.NewReceiver(t)
			r.RejectFirst(7)
			st := subscribe(t, e, "E_R", r.Socket(), evq.Options{Reliable: true, MaxInflight: inflight})
			raise(t, e, "E_R", 0, 1000)
			got := indexes(t, r.WaitFor(1000, wait))
			st = waitState(t, e, st.ID, func(s delivery.Status) bool { return s.Lag == 0 })
			// Pipelined requests after a rejected one may arrive before its retry;
			// every event arrives, and the retries restore the order.
			seen := make(map[int]bool)
			for _, i := range got {
				seen[i] = true
			}
			if len(seen) != 1000 {
				t.Fatalf("%d distinct events", len(seen))
			}
			if inflight == 1 {
				assertInOrder(t, got, 0, 1000)
			}
			if st.Failures < 7 || st.Retries < 7 || st.DeadLetters != 0 {
				t.Fatalf("%+v", st)
			}
		})
	}
}

func TestEngine_DeadLetters(t *testing.T) {
	e := newEngine(t, evqtest.MustOpenLog(t, nil), nil)
	r := evqtest.NewReceiver(t)
	r.RejectFirst(1 << 30)
	st := subscribe(t, e, "E_D", r.Socket(), evq.Options{Reliable: true, MaxAttempts: 2})
	raise(t, e, "E_D", 0, 3)
	st = waitState(t, e, st.ID, func(s delivery.Status) bool { return s.DeadLetters == 3 && s.Lag == 0 })
	if st.State != delivery.StateActive {
		t.Fatalf("state %q after parking everything, want active", st.State)
	}
	ds, err := e.DeadLetters(st.ID, 0, 10)
	if err != nil || len(ds) != 3 || ds[0].Attempts != 2 || !strings.Contains(ds[0].Error, "rejected by test") {
		t.Fatalf("%v %v", ds, err)
	}
	r.RejectFirst(0)
	if n, err := e.Redrive(st.ID); n != 3 || err != nil {
		t.Fatalf("redrive %d %v", n, err)
	}
	assertInOrder(t, indexes(t, r.WaitFor(3, wait)), 0, 3)
	waitState(t, e, st.ID, func(s delivery.Status) bool { return s.DeadLetters == 0 })

	t.Run("Purge", func(t *testing.T) {
		r.RejectFirst(1 << 30)
		raise(t, e, "E_D", 10, 2)
		waitState(t, e, st.ID, func(s delivery.Status) bool { return s.DeadLetters == 2 })
		if n, err := e.PurgeDeadLetters(st.ID); n != 2 || err != nil {
			t.Fatalf("purge %d %v", n, err)
		}
	})
}

// permanentTransport fails events whose "bad" param is set, for good.
type permanentTransport struct{ sent chan *evq.Event }

func (p *permanentTransport) Send(ctx context.Context, evs []*evq.Event) (int, error) {
	for i, ev := range evs {
		if len(ev.Params) > 0 && ev.Params[0].Name == "bad" {
			return i, evq.Permanent(errors.New("cannot encode"))
		}
		p.sent <- ev
	}
	return len(evs), nil
}
func (p *permanentTransport) Close() error { return nil }

func TestEngine_PermanentError(t *testing.T) {
	pt := &permanentTransport{sent: make(chan *evq.Event, 10)}
	e := newEngine(t, evqtest.MustOpenLog(t, nil), func(evq.Subscription) (evq.Transport, error) { return pt, nil })
	st := subscribe(t, e, "E_P", "tcp:127.0.0.1:1", evq.Options{})
	for _, name := range []string{"ok", "bad", "ok"} {
		if err := e.Raise(context.Background(), &evq.Event{Name: "E_P", Named: true, Params: []evq.Param{{Name: name, Value: evq.Int(1)}}}); err != nil {
			t.Fatal(err)
		}
	}
	<-pt.sent
	<-pt.sent
	st = waitState(t, e, st.ID, func(s delivery.Status) bool { return s.DeadLetters == 1 && s.Lag == 0 })
	if st.Failures != 1 || st.Retries != 0 {
		t.Fatalf("permanent error was retried: %+v", st)
	}
}

func TestEngine_DeadSubscriberDoesNotBlockOthers(t *testing.T) {
	e := newEngine(t, evqtest.MustOpenLog(t, nil), nil)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	dst := subscribe(t, e, "E_S", "tcp:"+dead, evq.Options{Reliable: true})
	r := evqtest.NewReceiver(t)
	subscribe(t, e, "E_S", r.Socket(), evq.Options{Reliable: true})
	raise(t, e, "E_S", 0, 200)
	assertInOrder(t, indexes(t, r.WaitFor(200, wait)), 0, 200)
	st := waitState(t, e, dst.ID, func(s delivery.Status) bool { return s.State == delivery.StateRetrying })
	if st.Lag != 200 || !strings.Contains(st.LastError, "connect") {
		t.Fatalf("dead subscriber: %+v", st)
	}
}

func TestEngine_ExpireAndResubscribe(t *testing.T) {
	e := newEngine(t, evqtest.MustOpenLog(t, nil), nil)
	r := evqtest.NewReceiver(t)
	st, err := e.Subscribe(context.Background(), delivery.SubscribeRequest{Event: "E_E", Socket: r.Socket(), Expire: 1})
	if err != nil {
		t.Fatal(err)
	}
	raise(t, e, "E_E", 0, 2)
	r.WaitFor(2, wait)
	waitState(t, e, st.ID, func(s delivery.Status) bool { return s.State == delivery.StateExpired })
	raise(t, e, "E_E", 2, 3) // missed while expired
	if got := len(r.Requests()); got != 2 {
		t.Fatalf("an expired subscription delivered: %d", got)
	}
	st2 := subscribe(t, e, "E_E", r.Socket(), evq.Options{})
	if st2.ID != st.ID {
		t.Fatalf("resubscribe made a new subscription %d, want %d", st2.ID, st.ID)
	}
	assertInOrder(t, indexes(t, r.WaitFor(5, wait)), 0, 5)

	t.Run("StartNow", func(t *testing.T) {
		if _, err := e.Subscribe(context.Background(), delivery.SubscribeRequest{Event: "E_E", Socket: r.Socket(), Expire: 1}); err != nil {
			t.Fatal(err)
		}
		waitState(t, e, st.ID, func(s delivery.Status) bool { return s.State == delivery.StateExpired })
		raise(t, e, "E_E", 5, 3)
		if _, err := e.Subscribe(context.Background(), delivery.SubscribeRequest{Event: "E_E", Socket: r.Socket(), Start: delivery.Start{Kind: delivery.StartNow}}); err != nil {
			t.Fatal(err)
		}
		raise(t, e, "E_E", 8, 1)
		got := indexes(t, r.WaitFor(6, wait))
		if got[5] != 8 {
			t.Fatalf("start=now delivered missed events: %v", got)
		}
	})
}

func TestEngine_Replay(t *testing.T) {
	e := newEngine(t, evqtest.MustOpenLog(t, nil), nil)
	r := evqtest.NewReceiver(t)
	st := subscribe(t, e, "E_P", r.Socket(), evq.Options{Reliable: true})
	raise(t, e, "E_P", 0, 10)
	r.WaitFor(10, wait)
	waitState(t, e, st.ID, func(s delivery.Status) bool { return s.Lag == 0 })
	if _, err := e.Replay(context.Background(), st.ID, delivery.Start{Kind: delivery.StartSeq, Seq: 4}); err != nil {
		t.Fatal(err)
	}
	got := indexes(t, r.WaitFor(17, wait))
	assertInOrder(t, got[10:], 3, 7)

	t.Run("Since", func(t *testing.T) {
		if _, err := e.Replay(context.Background(), st.ID, delivery.Start{Kind: delivery.StartTime, Since: time.Now().Add(-time.Hour)}); err != nil {
			t.Fatal(err)
		}
		assertInOrder(t, indexes(t, r.WaitFor(27, wait))[17:], 0, 10)
	})
}

// TestEngine_BacklogInManyReads drains a backlog many reads long, so the
// worker reads each next batch while the one before is in flight: every
// event arrives once and in order. Then an event fails in the middle of a
// batch while the next is read ahead: it is retried, and the events after it
// follow in order.
// Twelve subscribers of one event name (enough to share what they decode)
// each get every event in order, from a stored backlog read in small
// batches and from raises that go on meanwhile, one subscriber rejecting
// some of its events.
func TestEngine_FanoutSharesReads(t *testing.T) {
	l := evqtest.MustOpenLog(t, nil)
	e := evqtest.StartEngine(t, l, &delivery.Options{ReadBatch: 25, RetryInitial: time.Millisecond, RetryMax: 20 * time.Millisecond})
	evs := make([]*evq.Event, 1500)
	for i := range evs {
		evs[i] = &evq.Event{Name: "E_F", Named: true, Params: []evq.Param{{Name: "i", Value: evq.Int(int64(i))}}}
	}
	if err := e.RaiseBatch(context.Background(), evs[:1000]); err != nil {
		t.Fatal(err)
	}
	if err := l.Flush(context.Background()); err != nil { // the backlog is in bbolt
		t.Fatal(err)
	}
	recv := make([]*evqtest.Receiver, 12)
	var rejecting uint64 // the subscription of recv[3]
	for k := range recv {
		recv[k] = evqtest.NewReceiver(t)
		if k == 3 {
			recv[k].RejectFirst(5)
		}
		st, err := e.Subscribe(context.Background(), delivery.SubscribeRequest{Event: "E_F", Socket: recv[k].Socket(),
			Options: evq.Options{Reliable: true, MaxInflight: 8}, Start: delivery.Start{Kind: delivery.StartEarliest}})
		if err != nil {
			t.Fatal(err)
		}
		if k == 3 {
			rejecting = st.ID
		}
	}
	for i := 1000; i < 1500; i += 50 {
		if err := e.RaiseBatch(context.Background(), evs[i:i+50]); err != nil {
			t.Fatal(err)
		}
	}
	for k, r := range recv {
		if k == 3 { // a rejected event comes again, with those sent after it
			waitState(t, e, rejecting, func(s delivery.Status) bool { return s.Lag == 0 && s.Delivered == 1500 })
			assertInOrder(t, lastOfEach(indexes(t, r.Requests())), 0, 1500)
			continue
		}
		assertInOrder(t, indexes(t, r.WaitFor(1500, wait)), 0, 1500)
	}
}

func TestEngine_BacklogInManyReads(t *testing.T) {
	e := evqtest.StartEngine(t, evqtest.MustOpenLog(t, nil), &delivery.Options{ReadBatch: 10,
		RetryInitial: time.Millisecond, RetryMax: 20 * time.Millisecond})
	r := evqtest.NewReceiver(t)
	evs := make([]*evq.Event, 2000)
	for i := range evs {
		evs[i] = &evq.Event{Name: "E_B", Named: true, Params: []evq.Param{{Name: "i", Value: evq.Int(int64(i))}}}
	}
	if err := e.RaiseBatch(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	st, err := e.Subscribe(context.Background(), delivery.SubscribeRequest{Event: "E_B", Socket: r.Socket(),
		Options: evq.Options{Reliable: true, MaxInflight: 4}, Start: delivery.Start{Kind: delivery.StartEarliest}})
	if err != nil {
		t.Fatal(err)
	}
	got := indexes(t, r.WaitFor(2000, wait))
	assertInOrder(t, got, 0, 2000)
	waitState(t, e, st.ID, func(s delivery.Status) bool { return s.Lag == 0 && s.Delivered == 2000 })

	r.RejectFirst(1)
	for i := range evs[:300] {
		evs[i] = &evq.Event{Name: "E_B", Named: true, Params: []evq.Param{{Name: "i", Value: evq.Int(int64(2000 + i))}}}
	}
	if err := e.RaiseBatch(context.Background(), evs[:300]); err != nil {
		t.Fatal(err)
	}
	waitState(t, e, st.ID, func(s delivery.Status) bool { return s.Lag == 0 })
	// The rejected event is sent again, and so are those sent after it
	// while it was in flight: the last time each event arrived, it arrived
	// in order.
	assertInOrder(t, lastOfEach(indexes(t, r.Requests())[2000:]), 2000, 300)
	if st := waitState(t, e, st.ID, func(s delivery.Status) bool { return s.Lag == 0 }); st.Delivered != 2300 || st.Retries == 0 {
		t.Fatalf("delivered %d with %d retries, want 2300 with a retry", st.Delivered, st.Retries)
	}
}

func TestEngine_ResumeAfterRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "evq.db")
	r := evqtest.NewReceiver(t)
	open := func() (*queue.Log, *delivery.Engine) {
		l, err := queue.Open(path, &queue.Options{RetentionInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		e := delivery.New(l, &delivery.Options{NewTransportFunc: transports.New, RetryInitial: time.Millisecond})
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		return l, e
	}
	shut := func(l *queue.Log, e *delivery.Engine) {
		if err := e.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	l, e := open()
	st := subscribe(t, e, "E_Z", r.Socket(), evq.Options{Reliable: true})
	raise(t, e, "E_Z", 0, 50)
	r.WaitFor(50, wait)
	waitState(t, e, st.ID, func(s delivery.Status) bool { return s.Lag == 0 })
	shut(l, e)
	r.Stop()
	l, e = open()
	raise(t, e, "E_Z", 50, 50) // the subscriber is down
	r.Restart()
	got := indexes(t, r.WaitFor(100, wait))
	assertInOrder(t, got, 0, 100) // nothing redelivered after a clean stop, nothing lost
	shut(l, e)
}

func TestEngine_SubscribeErrors(t *testing.T) {
	e := newEngine(t, evqtest.MustOpenLog(t, nil), nil)
	for _, tt := range []struct {
		event, socket string
		opts          evq.Options
		want          string
	}{
		{"E_X", "foo:bar", evq.Options{}, `unknown scheme "foo"`},
		{"E_X", "tcp:127.0.0.1", evq.Options{}, "missing port"},
		{"bad name", "tcp:127.0.0.1:1", evq.Options{}, "event name"},
		{"E_X", "virtual:SOMETIMES tcp:127.0.0.1:1", evq.Options{}, `unknown policy "SOMETIMES" (want PARALLEL, FAILOVER or ROUND-ROBIN)`},
		{"E_X", "virtual:FAILOVER", evq.Options{}, "no members"},
		{"E_X", "virtual:FAILOVER tcp:127.0.0.1:1 virtual:PARALLEL", evq.Options{}, "virtual groups cannot be nested"},
		{"E_X", "virtual:PARALLEL tcp:127.0.0.1:1 tcp:127.0.0.1:2", evq.Options{ParallelSuccess: "most"}, `parallel_success "most": want "all"`},
		{"E_X", "virtual:FAILOVER tcp:127.0.0.1:1 tcp:127.0.0.1:2", evq.Options{ParallelSuccess: "any"}, "PARALLEL groups only"},
		{"E_X", "virtual:FAILOVER tcp:127.0.0.1:1 tcp:127.0.0.1:2", evq.Options{BreakerFailures: -1}, "breaker_failures -1"},
	} {
		_, err := e.Subscribe(context.Background(), delivery.SubscribeRequest{Event: tt.event, Socket: tt.socket, Options: tt.opts})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("subscribe %s %s: %v, want %q", tt.event, tt.socket, err, tt.want)
		}
	}
	if len(e.Subscriptions()) != 0 {
		t.Fatal("a rejected subscription was stored")
	}
}

func TestEngine_SweepExpired(t *testing.T) {
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	e := delivery.New(evqtest.MustOpenLog(t, nil), &delivery.Options{NewTransportFunc: transports.New, NowFunc: clock,
		KeepExpired: time.Hour, SweepInterval: time.Hour})
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	st, err := e.Subscribe(context.Background(), delivery.SubscribeRequest{Event: "E_W", Socket: "tcp:127.0.0.1:1", Expire: 60})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(30 * time.Minute) // expired, but its cursor is kept
	mu.Unlock()
	if n := e.Sweep(); n != 0 {
		t.Fatalf("swept %d within KeepExpired", n)
	}
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	if n := e.Sweep(); n != 1 || len(e.Subscriptions()) != 0 {
		t.Fatalf("swept %d, %d left", n, len(e.Subscriptions()))
	}
	st2, err := e.Subscribe(context.Background(), delivery.SubscribeRequest{Event: "E_W", Socket: "tcp:127.0.0.1:1"})
	if err != nil || st2.ID == st.ID {
		t.Fatalf("resubscribe after sweep: %+v %v", st2, err)
	}
}

func TestEngine_OversizeDatagramIsDeadLettered(t *testing.T) {
	e := newEngine(t, evqtest.MustOpenLog(t, nil), nil)
	r := evqtest.NewDatagramReceiver(t, "udp")
	st := subscribe(t, e, "E_U", r.Socket(), evq.Options{})
	for _, size := range []int{10, 65500, 10} { // 65500 fits the log (64 KiB), not a datagram (65457)
		ev := &evq.Event{Name: "E_U", Named: true, Params: []evq.Param{{Name: "p", Value: evq.String(strings.Repeat("x", size))}}}
		if err := e.Raise(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	r.WaitFor(2, wait)
	st = waitState(t, e, st.ID, func(s delivery.Status) bool { return s.DeadLetters == 1 && s.Lag == 0 })
	ds, _ := e.DeadLetters(st.ID, 0, 10)
	if len(ds) != 1 || ds[0].Event.Seq != 2 || ds[0].Attempts != 1 || !strings.Contains(ds[0].Error, "holds at most 65457") {
		t.Fatalf("%+v", ds)
	}
}

func TestEngine_VirtualFailover(t *testing.T) {
	e := newEngine(t, evqtest.MustOpenLog(t, nil), nil)
	a, b := evqtest.NewReceiver(t), evqtest.NewReceiver(t)
	a.Stop()
	st := subscribe(t, e, "E_G", "virtual:FAILOVER "+a.Socket()+" "+b.Socket(), evq.Options{Reliable: true})
	raise(t, e, "E_G", 0, 100)
	assertInOrder(t, indexes(t, b.WaitFor(100, wait)), 0, 100)
	st, _ = e.Subscription(st.ID)
	if len(st.Members) != 2 || st.Members[0].State != "open" || st.Members[1].State != "closed" || st.Members[1].Socket != b.Socket() {
		t.Fatalf("member states %+v", st.Members)
	}
}

// A redriven dead letter gets a full max_age of retries from the redrive,
// not one attempt because it was raised long ago.
func TestEngine_RedriveRestartsMaxAge(t *testing.T) {
	e := newEngine(t, evqtest.MustOpenLog(t, nil), nil)
	r := evqtest.NewReceiver(t)
	r.Stop()
	st := subscribe(t, e, "E_R", r.Socket(), evq.Options{Reliable: true, MaxAge: 200 * time.Millisecond})
	raise(t, e, "E_R", 0, 3)
	waitState(t, e, st.ID, func(s delivery.Status) bool { return s.DeadLetters == 3 })
	time.Sleep(300 * time.Millisecond) // the letters are now well past max_age
	r.Restart()
	r.RejectFirst(2)
	if n, err := e.Redrive(st.ID); n != 3 || err != nil {
		t.Fatal(n, err)
	}
	assertInOrder(t, indexes(t, r.WaitFor(3, wait)), 0, 3)
	waitState(t, e, st.ID, func(s delivery.Status) bool { return s.DeadLetters == 0 })
}
