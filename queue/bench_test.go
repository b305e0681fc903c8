package queue_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/internal/evqtest"
)

// BenchmarkLog_Append measures durable (fsynced) appends from concurrent
// raisers, each waiting for its own acknowledgement.
func BenchmarkLog_Append(b *testing.B) {
	for _, raisers := range []int{1, 64, 256, 1024} {
		b.Run(fmt.Sprintf("raisers=%d", raisers), func(b *testing.B) {
			l := evqtest.MustOpenLog(b, nil)
			b.SetBytes(256) // evqtest.CDR is about 256 bytes as JSON
			b.ReportAllocs()
			d, lat := evqtest.RunRaisers(b, raisers, func(ev *evq.Event) error { return l.Append(context.Background(), ev) })
			evqtest.ReportRate(b, b.N, d)
			evqtest.ReportLatency(b, lat, "")
			st := l.Stats()
			evqtest.ReportCommits(b, st, d)
		})
	}
	b.Run("batch=1000", func(b *testing.B) {
		// Four raisers with 1000 events per call, as an ingest path that
		// has many events at hand would use RaiseBatch.
		l := evqtest.MustOpenLog(b, nil)
		b.SetBytes(256) // evqtest.CDR is about 256 bytes as JSON
		b.ReportAllocs()
		d := evqtest.RunBatchRaisers(b, 4, 1000, func(evs []*evq.Event) error { return l.Append(context.Background(), evs...) })
		evqtest.ReportRate(b, b.N, d)
	})
}

// BenchmarkLog_Read measures a replay scan from disk.
func BenchmarkLog_Read(b *testing.B) {
	l := evqtest.MustOpenLog(b, nil)
	const stored = 100000
	for done := 0; done < stored; done += 1000 {
		evs := make([]*evq.Event, 1000)
		for i := range evs {
			evs[i] = evqtest.CDR(done + i)
		}
		if err := l.Append(context.Background(), evs...); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(256) // evqtest.CDR is about 256 bytes as JSON
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var cursor uint64
	var buf []evq.Event // reused from read to read, as a delivery worker does
	for read := 0; read < b.N; {
		var err error
		buf, err = l.ReadInto(buf, "E_ACC_CDR", cursor, 1000)
		if err != nil {
			b.Fatal(err)
		}
		if len(buf) == 0 {
			cursor = 0
			continue
		}
		cursor = buf[len(buf)-1].Seq
		read += len(buf)
	}
	evqtest.ReportRate(b, b.N, time.Since(start))
}
