package stream_test

import (
	"bufio"
	"bytes"
	"testing"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/internal/evqtest"
	"github.com/evq/evq/transports/stream"
)

// The JSON-RPC hot paths alone, on the bench's 12-param CDR event: no
// syscalls, no disk. They are also the suite's measure of the CPU: when
// these move between two runs with the same code, so does everything else.

func cdrRequests(n int) [][]byte {
	m := stream.Message{Request: true}
	out := make([][]byte, n)
	for i := range out {
		ev := evqtest.CDR(i)
		ev.Seq = uint64(i + 1)
		out[i] = m.Append(nil, ev)
	}
	return out
}

// BenchmarkMessage_Append encodes an event as a JSON-RPC request, as the tcp
// transport does for every delivery.
func BenchmarkMessage_Append(b *testing.B) {
	evs := make([]*evq.Event, 1024)
	for i := range evs {
		evs[i] = evqtest.CDR(i)
		evs[i].Seq = uint64(i + 1)
	}
	m := stream.Message{Request: true}
	buf := m.Append(nil, evs[0])
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		buf = m.Append(buf[:0], evs[i%len(evs)])
	}
	evqtest.ReportRate(b, b.N, time.Since(start))
}

// BenchmarkReadObject splits a stream of back-to-back requests into
// objects, as a reliable subscriber and evq's tcp ingest do.
func BenchmarkReadObject(b *testing.B) {
	stream1 := bytes.Join(cdrRequests(1024), nil)
	b.SetBytes(int64(len(stream1) / 1024))
	b.ReportAllocs()
	r := bytes.NewReader(stream1)
	br := bufio.NewReaderSize(r, 64<<10)
	var obj []byte
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if i%1024 == 0 {
			r.Reset(stream1)
			br.Reset(r)
		}
		var err error
		if obj, err = stream.ReadObject(br, obj, 1<<20); err != nil {
			b.Fatal(err)
		}
	}
	evqtest.ReportRate(b, b.N, time.Since(start))
}

// BenchmarkParseRequest parses a request into an event, as evq's tcp ingest
// does for every event OpenSIPS raises.
func BenchmarkParseRequest(b *testing.B) {
	reqs := cdrRequests(1024)
	b.SetBytes(int64(len(reqs[0])))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := stream.ParseRequest(reqs[i%len(reqs)], ""); err != nil {
			b.Fatal(err)
		}
	}
	evqtest.ReportRate(b, b.N, time.Since(start))
}
