// Package evqtest holds test helpers shared by evq's packages: a log in a
// temporary directory that checks its own invariants, and real loopback
// receivers that speak the OpenSIPS wire formats.
package evqtest

import (
	"path/filepath"
	"testing"

	"github.com/evq/evq/queue"
)

// MustOpenLog opens a log in tb.TempDir(). At cleanup it closes the log and
// fails the test if the store's invariants do not hold.
func MustOpenLog(tb testing.TB, opts *queue.Options) *queue.Log {
	tb.Helper()
	if opts == nil {
		opts = &queue.Options{}
	}
	if opts.RetentionInterval == 0 {
		opts.RetentionInterval = -1 // tests call Retain themselves
	}
	path := filepath.Join(tb.TempDir(), "evq.db")
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
