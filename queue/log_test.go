package queue_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/internal/evqtest"
	"github.com/evq/evq/queue"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ev(name string, params ...evq.Param) *evq.Event {
	return &evq.Event{Name: name, Named: len(params) > 0 && params[0].Name != "", Params: params}
}

func TestLog_Append(t *testing.T) {
	l := evqtest.MustOpenLog(t, nil)
	ctx := context.Background()
	f, _ := evq.Float("1.50")
	in := ev("E_X", evq.Param{Name: "s", Value: evq.String("héllo\x00")}, evq.Param{Name: "n", Value: evq.Int(-1 << 63)},
		evq.Param{Name: "f", Value: f}, evq.Param{Name: "b", Value: evq.Bool(true)}, evq.Param{Name: "z", Value: evq.Null()})
	if err := l.Append(ctx, in); err != nil {
		t.Fatal(err)
	}
	if in.Seq != 1 || in.Time.IsZero() {
		t.Fatalf("seq %d time %v", in.Seq, in.Time)
	}
	un := ev("E_Y", evq.Param{Value: evq.Int(3)}, evq.Param{Value: evq.String("5")})
	none := ev("E_X")
	if err := l.Append(ctx, un, none); err != nil {
		t.Fatal(err)
	}
	if un.Seq != 2 || none.Seq != 3 || l.LastSeq() != 3 {
		t.Fatalf("seqs %d %d last %d", un.Seq, none.Seq, l.LastSeq())
	}
	got, err := l.Read("E_X", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Seq != 1 || got[1].Seq != 3 {
		t.Fatalf("read %+v", got)
	}
	if g, w := fmt.Sprint(got[0].Params), fmt.Sprint(in.Params); g != w || !got[0].Named {
		t.Fatalf("params %s, want %s", g, w)
	}
	got, _ = l.Read("E_Y", 0, 10)
	if len(got) != 1 || got[0].Named || fmt.Sprint(got[0].Params) != fmt.Sprint(un.Params) {
		t.Fatalf("unnamed %+v", got)
	}
	names, _ := l.Names()
	if len(names) != 2 || names[0].Name != "E_X" || names[0].Count != 2 || names[0].FirstSeq != 1 || names[0].LastSeq != 3 {
		t.Fatalf("names %+v", names)
	}

	t.Run("Invalid", func(t *testing.T) {
		err := l.Append(ctx, ev("bad name"))
		if !errors.Is(err, evq.ErrInvalidEvent) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("TooLarge", func(t *testing.T) {
		big := ev("E_BIG", evq.Param{Name: "x", Value: evq.String(string(make([]byte, 70000)))})
		err := l.Append(ctx, big)
		if !errors.Is(err, queue.ErrEventTooLarge) {
			t.Fatalf("err %v", err)
		}
		if l.LastSeq() != 3 {
			t.Fatal("a rejected event took a seq")
		}
	})
}

func TestLog_GroupCommit(t *testing.T) {
	l := evqtest.MustOpenLog(t, nil)
	const raisers, each = 64, 50
	var wg sync.WaitGroup
	seqs := make(chan uint64, raisers*each)
	for r := 0; r < raisers; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				e := ev("E_G", evq.Param{Name: "i", Value: evq.Int(int64(i))})
				if err := l.Append(context.Background(), e); err != nil {
					t.Error(err)
					return
				}
				seqs <- e.Seq
			}
		}()
	}
	wg.Wait()
	close(seqs)
	seen := make(map[uint64]bool)
	for s := range seqs {
		if seen[s] {
			t.Fatalf("seq %d twice", s)
		}
		seen[s] = true
	}
	if len(seen) != raisers*each || l.LastSeq() != raisers*each {
		t.Fatalf("%d seqs, last %d", len(seen), l.LastSeq())
	}
	st := l.Stats()
	if st.Commits.Load() >= raisers*each {
		t.Fatalf("%d commits for %d appends: no grouping", st.Commits.Load(), raisers*each)
	}
}

func TestLog_Reopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "evq.db")
	l, err := queue.Open(path, &queue.Options{RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	sub := &evq.Subscription{Event: "E_R", Socket: "tcp:127.0.0.1:1"}
	if err := l.PutSubscription(sub, 0, true); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if err := l.Append(context.Background(), ev("E_R")); err != nil {
			t.Fatal(err)
		}
	}
	l.SetCursor(sub.ID, 7)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err = queue.Open(path, &queue.Options{RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if c, _ := l.Cursor(sub.ID); c != 7 {
		t.Fatalf("cursor %d after reopen, want 7 (flushed on close)", c)
	}
	e := ev("E_R")
	if err := l.Append(context.Background(), e); err != nil || e.Seq != 11 {
		t.Fatalf("seq after reopen %d, %v", e.Seq, err)
	}
	if lag, _ := l.Lag("E_R", 7); lag != 4 {
		t.Fatalf("lag %d", lag)
	}
	if r, err := l.Check(); err != nil {
		t.Fatalf("check: %v %v", err, r.Problems)
	}
}

func TestLog_CursorFlush(t *testing.T) {
	l := evqtest.MustOpenLog(t, &queue.Options{CursorFlushInterval: 10 * time.Millisecond})
	sub := &evq.Subscription{Event: "E_C", Socket: "tcp:127.0.0.1:1"}
	if err := l.PutSubscription(sub, 0, true); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(context.Background(), ev("E_C"), ev("E_C")); err != nil {
		t.Fatal(err)
	}
	before := l.Stats().Applies.Load()
	l.SetCursor(sub.ID, 2)
	deadline := time.Now().Add(5 * time.Second)
	for l.Stats().Applies.Load() == before {
		if time.Now().After(deadline) {
			t.Fatal("cursor never flushed without appends")
		}
		time.Sleep(time.Millisecond)
	}
	if c, _ := l.Cursor(sub.ID); c != 2 {
		t.Fatalf("cursor %d", c)
	}
}

func TestLog_Notify(t *testing.T) {
	l := evqtest.MustOpenLog(t, nil)
	ch := l.Notify()
	select {
	case <-ch:
		t.Fatal("notified before any commit")
	default:
	}
	if err := l.Append(context.Background(), ev("E_N")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no notification after commit")
	}
}

func TestLog_SeqBefore(t *testing.T) {
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	l := evqtest.MustOpenLog(t, &queue.Options{NowFunc: clock})
	for i := 0; i < 20; i++ {
		mu.Lock()
		now = time.Unix(1000+int64(i), 0)
		mu.Unlock()
		if err := l.Append(context.Background(), ev("E_T")); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		at   int64
		want uint64
	}{{999, 0}, {1000, 0}, {1005, 5}, {1019, 19}, {1030, 20}} {
		got, err := l.SeqBefore("E_T", time.Unix(tt.at, 0))
		if err != nil || got != tt.want {
			t.Errorf("SeqBefore(%d) = %d, %v; want %d", tt.at, got, err, tt.want)
		}
	}
}

func TestLog_Retain(t *testing.T) {
	now := time.Unix(100000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	l := evqtest.MustOpenLog(t, &queue.Options{NowFunc: clock, MinAge: time.Hour, MaxAge: 10 * time.Hour})
	sub := &evq.Subscription{Event: "E_K", Socket: "tcp:127.0.0.1:1"}
	if err := l.PutSubscription(sub, 0, true); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if err := l.Append(context.Background(), ev("E_K")); err != nil {
			t.Fatal(err)
		}
	}
	l.SetCursor(sub.ID, 4)
	if r, _ := l.Retain(); r.Deleted != 0 {
		t.Fatalf("deleted %d younger than min age", r.Deleted)
	}
	advance(2 * time.Hour)
	r, err := l.Retain()
	if err != nil || r.Deleted != 4 {
		t.Fatalf("deleted %d, %v; want the 4 acknowledged", r.Deleted, err)
	}
	if got, _ := l.Read("E_K", 0, 100); len(got) != 6 || got[0].Seq != 5 {
		t.Fatalf("left %d events", len(got))
	}
	advance(10 * time.Hour)
	r, _ = l.Retain()
	if r.Deleted != 6 || r.Dropped[sub.ID] != 6 {
		t.Fatalf("max age: deleted %d dropped %v", r.Deleted, r.Dropped)
	}
	if b, _ := l.StoredBytes(); b != 0 {
		t.Fatalf("stored bytes %d after deleting all", b)
	}
	// Seqs are never reused after deletion.
	e := ev("E_K")
	if err := l.Append(context.Background(), e); err != nil || e.Seq != 11 {
		t.Fatalf("seq %d", e.Seq)
	}
}

func TestLog_RetainMaxBytes(t *testing.T) {
	l := evqtest.MustOpenLog(t, &queue.Options{MaxBytes: 1000})
	for i := 0; i < 100; i++ {
		name := []string{"E_A", "E_B"}[i%2]
		if err := l.Append(context.Background(), ev(name, evq.Param{Name: "p", Value: evq.String("0123456789")})); err != nil {
			t.Fatal(err)
		}
	}
	r, err := l.Retain()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := l.StoredBytes()
	if b > 1000 || r.Deleted == 0 {
		t.Fatalf("%d bytes left, %d deleted", b, r.Deleted)
	}
	// The oldest went first: what is left is the newest, across names.
	a, _ := l.Read("E_A", 0, 1)
	bb, _ := l.Read("E_B", 0, 1)
	if a[0].Seq < uint64(r.Deleted) || bb[0].Seq < uint64(r.Deleted) {
		t.Fatalf("left oldest %d %d after deleting %d", a[0].Seq, bb[0].Seq, r.Deleted)
	}
}

func TestLog_DeadLetters(t *testing.T) {
	l := evqtest.MustOpenLog(t, nil)
	sub := &evq.Subscription{Event: "E_D", Socket: "tcp:127.0.0.1:1"}
	if err := l.PutSubscription(sub, 0, true); err != nil {
		t.Fatal(err)
	}
	e := ev("E_D", evq.Param{Name: "a", Value: evq.String("b")})
	if err := l.Append(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if err := l.AddDeadLetter(sub.ID, &evq.DeadLetter{Event: e, Attempts: 3, Error: "refused", Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	ds, err := l.DeadLetters(sub.ID, 0, 10)
	if err != nil || len(ds) != 1 || ds[0].Attempts != 3 || ds[0].Error != "refused" || ds[0].Event.Params[0].Value.Str != "b" {
		t.Fatalf("%+v %v", ds, err)
	}
	if n, _ := l.DeadLetterCount(sub.ID); n != 1 {
		t.Fatalf("count %d", n)
	}
	if n, err := l.DeleteDeadLetters(sub.ID); n != 1 || err != nil {
		t.Fatalf("purge %d %v", n, err)
	}
	if err := l.AddDeadLetter(999, &evq.DeadLetter{Event: e}); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("dead letter for missing sub: %v", err)
	}
}

func TestLog_Closed(t *testing.T) {
	l, err := queue.Open(filepath.Join(t.TempDir(), "evq.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if err := l.Append(context.Background(), ev("E_X")); !errors.Is(err, queue.ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
}

// ReadInto, reusing one buffer across reads of events with more, fewer,
// named, unnamed or no params, returns what Read returns.
func TestLog_ReadIntoReuse(t *testing.T) {
	l := evqtest.MustOpenLog(t, nil)
	var evs []*evq.Event
	for i := 0; i < 200; i++ {
		e := &evq.Event{Name: "E_R", Named: i%3 != 0}
		for k := 0; k < (i*7)%13; k++ {
			p := evq.Param{Value: evq.String(fmt.Sprintf("v%d-%d", i, k))}
			if k%2 == 1 {
				p.Value = evq.Int(int64(i*k - 50))
			}
			if e.Named {
				p.Name = fmt.Sprintf("p%d", k)
			}
			e.Params = append(e.Params, p)
		}
		evs = append(evs, e)
	}
	if err := l.Append(context.Background(), evs...); err != nil {
		t.Fatal(err)
	}
	var buf []evq.Event
	for _, from := range []uint64{0, 150, 3, 77, 0, 199, 42} {
		var err error
		buf, err = l.ReadInto(buf, "E_R", from, 50)
		if err != nil {
			t.Fatal(err)
		}
		want, err := l.Read("E_R", from, 50)
		if err != nil {
			t.Fatal(err)
		}
		if len(buf) != len(want) {
			t.Fatalf("from %d: %d events, want %d", from, len(buf), len(want))
		}
		for i := range want {
			got := buf[i]
			if got.Seq != want[i].Seq || got.Named != want[i].Named || fmt.Sprint(got.Params) != fmt.Sprint(want[i].Params) {
				t.Fatalf("from %d, event %d: %+v, want %+v", from, i, got, *want[i])
			}
		}
	}
}

// The strings of events read from the unapplied tail (which share memory
// with the raisers' encodings) and from bbolt (which share one copy per
// stored block) stay as they were while the log goes on: more raises, the
// applier writing the tail into bbolt, and reads into the same memory.
func TestRead_EventsStayIntact(t *testing.T) {
	l := evqtest.MustOpenLog(t, nil)
	ctx := context.Background()
	raise := func(from, n int) {
		for i := from; i < from+n; i++ {
			if err := l.Append(ctx, evqtest.CDR(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	raise(0, 50)
	fromTail, err := l.Read(evqtest.CDR(0).Name, 0, 50) // before the applier's next round
	if err != nil {
		t.Fatal(err)
	}
	want := dump(fromTail...)
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var buf []evq.Event
	buf, err = l.ReadInto(buf, evqtest.CDR(0).Name, 10, 30) // from bbolt, starting mid-block
	if err != nil || len(buf) != 30 || buf[0].Seq != 11 {
		t.Fatalf("read %d events from %d: %v", len(buf), buf[0].Seq, err)
	}
	fromBolt := make([]evq.Event, len(buf))
	for i, e := range buf {
		e.Params = slices.Clone(e.Params) // ReadInto reuses the arrays, not the strings
		fromBolt[i] = e
	}
	wantBolt := dumpValues(fromBolt)
	if g, w := dumpValues(fromBolt), dump(fromTail[10:40]...); g != w {
		t.Fatalf("bbolt read %s\ntail read %s", g, w)
	}
	for round := 0; round < 3; round++ {
		raise(50+50*round, 50)
		buf, err = l.ReadInto(buf, evqtest.CDR(0).Name, uint64(40+50*round), 60)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := dump(fromTail...); got != want {
		t.Fatalf("tail events changed:\n%s\nwas\n%s", got, want)
	}
	if got := dumpValues(fromBolt); got != wantBolt {
		t.Fatalf("bbolt events changed:\n%s\nwas\n%s", got, wantBolt)
	}
}

// ReadShared returns the events ReadInto returns, in order, across bbolt and
// the tail. Tail events are decoded once: two readers get the same event.
// Neither a reader's later reads into the same memory nor the applier
// changes an event another reader holds.
func TestReadShared(t *testing.T) {
	l := evqtest.MustOpenLog(t, nil)
	ctx := context.Background()
	name := evqtest.CDR(0).Name
	for i := 0; i < 40; i++ {
		if err := l.Append(ctx, evqtest.CDR(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Flush(ctx); err != nil { // 1–40 in bbolt
		t.Fatal(err)
	}
	for i := 40; i < 100; i++ { // 41–100 in the tail, with another name between
		if err := l.Append(ctx, evqtest.CDR(i), &evq.Event{Name: "E_OTHER"}); err != nil {
			t.Fatal(err)
		}
	}
	want, err := l.Read(name, 30, 50)
	if err != nil || len(want) != 50 {
		t.Fatalf("Read: %d events, %v", len(want), err)
	}
	var bufA, bufB []evq.Event
	var a, b []*evq.Event
	bufA, a, err = l.ReadShared(bufA, a, name, 30, 50) // 10 from bbolt, 40 from the tail
	if err != nil {
		t.Fatal(err)
	}
	bufB, b, err = l.ReadShared(bufB, b, name, 35, 20)
	if err != nil {
		t.Fatal(err)
	}
	if got, w := dump(a...), dump(want...); got != w {
		t.Fatalf("ReadShared:\n%s\nRead:\n%s", got, w)
	}
	if got, w := dump(b...), dump(want[5:25]...); got != w {
		t.Fatalf("ReadShared after 35:\n%s\nRead:\n%s", got, w)
	}
	for i := range b { // seqs 36–40 from bbolt, 41–55 from the tail, read by both
		if a[i+5] != b[i] {
			t.Fatalf("seq %d decoded twice", a[i+5].Seq)
		}
	}
	held := dump(a...)
	for round := 0; round < 3; round++ {
		if bufB, b, err = l.ReadShared(bufB, b, name, uint64(30+10*round), 50); err != nil {
			t.Fatal(err)
		}
		if bufB, err = l.ReadInto(bufB, name, uint64(20+10*round), 50); err != nil {
			t.Fatal(err)
		}
		if err := l.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := dump(a...); got != held {
		t.Fatalf("shared events changed:\n%s\nwas\n%s", got, held)
	}
}

// A shared read after retention trimmed a block does not return the events
// retention dropped, though a shared read before it cached the block.
func TestReadShared_AfterRetention(t *testing.T) {
	now := time.Unix(100000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	l := evqtest.MustOpenLog(t, &queue.Options{NowFunc: clock, MinAge: time.Hour, MaxAge: 10 * time.Hour, RetentionInterval: -1})
	sub := &evq.Subscription{Event: "E_K", Socket: "tcp:127.0.0.1:1"}
	if err := l.PutSubscription(sub, 0, true); err != nil {
		t.Fatal(err)
	}
	evs := make([]*evq.Event, 10)
	for i := range evs {
		evs[i] = ev("E_K")
	}
	if err := l.Append(context.Background(), evs...); err != nil {
		t.Fatal(err)
	}
	if err := l.Flush(context.Background()); err != nil { // one block of 10
		t.Fatal(err)
	}
	_, got, err := l.ReadShared(nil, nil, "E_K", 0, 100)
	if err != nil || len(got) != 10 {
		t.Fatalf("read %d events: %v", len(got), err)
	}
	l.SetCursor(sub.ID, 4)
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	if r, err := l.Retain(); err != nil || r.Deleted != 4 {
		t.Fatalf("deleted %d, %v; want 4", r.Deleted, err)
	}
	_, got, err = l.ReadShared(nil, nil, "E_K", 0, 100)
	if err != nil || len(got) != 6 || got[0].Seq != 5 {
		t.Fatalf("after retention: %d events from seq %d, %v; want 6 from 5", len(got), got[0].Seq, err)
	}
}

func dump(evs ...*evq.Event) string {
	var b []byte
	for _, e := range evs {
		b = fmt.Appendf(b, "%d %d %s %v %v\n", e.Seq, e.Time.UnixNano(), e.Name, e.Named, e.Params)
	}
	return string(b)
}

func dumpValues(evs []evq.Event) string {
	ptrs := make([]*evq.Event, len(evs))
	for i := range evs {
		ptrs[i] = &evs[i]
	}
	return dump(ptrs...)
}

// Events larger than a block, mixed with small ones of several names, come
// back intact from bbolt, read from any position.
func TestLog_LargeAndSmallEventsRoundTrip(t *testing.T) {
	l := evqtest.MustOpenLog(t, nil)
	ctx := context.Background()
	sizes := []int{10, 20000, 300, 60000, 5, 17000, 16380, 1}
	var raised []*evq.Event
	for round := 0; round < 3; round++ {
		var batch []*evq.Event
		for i, n := range sizes {
			name := []string{"E_A", "E_B"}[i%2]
			batch = append(batch, ev(name, evq.Param{Name: "x", Value: evq.String(strings.Repeat(string(rune('a'+i)), n))},
				evq.Param{Name: "r", Value: evq.Int(int64(round))}))
		}
		if err := l.Append(ctx, batch...); err != nil {
			t.Fatal(err)
		}
		raised = append(raised, batch...)
		if err := l.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"E_A", "E_B"} {
		var want []*evq.Event
		for _, e := range raised {
			if e.Name == name {
				want = append(want, e)
			}
		}
		for from := range want {
			got, err := l.Read(name, want[from].Seq-1, 100)
			if err != nil {
				t.Fatal(err)
			}
			if g, w := dump(got...), dump(want[from:]...); g != w {
				t.Fatalf("%s from seq %d: read\n%.300s\nwant\n%.300s", name, want[from].Seq, g, w)
			}
		}
	}
}

// Reads that start in bbolt and go on into the unapplied tail, and reads
// that start at or past bbolt's end (which skip bbolt), see every event
// once and in order.
func TestRead_AcrossTheAppliedBoundary(t *testing.T) {
	l := evqtest.MustOpenLog(t, nil)
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		if err := l.Append(ctx, evqtest.CDR(i), ev("E_OTHER")); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Flush(ctx); err != nil { // seqs 1-40 in bbolt
		t.Fatal(err)
	}
	for i := 20; i < 30; i++ { // seqs 41-60 in the tail (until the applier's next round)
		if err := l.Append(ctx, evqtest.CDR(i), ev("E_OTHER")); err != nil {
			t.Fatal(err)
		}
	}
	name := evqtest.CDR(0).Name
	for _, after := range []uint64{0, 37, 38, 39, 40, 41, 42, 58, 59, 60} {
		got, err := l.Read(name, after, 100)
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		for seq := after + 1; seq <= 60; seq++ {
			if seq%2 == 1 { // the CDRs have the odd seqs
				if want >= len(got) || got[want].Seq != seq || got[want].Params[3].Value.Str != evqtest.CDR(int(seq / 2)).Params[3].Value.Str {
					t.Fatalf("after %d: event %d is %v, want seq %d", after, want, dump(got...), seq)
				}
				want++
			}
		}
		if len(got) != want {
			t.Fatalf("after %d: %d events, want %d", after, len(got), want)
		}
	}
}
