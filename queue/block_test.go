package queue

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evq/evq"
	bolt "go.etcd.io/bbolt"
)

// TestBlocks_MixedWithSingleEventValues stores events in blocks, turns the
// first block back into one value per event (as stores written before
// blocks hold them), and checks that reads, counts, lag, time lookups and
// retention see the same events either way, and that retention can cut a
// block in the middle.
func TestBlocks_MixedWithSingleEventValues(t *testing.T) {
	now := time.Unix(5000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	path := filepath.Join(t.TempDir(), "evq.db")
	l, err := Open(path, &Options{RetentionInterval: -1, NowFunc: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	// 30 E_M events, one a second, with E_N events in between.
	for round := 0; round < 3; round++ {
		for i := 0; i < 10; i++ {
			mu.Lock()
			now = now.Add(time.Second)
			mu.Unlock()
			p := evq.Param{Name: "i", Value: evq.Int(int64(10*round + i))}
			if err := l.Append(ctx, &evq.Event{Name: "E_M", Named: true, Params: []evq.Param{p}}, &evq.Event{Name: "E_N"}); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Lay E_M out as an older store and this one would have it, whatever
	// rounds the applier happened to run: its first 10 events as values of
	// their own, then two blocks of 10.
	var blocks, singles int
	err = l.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents).Bucket([]byte("E_M"))
		type stored struct {
			seq uint64
			enc []byte
		}
		var evs []stored
		ec := newEventCursor(b)
		for ok := ec.First(); ok; ok = ec.Next() {
			evs = append(evs, stored{ec.Seq, append([]byte(nil), ec.Enc...)})
		}
		if ec.Err != nil || len(evs) != 30 {
			return fmt.Errorf("%d events stored, %v", len(evs), ec.Err)
		}
		var keys [][]byte
		if err := b.ForEach(func(k, _ []byte) error { keys = append(keys, append([]byte(nil), k...)); return nil }); err != nil {
			return err
		}
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		for _, e := range evs[:10] {
			if err := b.Put(seqKey(e.seq), e.enc); err != nil {
				return err
			}
		}
		for start := 10; start < 30; start += 10 {
			blk, prev := []byte{blockVersion}, uint64(0)
			for _, e := range evs[start : start+10] {
				blk, prev = appendBlockEvent(blk, prev, e.seq, e.enc), e.seq
			}
			if err := b.Put(seqKey(prev), blk); err != nil {
				return err
			}
		}
		return b.ForEach(func(k, v []byte) error {
			if v[0] == blockVersion {
				blocks++
			} else {
				singles++
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if singles != 10 || blocks != 2 {
		t.Fatalf("%d single-event values and %d blocks; want 10 and 2", singles, blocks)
	}
	check := func() {
		t.Helper()
		if r, err := l.Check(); err != nil {
			t.Fatalf("check: %v %v", err, r.Problems)
		}
	}
	check()

	// The cursor says where in its value each event lies, and counts the
	// values it moves to: 10 single-event values, then 2 blocks.
	err = l.db.View(func(tx *bolt.Tx) error {
		ec := newEventCursor(tx.Bucket(bucketEvents).Bucket([]byte("E_M")))
		n, vals := 0, map[int]int{}
		for ok := ec.First(); ok; ok = ec.Next() {
			if ec.Off+len(ec.Enc) > len(ec.Val) || &ec.Val[ec.Off] != &ec.Enc[0] {
				return fmt.Errorf("seq %d: Enc is not Val[%d:%d]", ec.Seq, ec.Off, ec.Off+len(ec.Enc))
			}
			vals[ec.Vals]++
			n++
		}
		if ec.Err != nil || n != 30 || len(vals) != 12 {
			return fmt.Errorf("%d events in %d values (%v)", n, len(vals), ec.Err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// E_M's events have seqs 1, 3, 5, … 59.
	all, err := l.Read("E_M", 0, 100)
	if err != nil || len(all) != 30 {
		t.Fatalf("read %d, %v", len(all), err)
	}
	for k, e := range all {
		if e.Seq != uint64(2*k+1) || e.Params[0].Value.Int != int64(k) {
			t.Fatalf("event %d: seq %d param %v", k, e.Seq, e.Params[0].Value)
		}
	}
	for _, after := range []uint64{0, 8, 19, 20, 21, 22, 40, 58, 59} {
		got, err := l.Read("E_M", after, 3)
		want := min(3, max(0, 30-int(after+1)/2))
		if err != nil || len(got) != want || want > 0 && got[0].Seq != after+1+after%2 {
			t.Fatalf("read after %d: %d events, %v", after, len(got), err)
		}
	}
	names, err := l.Names()
	if err != nil || len(names) != 2 || names[0] != (NameStats{Name: "E_M", Count: 30, FirstSeq: 1, LastSeq: 59}) {
		t.Fatalf("names %+v, %v", names, err)
	}
	for _, tt := range []struct{ cursor, want uint64 }{{0, 30}, {7, 26}, {19, 20}, {21, 19}, {59, 0}} {
		if lag, err := l.Lag("E_M", tt.cursor); err != nil || lag != tt.want {
			t.Errorf("lag from %d = %d, %v; want %d", tt.cursor, lag, err, tt.want)
		}
	}
	// Event k was raised at 5001+k: the last seq before 5001+k is that of
	// event k-1.
	for _, k := range []int64{0, 1, 9, 10, 11, 20, 29, 30} {
		want := uint64(0)
		if k > 0 {
			want = uint64(2*(k-1) + 1)
		}
		if got, err := l.SeqBefore("E_M", time.Unix(5001+k, 0)); err != nil || got != want {
			t.Errorf("SeqBefore(event %d) = %d, %v; want %d", k, got, err, want)
		}
	}

	// Retention by size: the oldest go first, across single-event values
	// and into the middle of a block.
	// Delete exactly seqs 1-25: E_M's single-event values (1-19), then
	// 21, 23 and 25 from the middle of its second block.
	size := make(map[uint64]uint64)
	for _, name := range []string{"E_M", "E_N"} {
		evs, _ := l.Read(name, 0, 100)
		for _, e := range evs {
			size[e.Seq] = uint64(encodedSize(e))
		}
	}
	stored, _ := l.StoredBytes()
	var first25 uint64
	for seq := uint64(1); seq <= 25; seq++ {
		first25 += size[seq]
	}
	l.opts.MaxBytes = int64(stored - first25)
	r, err := l.Retain()
	if err != nil || r.Deleted != 25 {
		t.Fatalf("retain: deleted %d, %v; want 25", r.Deleted, err)
	}
	check()
	left, _ := l.Read("E_M", 0, 100)
	if len(left) != 17 || left[0].Seq != 27 || left[16].Seq != 59 {
		t.Fatalf("%d E_M events left, seqs %d to %d", len(left), left[0].Seq, left[len(left)-1].Seq)
	}
	if names, _ := l.Names(); names[0].Count != 17 || names[0].FirstSeq != 27 {
		t.Fatalf("names after retention %+v", names[0])
	}
	if lag, _ := l.Lag("E_M", 0); lag != 17 {
		t.Fatalf("lag %d after retention", lag)
	}
}

// TestBlocks_DamageIsReported: a block cut short, or one whose events do not
// end at its key, is reported by Check and refused by reads.
func TestBlocks_DamageIsReported(t *testing.T) {
	for _, tt := range []struct {
		name string
		blk  func(enc []byte) []byte
		want string
	}{
		{"cut short", func(enc []byte) []byte { return appendBlockEvent([]byte{blockVersion}, 0, 5, enc)[:len(enc)] }, "event cut short"},
		{"wrong key", func(enc []byte) []byte { return appendBlockEvent([]byte{blockVersion}, 0, 4, enc) }, "block 5 holds seq 4"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l, err := Open(filepath.Join(t.TempDir(), "evq.db"), &Options{RetentionInterval: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			for i := 0; i < 5; i++ {
				if err := l.Append(context.Background(), &evq.Event{Name: "E_D"}); err != nil {
					t.Fatal(err)
				}
			}
			if err := l.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			err = l.db.Update(func(tx *bolt.Tx) error {
				b := tx.Bucket(bucketEvents).Bucket([]byte("E_D"))
				return b.Put(seqKey(5), tt.blk(encodeEvent(nil, &evq.Event{Name: "E_D"})))
			})
			if err != nil {
				t.Fatal(err)
			}
			r, err := l.Check()
			if err == nil || len(r.Problems) == 0 || !strings.Contains(strings.Join(r.Problems, "\n"), tt.want) {
				t.Fatalf("check: %v %v; want a problem mentioning %q", err, r.Problems, tt.want)
			}
			if _, err := l.Read("E_D", 0, 10); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("read: %v", err)
			}
		})
	}
}

// A block taken from the arena cannot grow into the next one's bytes, and
// the arena hands out heap memory once it is used up.
func TestBlockArena(t *testing.T) {
	var a blockArena
	a.reset(10)
	x, y := a.take(4), a.take(4)
	y = append(y, "yyyy"...)
	x = append(x, "xxxxxxxx"...) // past its room: moves, y stays
	if string(y) != "yyyy" || string(x) != "xxxxxxxx" {
		t.Fatalf("x %q y %q", x, y)
	}
	z := a.take(4) // 2 bytes left: from the heap
	z = append(z, "zzzz"...)
	if string(y) != "yyyy" || cap(a.buf) != 10 {
		t.Fatalf("y %q, arena of %d", y, cap(a.buf))
	}
	a.reset(5)
	if len(a.buf) != 0 || cap(a.buf) != 10 {
		t.Fatalf("reset to %d/%d, want the same array emptied", len(a.buf), cap(a.buf))
	}
	a.reset(64 << 20)
	a.reset(1 << 20)
	if cap(a.buf) != 1<<20 {
		t.Fatalf("after a 64 MiB round and a 1 MiB one the arena holds %d bytes", cap(a.buf))
	}
}
