// Package evqtest holds test helpers shared by evq's packages: a log in a
// temporary directory that checks its own invariants, and real loopback
// receivers that speak the OpenSIPS wire formats.
package evqtest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/evq/evq/queue"
)

// StoreDir returns a new directory for a store, removed at cleanup: under
// $EVQ_STORE_DIR if set (such as /dev/shm, where fsync costs nothing, to
// tell the disk's share of a benchmark from the code's), else tb.TempDir().
func StoreDir(tb testing.TB) string {
	tb.Helper()
	root := os.Getenv("EVQ_STORE_DIR")
	if root == "" {
		return tb.TempDir()
	}
	dir, err := os.MkdirTemp(root, "evq-test-")
	if err != nil {
		tb.Fatalf("EVQ_STORE_DIR=%s: %v", root, err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// MustOpenLog opens a log in StoreDir(tb). At cleanup it closes the log and
// fails the test if the store's invariants do not hold.
func MustOpenLog(tb testing.TB, opts *queue.Options) *queue.Log {
	tb.Helper()
	if opts == nil {
		opts = &queue.Options{}
	}
	if opts.RetentionInterval == 0 {
		opts.RetentionInterval = -1 // tests call Retain themselves
	}
	path := filepath.Join(StoreDir(tb), "evq.db")
	l, err := queue.Open(path, opts)
	if err != nil {
		tb.Fatalf("open log: %v", err)
	}
	tb.Cleanup(func() {
		if err := l.Close(); err != nil {
			tb.Errorf("close log: %v", err)
		}
		if r, err := queue.CheckFile(path); err != nil {
			tb.Errorf("store check after test: %v %v", err, r.Problems)
		}
	})
	return l
}
