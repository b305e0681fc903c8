package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/bench/load"
	"github.com/evq/evq/delivery"
	"github.com/evq/evq/internal/evqtest"
	"github.com/evq/evq/transports"
)

// BenchmarkEndToEnd_Reliable raises events from concurrent raisers through
// the engine and waits until a reliable tcp subscriber has acknowledged all
// of them: durably stored, delivered and acked.
func BenchmarkEndToEnd_Reliable(b *testing.B) {
	for _, tc := range []struct{ raisers, window int }{{256, 1}, {256, 64}, {256, 256}, {1024, 256}} {
		b.Run(fmt.Sprintf("raisers=%d/window=%d", tc.raisers, tc.window), func(b *testing.B) {
			l := evqtest.MustOpenLog(b, nil)
			e := delivery.New(l, &delivery.Options{NewTransportFunc: transports.New})
			if err := e.Start(); err != nil {
				b.Fatal(err)
			}
			defer e.Close(context.Background())
			r, all := receiveN(b, int64(b.N))
			defer r.Close()
			_, err := e.Subscribe(context.Background(), delivery.SubscribeRequest{Event: "E_ACC_CDR", Socket: r.Socket(),
				Options: evq.Options{Reliable: true, MaxInflight: tc.window}})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(256)
			b.ReportAllocs()
			raised, lat := evqtest.RunRaisers(b, tc.raisers, func(ev *evq.Event) error { return e.Raise(context.Background(), ev) })
			start := time.Now().Add(-raised)
			select {
			case <-all:
			case <-time.After(time.Minute):
				b.Fatalf("receiver got %d of %d", r.Received(), b.N)
			}
			d := time.Since(start)
			b.ReportMetric(float64(b.N)/d.Seconds(), "events/s")
			b.ReportMetric(float64(b.N)/raised.Seconds(), "raised/s")
			evqtest.ReportLatency(b, lat, "raise-")
			st := l.Stats()
			evqtest.ReportCommits(b, st.Commits.Load(), st.CommitEvents.Load(), st.CommitNanos.Load())
		})
	}
}

// receiveN starts a receiver whose channel is closed when it has read n
// events.
func receiveN(b *testing.B, n int64) (*load.AckReceiver, <-chan struct{}) {
	all := make(chan struct{})
	var got atomic.Int64
	r, err := load.NewAckReceiver(func([]byte) {
		if got.Add(1) == n {
			close(all)
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	return r, all
}
