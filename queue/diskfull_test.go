package queue_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/evq/evq"
	"github.com/evq/evq/internal/evqtest"
	"github.com/evq/evq/queue"
)

func TestLog_DiskFull(t *testing.T) {
	path := filepath.Join(t.TempDir(), "evq.db")
	l, err := queue.Open(path, &queue.Options{RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	big := func() *evq.Event {
		return &evq.Event{Name: "E_F", Named: true, Params: []evq.Param{{Name: "p", Value: evq.String(string(make([]byte, 8000)))}}}
	}
	var stored int
	for ; stored < 10; stored++ {
		if err := l.Append(ctx, big()); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	restore := evqtest.LimitFileSize(t, uint64(fi.Size())) // the file cannot grow: the disk is full
	var full error
	for i := 0; i < 5000 && full == nil; i++ {
		full = l.Append(ctx, big())
		if full == nil {
			stored++
		}
	}
	if !errors.Is(full, queue.ErrStorageFull) {
		restore()
		t.Fatalf("append on a full disk: %v, want ErrStorageFull", full)
	}
	t.Logf("full after %d events: %v", stored, full)

	// Restarted while the disk is still full: the events bbolt had no room
	// for are in the WAL; Open keeps them there and serves them.
	if err := l.Close(); err != nil {
		t.Logf("close on a full disk: %v", err)
	}
	l, err = queue.Open(path, &queue.Options{RetentionInterval: -1})
	if err != nil {
		restore()
		t.Fatalf("open on a full disk: %v", err)
	}
	if evs, err := l.Read("E_F", 0, 100000); err != nil || len(evs) != stored {
		restore()
		t.Fatalf("read %d events reopened on a full disk, want %d (%v)", len(evs), stored, err)
	}
	restore()

	// Space is back: appends work again, and nothing stored was lost.
	if err := l.Append(ctx, big()); err != nil {
		t.Fatalf("append after space returned: %v", err)
	}
	stored++
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err = queue.Open(path, &queue.Options{RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	evs, err := l.Read("E_F", 0, 100000)
	if err != nil || len(evs) != stored {
		t.Fatalf("read %d events after reopen, want %d (%v)", len(evs), stored, err)
	}
	if r, err := l.Check(); err != nil {
		t.Fatalf("check: %v %v", err, r.Problems)
	}
}
