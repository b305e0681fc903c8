package evqtest

import (
	"context"
	"testing"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/queue"
)

// LogRaiser stores events straight into a log, for listener tests that need
// no delivery engine.
type LogRaiser struct{ Log *queue.Log }

// RaiseBatch implements evq.Raiser.
func (r LogRaiser) RaiseBatch(ctx context.Context, evs []*evq.Event) error {
	return r.Log.Append(ctx, evs...)
}

// WaitStored waits until at least n events named name are in l and returns
// them all.
func WaitStored(tb testing.TB, l *queue.Log, name string, n int) []*evq.Event {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs, _ := l.Read(name, 0, 1<<20)
		if len(evs) >= n {
			return evs
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d %s events stored, want %d", len(evs), name, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
