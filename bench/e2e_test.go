package bench

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/delivery"
	"github.com/evq/evq/internal/evqtest"
	"github.com/evq/evq/transports"
)

// cdr is an accounting event of about 256 bytes encoded.
func cdr(i int) *evq.Event {
	return &evq.Event{Name: "E_ACC_CDR", Named: true, Params: []evq.Param{
		{Name: "method", Value: evq.String("INVITE")},
		{Name: "from_tag", Value: evq.String("a7f3c2e1d9b8")},
		{Name: "to_tag", Value: evq.String("9b8d7c6e5f4a")},
		{Name: "callid", Value: evq.String(fmt.Sprintf("%032d@sip.example.com", i))},
		{Name: "sip_code", Value: evq.String("200")},
		{Name: "sip_reason", Value: evq.String("OK")},
		{Name: "time", Value: evq.Int(1763900000 + int64(i))},
		{Name: "duration", Value: evq.Int(int64(i % 3600))},
		{Name: "setuptime", Value: evq.Int(2)},
		{Name: "created", Value: evq.Int(1763900000)},
		{Name: "caller", Value: evq.String("sip:alice@example.com")},
		{Name: "callee", Value: evq.String("sip:bob@example.com")},
	}}
}

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
			r, err := newAckReceiver()
			if err != nil {
				b.Fatal(err)
			}
			defer r.close()
			r.target.Store(int64(b.N))
			_, err = e.Subscribe(context.Background(), delivery.SubscribeRequest{Event: "E_ACC_CDR", Socket: r.socket(),
				Options: evq.Options{Reliable: true, MaxInflight: tc.window}})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(256)
			b.ReportAllocs()
			var next atomic.Int64
			lat := make([][]time.Duration, tc.raisers)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for k := 0; k < tc.raisers; k++ {
				wg.Add(1)
				go func(k int) {
					defer wg.Done()
					ev := cdr(k) // reused: a raiser has one raise in flight
					for {
						i := int(next.Add(1))
						if i > b.N {
							return
						}
						t0 := time.Now()
						if err := e.Raise(context.Background(), ev); err != nil {
							b.Error(err)
							return
						}
						lat[k] = append(lat[k], time.Since(t0))
					}
				}(k)
			}
			wg.Wait()
			raised := time.Since(start)
			select {
			case <-r.notify:
			case <-time.After(time.Minute):
				b.Fatalf("receiver got %d of %d", r.received.Load(), b.N)
			}
			d := time.Since(start)
			b.ReportMetric(float64(b.N)/d.Seconds(), "events/s")
			b.ReportMetric(float64(b.N)/raised.Seconds(), "raised/s")
			reportLatency(b, lat, "raise")
			st := l.Stats()
			b.ReportMetric(float64(st.CommitEvents.Load())/float64(st.Commits.Load()), "events/commit")
			b.ReportMetric(float64(st.CommitNanos.Load())/float64(st.Commits.Load())/1e6, "commit-ms")
		})
	}
}

func reportLatency(b *testing.B, per [][]time.Duration, what string) {
	var all []time.Duration
	for _, l := range per {
		all = append(all, l...)
	}
	if len(all) == 0 {
		return
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, what+"-p50-ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, what+"-p99-ms")
}
