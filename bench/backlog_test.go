package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/delivery"
	"github.com/evq/evq/internal/evqtest"
	"github.com/evq/evq/queue"
	"github.com/evq/evq/transports"
)

// BenchmarkBacklog builds a backlog of 10M CDR events (about 256 bytes each
// as JSON) that 100 reliable subscribers cannot take, because nothing
// listens on their sockets, and reports what it costs: resident memory
// (RSS, split into the Go heap and the rest), and bytes on disk per event.
// It runs once, whatever -benchtime says, and needs about 3.5 GB of disk;
// EVQ_BACKLOG_EVENTS sets another size, EVQ_BACKLOG_SUBS another number of
// subscribers.
//
//	go test -run XXX -bench Backlog -benchtime 1x ./bench
func BenchmarkBacklog(b *testing.B) {
	total := 10_000_000
	if v := os.Getenv("EVQ_BACKLOG_EVENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("EVQ_BACKLOG_EVENTS=%q: want a number of events", v)
		}
		total = n
	}
	path := filepath.Join(b.TempDir(), "evq.db")
	l, err := queue.Open(path, &queue.Options{RetentionInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	e := delivery.New(l, &delivery.Options{NewTransportFunc: transports.New})
	if err := e.Start(); err != nil {
		b.Fatal(err)
	}
	defer e.Close(context.Background())
	dead := deadAddr(b)
	subs := 100
	if v := os.Getenv("EVQ_BACKLOG_SUBS"); v != "" {
		if subs, err = strconv.Atoi(v); err != nil || subs < 0 {
			b.Fatalf("EVQ_BACKLOG_SUBS=%q: want a number of subscribers", v)
		}
	}
	for i := 0; i < subs; i++ {
		// Subscriptions of one dead receiver: each socket differs by
		// its /method, so each is a subscription of its own.
		_, err := e.Subscribe(context.Background(), delivery.SubscribeRequest{Event: "E_ACC_CDR",
			Socket: fmt.Sprintf("tcp:%s/cdr%d", dead, i), Start: delivery.Start{Kind: delivery.StartEarliest},
			Options: evq.Options{Reliable: true, MaxInflight: 64}})
		if err != nil {
			b.Fatal(err)
		}
	}

	b.ResetTimer()
	start := time.Now()
	batch := make([]*evq.Event, 1000)
	for done := 0; done < total; done += len(batch) {
		batch = batch[:min(len(batch), total-done)]
		for i := range batch {
			batch[i] = evqtest.CDR(done + i)
		}
		if err := e.RaiseBatch(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	took := time.Since(start)
	b.StopTimer()

	peak := procStatus(b)["VmHWM"]
	runtime.GC()
	debug.FreeOSMemory()
	time.Sleep(2 * time.Second) // let the 100 workers settle into their backoff
	st := procStatus(b)
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	for _, s := range e.Subscriptions() {
		if s.Lag != uint64(total) {
			b.Fatalf("subscription %d has lag %d, want the whole backlog %d", s.ID, s.Lag, total)
		}
	}
	b.ReportMetric(float64(total)/took.Seconds(), "raised/s")
	b.ReportMetric(float64(st["VmRSS"])/(1<<20), "RSS-MB")
	b.ReportMetric(float64(st["RssAnon"])/(1<<20), "RSS-anon-MB")
	b.ReportMetric(float64(st["RssFile"])/(1<<20), "RSS-file-MB")
	b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MB")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MB")
	b.ReportMetric(float64(fi.Size())/float64(total), "disk-B/event")
}

// procStatus reads this process's memory figures from /proc/self/status,
// in bytes.
func procStatus(b *testing.B) map[string]int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Skipf("no /proc/self/status: %v", err)
	}
	defer f.Close()
	out := make(map[string]int64)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		fields := strings.Fields(v)
		if !ok || len(fields) != 2 || fields[1] != "kB" {
			continue
		}
		n, _ := strconv.ParseInt(fields[0], 10, 64)
		out[k] = n << 10
	}
	return out
}

// deadAddr returns a loopback address on which nothing listens: port 1,
// which no test can be given by the kernel (a port freed by closing a
// listener could be handed to the next receiver the benchmark starts).
func deadAddr(b *testing.B) string {
	const addr = "127.0.0.1:1"
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		b.Skipf("something listens on %s: no dead address for this benchmark", addr)
	}
	return addr
}
