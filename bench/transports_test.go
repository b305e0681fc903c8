package bench

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/evq/evq"
	"github.com/evq/evq/bench/load"
	"github.com/evq/evq/internal/evqtest"
	"github.com/evq/evq/transports"
)

// BenchmarkTransport measures one transport alone: batches of 256 events
// sent to a local peer (or appended to a file), acknowledged in reliable
// mode. Datagram figures
// count events sent (the protocol has no acknowledgement).
func BenchmarkTransport(b *testing.B) {
	evs := make([]*evq.Event, 256)
	for i := range evs {
		evs[i] = evqtest.CDR(i)
		evs[i].Seq = uint64(i + 1)
	}
	run := func(b *testing.B, sub evq.Subscription) {
		tr, err := transports.New(sub)
		if err != nil {
			b.Fatal(err)
		}
		defer tr.Close()
		b.SetBytes(256)
		b.ReportAllocs()
		b.ResetTimer()
		start := time.Now()
		for done := 0; done < b.N; done += len(evs) {
			batch := evs[:min(len(evs), b.N-done)]
			if n, err := tr.Send(context.Background(), batch); n != len(batch) || err != nil {
				b.Fatal(n, err)
			}
		}
		evqtest.ReportRate(b, b.N, time.Since(start))
	}
	for _, reliable := range []bool{false, true} {
		name := map[bool]string{false: "tcp", true: "tcp-reliable"}[reliable]
		b.Run(name, func(b *testing.B) {
			r, err := load.NewAckReceiver(nil)
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			run(b, evq.Subscription{Socket: r.Socket(), Options: evq.Options{Reliable: reliable, MaxInflight: 256}})
		})
	}
	for _, reliable := range []bool{false, true} {
		name := map[bool]string{false: "xmlrpc", true: "xmlrpc-reliable"}[reliable]
		b.Run(name, func(b *testing.B) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				io.WriteString(w, `<?xml version="1.0"?><methodResponse><params><param><value><boolean>1</boolean></value></param></params></methodResponse>`)
			}))
			defer srv.Close()
			run(b, evq.Subscription{Socket: "xmlrpc:" + srv.Listener.Addr().String() + ":notify", Options: evq.Options{Reliable: reliable}})
		})
	}
	for _, reliable := range []bool{false, true} {
		name := map[bool]string{false: "rabbitmq", true: "rabbitmq-confirms"}[reliable]
		b.Run(name, func(b *testing.B) {
			conn, err := amqp.Dial("amqp://guest:guest@127.0.0.1:5672/")
			if err != nil {
				b.Skipf("RabbitMQ not reachable on 127.0.0.1:5672: %v", err)
			}
			ch, err := conn.Channel()
			if err != nil {
				b.Fatal(err)
			}
			q, err := ch.QueueDeclare("", false, true, true, false, nil) // server-named, exclusive
			if err != nil {
				b.Fatal(err)
			}
			deliveries, err := ch.Consume(q.Name, "", true, true, false, false, nil)
			if err != nil {
				b.Fatal(err)
			}
			drained := make(chan struct{})
			go func() {
				defer close(drained)
				for range deliveries {
				}
			}()
			defer func() { conn.Close(); <-drained }()
			run(b, evq.Subscription{Socket: "rabbitmq:127.0.0.1/" + q.Name, Options: evq.Options{Reliable: reliable, Timeout: 10 * time.Second}})
		})
	}
	for _, reliable := range []bool{false, true} {
		// flatstore-reliable fsyncs the file before it counts a batch's
		// lines delivered.
		name := map[bool]string{false: "flatstore", true: "flatstore-reliable"}[reliable]
		b.Run(name, func(b *testing.B) {
			run(b, evq.Subscription{Socket: "flatstore:" + filepath.Join(b.TempDir(), "events.log"), Options: evq.Options{Reliable: reliable}})
		})
	}
	for _, network := range []string{"udp", "unixgram"} {
		b.Run(network, func(b *testing.B) {
			addr := "127.0.0.1:0"
			if network == "unixgram" {
				addr = filepath.Join(b.TempDir(), "b.sock")
			}
			pc, err := net.ListenPacket(network, addr)
			if err != nil {
				b.Fatal(err)
			}
			done := make(chan struct{})
			go func() { // drain
				defer close(done)
				buf := make([]byte, 1<<16)
				for {
					if _, _, err := pc.ReadFrom(buf); err != nil {
						return
					}
				}
			}()
			defer func() { pc.Close(); <-done }()
			socket := "udp:" + pc.LocalAddr().String()
			if network == "unixgram" {
				socket = "unix:" + addr
			}
			run(b, evq.Subscription{Socket: socket})
		})
	}
}
