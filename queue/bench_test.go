package queue_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/internal/evqtest"
	"golang.org/x/sys/unix"
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

// BenchmarkDiskFlush measures the disk alone: 3 KB written into a
// preallocated file, then fdatasync, as the WAL does for a group commit of
// about ten events; back to back, and one a millisecond as in the steady
// 10k events/s benchmark. It is the floor under every durable figure: a
// raise waits for at least one such flush, and for up to two when it
// arrives while one is under way.
func BenchmarkDiskFlush(b *testing.B) {
	for _, every := range []time.Duration{0, time.Millisecond} {
		name := "back-to-back"
		if every > 0 {
			name = "every=" + every.String()
		}
		b.Run(name, func(b *testing.B) { benchFlush(b, every) })
	}
}

func benchFlush(b *testing.B, every time.Duration) {
	f, err := os.OpenFile(filepath.Join(evqtest.StoreDir(b), "flush.test"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	const size = 64 << 20
	if err := f.Truncate(size); err != nil {
		b.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	rec := make([]byte, 3000)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := f.WriteAt(rec, int64(i*len(rec))%(size-int64(len(rec)))); err != nil {
			b.Fatal(err)
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
		if every > 0 {
			time.Sleep(time.Until(t0.Add(every)))
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "flushes/s")
	evqtest.ReportLatency(b, [][]time.Duration{lat}, "flush-")
}
