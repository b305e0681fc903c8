package load

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/evq/evq/api"
	"github.com/evq/evq/internal/evqtest"
	"github.com/evq/evq/transports/stream"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPayload(t *testing.T) {
	at := time.Unix(1763900000, 123456789)
	p := Payload(nil, at, 256)
	if len(p) != 256 {
		t.Fatalf("payload is %d bytes", len(p))
	}
	got, ok := SentAt([]byte(`{"jsonrpc":"2.0","method":"E_BENCH","params":{"p":"` + string(p) + `"},"id":7}`))
	if !ok || !got.Equal(at) {
		t.Fatalf("SentAt: %v %v, want %v", got, ok, at)
	}
	if _, ok := SentAt([]byte(`{"t=":"nothing"}`)); ok {
		t.Fatal("found a time where there is none")
	}
}

// A run against an embedded evq delivers every event to every subscriber
// and reports it.
func TestRun_Embedded(t *testing.T) {
	sys, err := NewEmbedded(t.TempDir(), EvqOptions{Subscribers: 3, Reliable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	res, err := Run(context.Background(), sys, Config{Publishers: 8, Count: 3000}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Published != 3000 || res.Delivered != 9000 || res.Errors != 0 || res.Consumers != 3 {
		t.Fatalf("%+v", res)
	}
	if res.PublishPS <= 0 || res.DeliverPS <= 0 || res.EndToEnd.P50 <= 0 || res.EndToEnd.Max < res.EndToEnd.P99 {
		t.Fatalf("%+v", res)
	}
}

// With a target rate, publishers keep to it.
func TestRun_Rate(t *testing.T) {
	sys, err := NewEmbedded(t.TempDir(), EvqOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	res, err := Run(context.Background(), sys, Config{Publishers: 4, Rate: 2000, Count: 1000}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.PublishPS > 2400 {
		t.Fatalf("published %.0f/s with a target of 2000/s", res.PublishPS)
	}
}

// counting counts the publishes that reach the system.
type counting struct {
	*Embedded
	n atomic.Int64
}

func (c *counting) Publisher(ctx context.Context) (func([]byte) error, error) {
	pub, err := c.Embedded.Publisher(ctx)
	return func(p []byte) error { c.n.Add(1); return pub(p) }, err
}

// A warm-up publishes before the measured part and leaves its events out of
// the counts, the rates and the latencies.
func TestRun_Warmup(t *testing.T) {
	e, err := NewEmbedded(t.TempDir(), EvqOptions{Reliable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	sys := &counting{Embedded: e}
	res, err := Run(context.Background(), sys, Config{Publishers: 4, Rate: 2000, Count: 500, Warmup: 250 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Published != 500 || res.Delivered != 500 || res.Warmup != 0.25 {
		t.Fatalf("published %d, delivered %d, warm-up %vs; want 500, 500, 0.25s", res.Published, res.Delivered, res.Warmup)
	}
	if n := sys.n.Load(); n < 900 || n > 1100 {
		t.Fatalf("%d publishes in all; want about 1000 (500 in the warm-up at 2000/s)", n)
	}
	if res.Seconds > 0.45 || res.PublishPS < 1500 || res.PublishPS > 2400 {
		t.Fatalf("measured %.2fs and %.0f/s; want the 500 measured events alone, at about 2000/s", res.Seconds, res.PublishPS)
	}
}

// A run against a server over its HTTP API, publishing through the API or
// through a tcp ingest listener, as `evq bench --server [--ingest]` does.
func TestRun_Remote(t *testing.T) {
	l := evqtest.MustOpenLog(t, nil)
	e := evqtest.StartEngine(t, l, nil)
	srv := api.New(e, l, nil)
	hs := httptest.NewServer(srv)
	defer func() { srv.Stop(); hs.Close() }()
	ln, err := stream.Listen("127.0.0.1:0", e, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, ingest := range []string{"", ln.Addr().String()} {
		sys := NewRemote(hs.URL, "", ingest, EvqOptions{Subscribers: 2, Reliable: true})
		res, err := Run(context.Background(), sys, Config{Publishers: 4, Count: 500}, nil)
		if cerr := sys.Close(); err == nil {
			err = cerr
		}
		if err != nil || res.Published != 500 || res.Delivered != 1000 {
			t.Fatalf("ingest %q: %+v %v", ingest, res, err)
		}
		if len(e.Subscriptions()) != 0 {
			t.Fatal("the run left its subscriptions behind")
		}
	}
}

// Publishers share the ingest connections as OpenSIPS's event_stream does:
// with one connection and with three, every request is answered and every
// event delivered, and the listener saw exactly that many connections.
func TestRun_IngestSharesConnections(t *testing.T) {
	for _, conns := range []int{0, 3} {
		sys, err := NewIngest(t.TempDir(), EvqOptions{Reliable: true, IngestConns: conns})
		if err != nil {
			t.Fatal(err)
		}
		res, err := Run(context.Background(), sys, Config{Publishers: 16, Count: 4000}, nil)
		opened := sys.ln.Stats().Connections.Load()
		if cerr := sys.Close(); err == nil {
			err = cerr
		}
		if err != nil || res.Published != 4000 || res.Delivered != 4000 || res.Errors != 0 {
			t.Fatalf("conns %d: %+v %v", conns, res, err)
		}
		if want := uint64(max(conns, 1)); opened != want {
			t.Fatalf("conns %d: the listener saw %d connections", conns, opened)
		}
	}
}

// On a shared connection, an error reply reaches the publisher whose
// request it answers, and the others go on; when the connection breaks,
// every publisher still waiting gets an error instead of hanging.
func TestJSONRPCClients_Replies(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// A server that answers ids 1 and 2 in reverse order, id 2 with an
	// error, and then hangs up on request 3.
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for i := 0; i < 3; i++ {
			if _, err := stream.ReadObject(br, nil, 1<<20); err != nil {
				return
			}
		}
		io.WriteString(c, `{"jsonrpc":"2.0","error":{"code":-32000,"message":"event not stored: disk full"},"id":2}`)
		io.WriteString(c, `{"jsonrpc":"2.0","result":7,"id":1}`)
	}()
	j := &jsonrpcClients{addr: ln.Addr().String(), event: "E_T"}
	defer j.close()
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range errs {
		pub, err := j.publisher()
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = pub([]byte("x")) }()
		time.Sleep(20 * time.Millisecond) // ids follow the publishers' order
	}
	wg.Wait()
	if errs[0] != nil {
		t.Errorf("request 1: %v", errs[0])
	}
	if errs[1] == nil || !strings.Contains(errs[1].Error(), "disk full") {
		t.Errorf("request 2: %v, want the server's error", errs[1])
	}
	if errs[2] == nil || !strings.Contains(errs[2].Error(), "ingest connection") {
		t.Errorf("request 3: %v, want the broken connection", errs[2])
	}
}
