package queue

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/evq/evq"
)

func walEvent(name string, i int64) *evq.Event {
	return &evq.Event{Name: name, Named: true, Params: []evq.Param{{Name: "i", Value: evq.Int(i)}}}
}

// batchOf encodes events as the committer would, seqs from first on.
func batchOf(first uint64, evs ...*evq.Event) *walBatch {
	b := &walBatch{first: first, last: first + uint64(len(evs)) - 1}
	for i, ev := range evs {
		enc := encodeEvent(nil, ev)
		putHeader(enc, time.Now().UnixNano(), first+uint64(i)) // ordinals: unique per name is enough here
		b.names = append(b.names, ev.Name)
		b.enc = append(b.enc, enc)
		b.bytes += uint64(len(enc))
	}
	return b
}

// TestWAL_Replay leaves events in the WAL that bbolt lacks, as a process
// killed between the WAL's fdatasync and the applier's commit does, plus a
// torn record after them, and checks that Open replays exactly the intact
// records and removes the WAL.
func TestWAL_Replay(t *testing.T) {
	path := filepath.Join(t.TempDir(), "evq.db")
	l, err := Open(path, &Options{RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(context.Background(), walEvent("E_W", 1), walEvent("E_W", 2)); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	w, err := openWAL(walDir(path), false, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.write(batchOf(3, walEvent("E_W", 3), walEvent("E_X", 4))); err != nil {
		t.Fatal(err)
	}
	if err := w.write(batchOf(5, walEvent("E_W", 5))); err != nil {
		t.Fatal(err)
	}
	torn := []byte{0, 0, 1, 0, 9, 9, 9, 9, 1, 2, 3} // claims 256 bytes, has 3
	if _, err := w.f.WriteAt(torn, w.off); err != nil {
		t.Fatal(err)
	}
	w.close()
	r, err := CheckFile(path)
	if err != nil || r.WALEvents != 3 || r.LastSeq != 2 {
		t.Fatalf("check before replay: %d WAL events after seq %d, %v; want 3 after 2", r.WALEvents, r.LastSeq, err)
	}

	l, err = Open(path, &Options{RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := l.LastSeq(); got != 5 {
		t.Fatalf("last seq after replay %d, want 5", got)
	}
	evs, err := l.Read("E_W", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, ev := range evs {
		seqs = append(seqs, ev.Seq)
	}
	if len(seqs) != 4 || seqs[0] != 1 || seqs[2] != 3 || seqs[3] != 5 {
		t.Fatalf("E_W seqs after replay %v, want [1 2 3 5]", seqs)
	}
	if evs[3].Params[0].Value.Int != 5 {
		t.Fatalf("replayed event %+v", evs[3])
	}
	// The next raise continues after the replayed seqs.
	ev := walEvent("E_X", 6)
	if err := l.Append(context.Background(), ev); err != nil || ev.Seq != 6 {
		t.Fatalf("append after replay: seq %d, %v", ev.Seq, err)
	}
	if r, err := l.Check(); err != nil {
		t.Fatalf("check: %v %v", err, r.Problems)
	}
	segs, _ := listSegments(walDir(path))
	if len(segs) != 1 || !strings.HasSuffix(segs[0], "0000000000000006.wal") {
		t.Fatalf("segments after replay %v, want only the new one from seq 6", segs)
	}
}

// TestWAL_Gap refuses a WAL that does not continue the store: events would
// be missing.
func TestWAL_Gap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "evq.db")
	l, err := Open(path, &Options{RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	w, err := openWAL(walDir(path), false, 7)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.write(batchOf(7, walEvent("E_W", 7))); err != nil {
		t.Fatal(err)
	}
	w.close()
	_, err = Open(path, nil)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "resumes at seq 7 but the store ends at 0") {
		t.Fatalf("open with a gap: %v", err)
	}
}

// TestWAL_RewriteAfterFailure: a record whose seqs were never acknowledged
// (its write failed) is superseded by the next record with those seqs, even
// when the failed one reached the disk.
func TestWAL_RewriteAfterFailure(t *testing.T) {
	dir := t.TempDir()
	w, err := openWAL(dir, true, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.write(batchOf(1, walEvent("E_W", 1))); err != nil {
		t.Fatal(err)
	}
	if err := w.write(batchOf(2, walEvent("E_LOST", 2), walEvent("E_LOST", 3))); err != nil {
		t.Fatal(err)
	}
	w.broken = true // as if truncating the failed record had failed
	if err := w.write(batchOf(2, walEvent("E_W", 2))); err != nil {
		t.Fatal(err)
	}
	w.close()
	bs, paths, err := readWAL(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 2 || len(bs) != 2 || bs[1].first != 2 || bs[1].last != 2 || bs[1].names[0] != "E_W" {
		t.Fatalf("records %d in %d segments: %+v", len(bs), len(paths), bs)
	}
}

// TestWAL_SegmentsDropped: once bbolt has an old segment's events, the
// committer deletes it.
func TestWAL_SegmentsDropped(t *testing.T) {
	dir := t.TempDir()
	w, err := openWAL(dir, true, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	w.write(batchOf(1, walEvent("E_W", 1)))
	w.off = walSegmentSize // full: the next write starts a segment
	w.write(batchOf(2, walEvent("E_W", 2)))
	if n := w.drop(0); n != 0 {
		t.Fatalf("dropped %d segments with nothing applied", n)
	}
	if n := w.drop(1); n != 1 {
		t.Fatalf("dropped %d segments once seq 1 is applied, want 1", n)
	}
	if n := w.drop(2); n != 0 {
		t.Fatal("dropped the segment being written")
	}
	if _, err := os.Stat(segmentPath(dir, 1)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("old segment still there: %v", err)
	}
}

// TestWAL_RecycledSegment: a spare reused as a new segment still holds the
// records of its earlier life past the new ones; a reader must stop at them.
func TestWAL_RecycledSegment(t *testing.T) {
	dir := t.TempDir()
	w, err := openWAL(dir, true, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	for seq := uint64(1); seq <= 3; seq++ {
		if err := w.write(batchOf(seq, walEvent("E_OLD", int64(seq)))); err != nil {
			t.Fatal(err)
		}
	}
	w.f.Truncate(walSegmentSize) // full, as the committer leaves a segment
	w.off = walSegmentSize
	w.write(batchOf(4, walEvent("E_W", 4)))
	if n := w.drop(3); n != 1 || len(w.spares) != 1 {
		t.Fatalf("retired %d segments, %d spares; want 1 and 1", n, len(w.spares))
	}
	w.off = walSegmentSize
	if err := w.write(batchOf(5, walEvent("E_W", 5))); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(segmentPath(dir, 5))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() <= w.off {
		t.Fatalf("segment 5 is %d bytes, its record %d: the spare was not reused", fi.Size(), w.off)
	}
	bs, _, err := readWAL(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 2 || bs[0].first != 4 || bs[1].first != 5 {
		var firsts []uint64
		for _, b := range bs {
			firsts = append(firsts, b.first)
		}
		t.Fatalf("records from seqs %v, want [4 5]", firsts)
	}
}

// TestWAL_PreparedSpare: a store in use moves off its growing first segment
// onto a zero-filled spare made in the background, and nothing written is
// lost on the way.
func TestWAL_PreparedSpare(t *testing.T) {
	dir := t.TempDir()
	w, err := openWAL(dir, false, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	if !w.growing {
		t.Fatal("a new store's first segment is not growing")
	}
	seq := uint64(1)
	deadline := time.Now().Add(10 * time.Second)
	for w.growing {
		if time.Now().After(deadline) {
			t.Fatalf("still on the growing segment after %d records", seq-1)
		}
		if err := w.write(batchOf(seq, walEvent("E_W", int64(seq)))); err != nil {
			t.Fatal(err)
		}
		seq++
		if seq > prepareAfter {
			time.Sleep(time.Millisecond) // let the spare be written
		}
	}
	if seq <= prepareAfter {
		t.Fatalf("moved after %d records, before %d", seq-1, prepareAfter)
	}
	fi, err := w.f.Stat()
	if err != nil || fi.Size() < walSegmentSize {
		t.Fatalf("current segment is %d bytes (%v), want a full-size spare", fi.Size(), err)
	}
	bs, segs, err := readWAL(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) != 2 || len(bs) != int(seq-1) || bs[len(bs)-1].last != seq-1 {
		t.Fatalf("%d records in %d segments, want %d in 2", len(bs), len(segs), seq-1)
	}
}
