package queue_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/internal/evqtest"
)

// cdr is a 256-byte-ish event, the size the benchmarks use throughout.
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

// BenchmarkLog_Append measures durable (fsynced) appends from concurrent
// raisers, each waiting for its own acknowledgement.
func BenchmarkLog_Append(b *testing.B) {
	for _, raisers := range []int{1, 64, 256, 1024} {
		b.Run(fmt.Sprintf("raisers=%d", raisers), func(b *testing.B) {
			l := evqtest.MustOpenLog(b, nil)
			b.ReportAllocs()
			var next atomic.Int64
			lat := make([][]time.Duration, raisers)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for r := 0; r < raisers; r++ {
				wg.Add(1)
				go func(r int) {
					defer wg.Done()
					ev := cdr(r) // reused: a raiser has one append in flight
					for {
						i := int(next.Add(1))
						if i > b.N {
							return
						}
						t0 := time.Now()
						if err := l.Append(context.Background(), ev); err != nil {
							b.Error(err)
							return
						}
						lat[r] = append(lat[r], time.Since(t0))
					}
				}(r)
			}
			wg.Wait()
			reportRate(b, b.N, time.Since(start))
			reportLatency(b, lat)
			st := l.Stats()
			b.ReportMetric(float64(st.CommitEvents.Load())/float64(st.Commits.Load()), "events/commit")
			b.ReportMetric(float64(st.CommitNanos.Load())/float64(st.Commits.Load())/1e6, "commit-ms")
		})
	}
	b.Run("batch=1000", func(b *testing.B) {
		// Four raisers with 1000 events per call, as an ingest path that
		// has many events at hand would use RaiseBatch.
		l := evqtest.MustOpenLog(b, nil)
		b.ReportAllocs()
		var next atomic.Int64
		b.ResetTimer()
		start := time.Now()
		var wg sync.WaitGroup
		for r := 0; r < 4; r++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				evs := make([]*evq.Event, 1000)
				for i := range evs {
					evs[i] = cdr(i)
				}
				for {
					end := int(next.Add(1000))
					n := min(1000, b.N-(end-1000))
					if n <= 0 {
						return
					}
					if err := l.Append(context.Background(), evs[:n]...); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		reportRate(b, b.N, time.Since(start))
	})
}

// BenchmarkLog_Read measures a replay scan from disk.
func BenchmarkLog_Read(b *testing.B) {
	l := evqtest.MustOpenLog(b, nil)
	const stored = 100000
	for done := 0; done < stored; done += 1000 {
		evs := make([]*evq.Event, 1000)
		for i := range evs {
			evs[i] = cdr(done + i)
		}
		if err := l.Append(context.Background(), evs...); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var cursor uint64
	for read := 0; read < b.N; {
		evs, err := l.Read("E_ACC_CDR", cursor, 1000)
		if err != nil {
			b.Fatal(err)
		}
		if len(evs) == 0 {
			cursor = 0
			continue
		}
		cursor = evs[len(evs)-1].Seq
		read += len(evs)
	}
	reportRate(b, b.N, time.Since(start))
}

func reportRate(b *testing.B, n int, d time.Duration) {
	b.ReportMetric(float64(n)/d.Seconds(), "events/s")
}

func reportLatency(b *testing.B, per [][]time.Duration) {
	var all []time.Duration
	for _, l := range per {
		all = append(all, l...)
	}
	if len(all) == 0 {
		return
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
}
