package evqtest

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/queue"
)

// CDR returns an accounting event like OpenSIPS's E_ACC_CDR, about 256
// bytes encoded: the event the benchmarks use throughout.
func CDR(i int) *evq.Event {
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

// ReportRate reports n events over d as events/s.
func ReportRate(b *testing.B, n int, d time.Duration) {
	b.ReportMetric(float64(n)/d.Seconds(), "events/s")
}

// ReportLatency reports the p50 and p99 of the latencies gathered per
// goroutine, in milliseconds, as PREFIXp50-ms and PREFIXp99-ms.
func ReportLatency(b *testing.B, per [][]time.Duration, prefix string) {
	var all []time.Duration
	for _, l := range per {
		all = append(all, l...)
	}
	if len(all) == 0 {
		return
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, prefix+"p50-ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, prefix+"p99-ms")
}

// RunRaisers makes b.N raises from n goroutines, each raising its own
// reused event (a raiser has one raise in flight), and returns the elapsed
// time and each goroutine's raise latencies. It resets the timer first.
func RunRaisers(b *testing.B, n int, raise func(*evq.Event) error) (time.Duration, [][]time.Duration) {
	var next atomic.Int64
	lat := make([][]time.Duration, n)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for r := 0; r < n; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			ev := CDR(r)
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if err := raise(ev); err != nil {
					b.Error(err)
					return
				}
				lat[r] = append(lat[r], time.Since(t0))
			}
		}(r)
	}
	wg.Wait()
	return time.Since(start), lat
}

// ReportCommits reports the average events per group commit (WAL record)
// and its time, fdatasync included, and how many bbolt transactions per
// second the applier ran over d.
func ReportCommits(b *testing.B, st *queue.Stats, d time.Duration) {
	commits := st.Commits.Load()
	if commits == 0 {
		return
	}
	b.ReportMetric(float64(st.CommitEvents.Load())/float64(commits), "events/commit")
	b.ReportMetric(float64(st.CommitNanos.Load())/float64(commits)/1e6, "commit-ms")
	b.ReportMetric(float64(st.WALNanos.Load())/float64(commits)/1e6, "wal-ms")
	b.ReportMetric(float64(st.Applies.Load())/d.Seconds(), "applies/s")
}

// RunBatchRaisers makes b.N raises in batches of size from n goroutines,
// each reusing its own batch of CDR events, and returns the elapsed time.
// It resets the timer first.
func RunBatchRaisers(b *testing.B, n, size int, raise func([]*evq.Event) error) time.Duration {
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for r := 0; r < n; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			batch := make([]*evq.Event, size)
			for i := range batch {
				batch[i] = CDR(i)
			}
			for {
				from := next.Add(int64(size)) - int64(size)
				if from >= int64(b.N) {
					return
				}
				if err := raise(batch[:min(int64(size), int64(b.N)-from)]); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}
