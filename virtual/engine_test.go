package virtual_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/delivery"
	"github.com/evq/evq/internal/evqtest"
)

// These tests run groups the way evq runs them: a delivery engine on a real
// log, members that are real loopback subscribers (reliable JSON-RPC over
// tcp, XML-RPC over HTTP), killed and restarted mid-stream, answering with
// errors or not at all. Each checks that every raised event is delivered.

const wait = 15 * time.Second

func engine(t *testing.T, logger *slog.Logger) *delivery.Engine {
	t.Helper()
	return evqtest.StartEngine(t, evqtest.MustOpenLog(t, nil), &delivery.Options{Logger: logger,
		RetryInitial: time.Millisecond, RetryMax: 20 * time.Millisecond})
}

// groupOpts are reliable with a short breaker, so that a recovered member is
// probed within the test.
var groupOpts = evq.Options{Reliable: true, Timeout: 300 * time.Millisecond, FailoverTimeout: 200 * time.Millisecond}

func subscribeGroup(t *testing.T, e *delivery.Engine, socket string, o evq.Options) delivery.Status {
	t.Helper()
	st, err := e.Subscribe(context.Background(), delivery.SubscribeRequest{Event: "E_V", Socket: socket, Options: o})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func raiseN(t *testing.T, e *delivery.Engine, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		ev := &evq.Event{Name: "E_V", Named: true, Params: []evq.Param{{Name: "i", Value: evq.Int(int64(i))}}}
		if err := e.Raise(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
}

// tcpIndexes returns the "i" param of every request r accepted.
func tcpIndexes(t *testing.T, r *evqtest.Receiver) []int {
	t.Helper()
	var out []int
	for _, q := range r.Requests() {
		var p struct{ I int }
		if err := json.Unmarshal(q.Params, &p); err != nil {
			t.Fatal(err)
		}
		out = append(out, p.I)
	}
	return out
}

var xmlIndexRE = regexp.MustCompile(`<name>i</name>\n<value><int>(\d+)</int>`)

// xmlIndexes returns the "i" param of every call r answered with true.
func xmlIndexes(t *testing.T, r *evqtest.XMLRPCReceiver) []int {
	t.Helper()
	var out []int
	for _, p := range r.Payloads() {
		m := xmlIndexRE.FindSubmatch(p)
		if m == nil {
			t.Fatalf("no param i in %s", p)
		}
		i, _ := strconv.Atoi(string(m[1]))
		out = append(out, i)
	}
	return out
}

// waitAll waits until every index below n was delivered at least once to
// one of the members whose indexes got returns.
func waitAll(t *testing.T, n int, got ...func() []int) map[int]int {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		seen := make(map[int]int)
		for _, g := range got {
			for _, i := range g() {
				seen[i]++
			}
		}
		missing := -1
		for i := 0; i < n; i++ {
			if seen[i] == 0 {
				missing = i
				break
			}
		}
		if missing < 0 {
			return seen
		}
		if time.Now().After(deadline) {
			t.Fatalf("event %d never delivered (%d of %d seen)", missing, len(seen), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// inOrder checks that got holds 0..n-1 in order.
func inOrder(t *testing.T, who string, got []int, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%s got %d events, want %d", who, len(got), n)
	}
	for k, i := range got {
		if i != k {
			t.Fatalf("%s: event %d is %d", who, k, i)
		}
	}
}

func waitMembers(t *testing.T, e *delivery.Engine, id uint64, want ...string) delivery.Status {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		st, err := e.Subscription(id)
		if err != nil {
			t.Fatal(err)
		}
		ok := len(st.Members) == len(want)
		for i := 0; ok && i < len(want); i++ {
			ok = st.Members[i].State == want[i]
		}
		if ok {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("member breakers %+v, want %v", st.Members, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// OpenSIPS loss case 1: ROUND-ROBIN keeps sending to a dead member, and
// what it sends there is lost. evq skips the member while its breaker is
// open, re-sends the event it failed to the next member, and brings the
// member back into the rotation once it answers again.
func TestLoss_RoundRobinDeadMember(t *testing.T) {
	e := engine(t, nil)
	a, b, c := evqtest.NewReceiver(t), evqtest.NewReceiver(t), evqtest.NewReceiver(t)
	// The dead member's breaker must still be open when it is checked, after
	// the 300 events are delivered: under load (-race, 2 cores) that took
	// longer than groupOpts' 200 ms, and an open breaker that nobody probes
	// turns half-open and stays so.
	opts := groupOpts
	opts.FailoverTimeout = 2 * time.Second
	st := subscribeGroup(t, e, "virtual:ROUND-ROBIN "+a.Socket()+" "+b.Socket()+" "+c.Socket(), opts)
	raiseN(t, e, 0, 90)
	waitAll(t, 90, func() []int { return tcpIndexes(t, a) }, func() []int { return tcpIndexes(t, b) }, func() []int { return tcpIndexes(t, c) })

	b.Stop() // mid-stream
	raiseN(t, e, 90, 210)
	waitAll(t, 300, func() []int { return tcpIndexes(t, a) }, func() []int { return tcpIndexes(t, b) }, func() []int { return tcpIndexes(t, c) })
	waitMembers(t, e, st.ID, "closed", "open", "closed")
	before := len(b.Requests())

	b.Restart()
	time.Sleep(opts.FailoverTimeout)
	raiseN(t, e, 300, 300)
	seen := waitAll(t, 600, func() []int { return tcpIndexes(t, a) }, func() []int { return tcpIndexes(t, b) }, func() []int { return tcpIndexes(t, c) })
	st = waitMembers(t, e, st.ID, "closed", "closed", "closed")
	if len(b.Requests()) <= before {
		t.Fatal("the member that came back never got another event")
	}
	if st.Members[1].Failures == 0 || st.Members[0].Delivered == 0 {
		t.Fatalf("member counts %+v", st.Members)
	}
	t.Logf("600 events, %d distinct delivered; per member %d %d %d", len(seen), len(a.Requests()), len(b.Requests()), len(c.Requests()))
}

// OpenSIPS loss case 2: FAILOVER drops the event when every member fails.
// evq keeps it: the worker retries until a member is back, and traffic
// returns to the first member once its breaker's probe succeeds.
func TestLoss_FailoverAllDown(t *testing.T) {
	e := engine(t, nil)
	x, r := evqtest.NewXMLRPCReceiver(t), evqtest.NewReceiver(t)
	x.Stop()
	r.Stop()
	st := subscribeGroup(t, e, "virtual:FAILOVER "+x.Socket()+" "+r.Socket(), groupOpts)
	raiseN(t, e, 0, 50)
	st = waitMembers(t, e, st.ID, "open", "open")
	if st.State != delivery.StateRetrying || st.Lag != 50 || !strings.Contains(st.LastError, "no member of the FAILOVER group") {
		t.Fatalf("status %+v", st)
	}

	r.Restart() // the second member is back: everything goes there, in order
	r.WaitFor(50, wait)
	inOrder(t, "the second member", tcpIndexes(t, r), 50)

	x.Restart() // the first is back: after failover_timeout its probe succeeds
	deadline := time.Now().Add(wait)
	for next := 50; len(x.Payloads()) == 0; next++ {
		if time.Now().After(deadline) {
			t.Fatal("traffic never moved back to the first member")
		}
		raiseN(t, e, next, 1)
		time.Sleep(20 * time.Millisecond)
	}
	waitMembers(t, e, st.ID, "closed", "closed")
	st, _ = e.Subscription(st.ID)
	n := int(st.Cursor)
	waitAll(t, n, func() []int { return tcpIndexes(t, r) }, func() []int { return xmlIndexes(t, x) })
}

// OpenSIPS loss case 3: a udp: member never reports a failure, so in
// FAILOVER the members after it are never tried and events sent while its
// receiver is down are lost. No transport can detect that, so evq says so
// at subscribe time, in the reply and the log; with the udp member last,
// as the warning advises, nothing is lost while a detecting member lives.
func TestLoss_UDPHidesFailures(t *testing.T) {
	var logs bytes.Buffer
	e := engine(t, slog.New(slog.NewTextHandler(&logs, nil)))
	u := evqtest.NewDatagramReceiver(t, "udp")
	r := evqtest.NewReceiver(t)

	st := subscribeGroup(t, e, "virtual:FAILOVER "+u.Socket()+" "+r.Socket(), groupOpts)
	want := "FAILOVER member 1 (" + u.Socket() + ") cannot detect a failed delivery, so the members after it are never tried: put it last"
	if len(st.Warnings) != 1 || st.Warnings[0] != want {
		t.Fatalf("warnings %q, want %q", st.Warnings, want)
	}
	if !strings.Contains(logs.String(), want) {
		t.Fatalf("the warning is not in the log:\n%s", logs.String())
	}
	if err := e.Unsubscribe(context.Background(), st.ID); err != nil {
		t.Fatal(err)
	}

	st = subscribeGroup(t, e, "virtual:FAILOVER "+r.Socket()+" "+u.Socket(), groupOpts)
	if len(st.Warnings) != 0 {
		t.Fatalf("udp last: warnings %q", st.Warnings)
	}
	raiseN(t, e, 0, 20)
	r.WaitFor(20, wait)
	r.Stop() // the detecting member dies: the events go on to udp
	raiseN(t, e, 20, 20)
	u.WaitFor(20, wait)
	inOrder(t, "the tcp member", tcpIndexes(t, r), 20)
	waitMembers(t, e, st.ID, "open", "closed")
}

// FAILOVER with a member that answers with errors, then one that stalls past
// the reply timeout: both open the member's breaker, and the events go to
// the next member. A stalled member may have processed what it did not
// answer, so delivery is at least once.
func TestFailover_ErrorsAndStalls(t *testing.T) {
	e := engine(t, nil)
	a, b := evqtest.NewReceiver(t), evqtest.NewReceiver(t)
	st := subscribeGroup(t, e, "virtual:FAILOVER "+a.Socket()+" "+b.Socket(), groupOpts)
	a.RejectFirst(1)
	raiseN(t, e, 0, 10)
	waitAll(t, 10, func() []int { return tcpIndexes(t, a) }, func() []int { return tcpIndexes(t, b) })
	if got := tcpIndexes(t, b); len(got) == 0 || got[0] != 0 {
		t.Fatalf("the event the first member refused did not go to the second: %v", got)
	}

	time.Sleep(groupOpts.FailoverTimeout) // a answers again: let its breaker close
	raiseN(t, e, 10, 1)
	waitMembers(t, e, st.ID, "closed", "closed")
	a.Silent(true)
	raiseN(t, e, 11, 20)
	waitAll(t, 31, func() []int { return tcpIndexes(t, a) }, func() []int { return tcpIndexes(t, b) })
	st = waitMembers(t, e, st.ID, "open", "closed")
	if st.Members[0].Failures < 2 {
		t.Fatalf("member counts %+v", st.Members)
	}
}

// PARALLEL: every member gets every event, in order, though one member is
// killed mid-stream and restarted; the group's cursor waits for it.
func TestParallel_EveryMemberGetsEveryEvent(t *testing.T) {
	e := engine(t, nil)
	r, x := evqtest.NewReceiver(t), evqtest.NewXMLRPCReceiver(t)
	st := subscribeGroup(t, e, "virtual:PARALLEL "+r.Socket()+" "+x.Socket(), groupOpts)
	raiseN(t, e, 0, 100)
	waitAll(t, 100, func() []int { return xmlIndexes(t, x) })
	x.Stop()
	raiseN(t, e, 100, 100)
	r.WaitFor(200, wait)
	st = waitMembers(t, e, st.ID, "closed", "open")
	for i := 0; i < 1000 && st.Members[0].Cursor != 200; i++ {
		time.Sleep(5 * time.Millisecond) // the last reply is on its way
		st, _ = e.Subscription(st.ID)
	}
	if st.Members[0].Cursor != 200 || st.Cursor != st.Members[1].Cursor || st.Lag == 0 {
		t.Fatalf("status %+v", st)
	}
	x.Restart()
	waitAll(t, 200, func() []int { return xmlIndexes(t, x) })
	inOrder(t, "the tcp member", tcpIndexes(t, r), 200)
	inOrder(t, "the xmlrpc member", xmlIndexes(t, x), 200)
	waitMembers(t, e, st.ID, "closed", "closed")
}
