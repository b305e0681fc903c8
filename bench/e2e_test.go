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
			clock := newDeliveryClock(b.N)
			r, all := receiveN(b, int64(b.N), clock.arrive)
			defer r.Close()
			subscribeAll(b, e, []*load.AckReceiver{r}, tc.window)
			b.SetBytes(256)
			b.ReportAllocs()
			raised, lat := evqtest.RunRaisers(b, tc.raisers, func(ev *evq.Event) error {
				t0 := time.Now()
				err := e.Raise(context.Background(), ev)
				clock.raised(t0, ev)
				return err
			})
			start := time.Now().Add(-raised)
			waitAll(b, all, r)
			d := time.Since(start)
			b.ReportMetric(float64(b.N)/d.Seconds(), "events/s")
			b.ReportMetric(float64(b.N)/raised.Seconds(), "raised/s")
			evqtest.ReportLatency(b, lat, "raise-")
			clock.report(b)
			st := l.Stats()
			evqtest.ReportCommits(b, st, d)
		})
	}
}

// receiveN starts a receiver whose channel is closed when it has read n
// events; each object goes to onObject first.
func receiveN(b *testing.B, n int64, onObject func([]byte)) (*load.AckReceiver, <-chan struct{}) {
	all := make(chan struct{})
	var got atomic.Int64
	r, err := load.NewAckReceiver(func(obj []byte) {
		onObject(obj)
		if got.Add(1) == n {
			close(all)
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	return r, all
}

// BenchmarkEndToEnd_Batch raises through the batch API (4 goroutines, 1000
// events per call) to a reliable tcp subscriber with window 256.
func BenchmarkEndToEnd_Batch(b *testing.B) {
	l := evqtest.MustOpenLog(b, nil)
	e := evqtest.StartEngine(b, l, &delivery.Options{})
	clock := newDeliveryClock(b.N)
	r, all := receiveN(b, int64(b.N), clock.arrive)
	defer r.Close()
	subscribeAll(b, e, []*load.AckReceiver{r}, 256)
	b.SetBytes(256)
	raised := evqtest.RunBatchRaisers(b, 4, 1000, func(evs []*evq.Event) error {
		t0 := time.Now()
		err := e.RaiseBatch(context.Background(), evs)
		clock.raised(t0, evs...)
		return err
	})
	start := time.Now().Add(-raised)
	waitAll(b, all, r)
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	b.ReportMetric(float64(b.N)/raised.Seconds(), "raised/s")
	clock.report(b)
}

// deliveryClock times raise → delivered for each event of a fresh log,
// whose seqs run from 1 to n: raisers note when each seq's raise began, the
// receiver when the seq (the request id) first arrived.
type deliveryClock struct {
	start, arrival []int64 // unix nanoseconds by seq
}

func newDeliveryClock(n int) *deliveryClock {
	return &deliveryClock{start: make([]int64, n+1), arrival: make([]int64, n+1)}
}

// raised notes t0 as the start of the raise of evs, which it returned.
func (c *deliveryClock) raised(t0 time.Time, evs ...*evq.Event) {
	for _, ev := range evs {
		if ev.Seq < uint64(len(c.start)) {
			c.start[ev.Seq] = t0.UnixNano()
		}
	}
}

// arrive notes the arrival of a delivered request; a redelivery keeps the
// first arrival.
func (c *deliveryClock) arrive(obj []byte) {
	if seq, ok := load.RequestID(obj); ok && seq < uint64(len(c.arrival)) && c.arrival[seq] == 0 {
		c.arrival[seq] = time.Now().UnixNano()
	}
}

// report reports the raise → delivered p50 and p99 as e2e-p50-ms and
// e2e-p99-ms. Call it once every event has arrived and every raise returned.
func (c *deliveryClock) report(b *testing.B) {
	lat := make([]time.Duration, 0, len(c.start))
	for seq, t0 := range c.start {
		if t0 != 0 && c.arrival[seq] != 0 {
			lat = append(lat, time.Duration(c.arrival[seq]-t0))
		}
	}
	if len(lat) < len(c.start)-1 {
		b.Fatalf("timed %d of %d events from raise to delivery", len(lat), len(c.start)-1)
	}
	evqtest.ReportLatency(b, [][]time.Duration{lat}, "e2e-")
}

// BenchmarkFanout raises from 256 raisers to N reliable tcp subscribers
// (window 256 each); events/s counts events delivered to every subscriber.
func BenchmarkFanout(b *testing.B) {
	for _, subs := range []int{10, 100} {
		b.Run(fmt.Sprintf("subscribers=%d", subs), func(b *testing.B) {
			l := evqtest.MustOpenLog(b, nil)
			e := evqtest.StartEngine(b, l, &delivery.Options{})
			var got atomic.Int64
			all := make(chan struct{})
			target := int64(b.N) * int64(subs)
			recv := make([]*load.AckReceiver, subs)
			for i := range recv {
				r, err := load.NewAckReceiver(func([]byte) {
					if got.Add(1) == target {
						close(all)
					}
				})
				if err != nil {
					b.Fatal(err)
				}
				defer r.Close()
				recv[i] = r
			}
			subscribeAll(b, e, recv, 256)
			b.SetBytes(256)
			raised, lat := evqtest.RunRaisers(b, 256, func(ev *evq.Event) error { return e.Raise(context.Background(), ev) })
			start := time.Now().Add(-raised)
			waitAll(b, all, recv...)
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
			b.ReportMetric(float64(b.N)*float64(subs)/time.Since(start).Seconds(), "deliveries/s")
			evqtest.ReportLatency(b, lat, "raise-")
		})
	}
}

// BenchmarkEndToEnd_Steady raises 10,000 events/s on a fixed schedule (64
// raisers) to a reliable tcp subscriber and reports raise → delivered
// latency, measured from when each event was due. The first second is a
// warm-up, neither counted nor timed: it holds a new store's first WAL
// segment, which grows until a spare is ready, and the discards of the files
// an earlier benchmark deleted (this disk is mounted with -o discard).
func BenchmarkEndToEnd_Steady(b *testing.B) {
	sys, err := load.NewEmbedded(b.TempDir(), load.EvqOptions{Reliable: true})
	if err != nil {
		b.Fatal(err)
	}
	defer sys.Close()
	b.ResetTimer()
	res, err := load.Run(context.Background(), sys, load.Config{Publishers: 64, Rate: 10000, Count: max(b.N, 1000), Warmup: time.Second}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.DeliverPS, "events/s")
	b.ReportMetric(res.EndToEnd.P50, "e2e-p50-ms")
	b.ReportMetric(res.EndToEnd.P99, "e2e-p99-ms")
	b.ReportMetric(res.PublishLat.P99, "raise-p99-ms")
}

func subscribeAll(b *testing.B, e *delivery.Engine, recv []*load.AckReceiver, window int) {
	for _, r := range recv {
		_, err := e.Subscribe(context.Background(), delivery.SubscribeRequest{Event: "E_ACC_CDR", Socket: r.Socket(),
			Options: evq.Options{Reliable: true, MaxInflight: window}})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// waitAll waits for all to close, for up to a minute.
func waitAll(b *testing.B, all <-chan struct{}, recv ...*load.AckReceiver) {
	select {
	case <-all:
	case <-time.After(time.Minute):
		var got int64
		for _, r := range recv {
			got += r.Received()
		}
		b.Fatalf("receivers got %d events in all; want %d each", got, b.N)
	}
}

// BenchmarkDrain delivers a backlog of b.N stored events to a reliable tcp
// subscriber with window 256, with no raises going on: the delivery path
// alone (read from the store, encode, send, await replies, move the cursor).
func BenchmarkDrain(b *testing.B) {
	l := evqtest.MustOpenLog(b, nil)
	e := evqtest.StartEngine(b, l, &delivery.Options{})
	evs := make([]*evq.Event, 0, 1000)
	for i := 0; i < b.N; i += len(evs) {
		evs = evs[:0]
		for j := i; j < min(b.N, i+1000); j++ {
			evs = append(evs, evqtest.CDR(j))
		}
		if err := e.RaiseBatch(context.Background(), evs); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	r, all := receiveN(b, int64(b.N), func([]byte) {})
	defer r.Close()
	b.SetBytes(256)
	b.ResetTimer()
	start := time.Now()
	_, err := e.Subscribe(context.Background(), delivery.SubscribeRequest{Event: "E_ACC_CDR", Socket: r.Socket(),
		Options: evq.Options{Reliable: true, MaxInflight: 256}, Start: delivery.Start{Kind: delivery.StartEarliest}})
	if err != nil {
		b.Fatal(err)
	}
	waitAll(b, all, r)
	evqtest.ReportRate(b, b.N, time.Since(start))
}
