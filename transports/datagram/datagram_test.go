package datagram_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/internal/evqtest"
	"github.com/evq/evq/transports/datagram"
	"github.com/evq/evq/transports/transporttest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newTransport(t *testing.T, socket string) *datagram.Transport {
	t.Helper()
	sock, err := evq.ParseSocket(socket)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := datagram.New(sock, evq.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

type peer struct{ *evqtest.DatagramReceiver }

func (p peer) Payloads() [][]byte { return p.Received() }

func TestConformance(t *testing.T) {
	for _, network := range []string{"udp", "unixgram"} {
		t.Run(network, func(t *testing.T) {
			transporttest.Run(t, transporttest.Harness{
				NewPeer: func(t *testing.T) transporttest.Peer {
					return peer{evqtest.NewDatagramReceiver(t, network)}
				},
				New:         func(t *testing.T, socket string) evq.Transport { return newTransport(t, socket) },
				DetectsDown: network == "unixgram", // udp learns of a dead peer only from a later ICMP error
			})
		})
	}
}

// TestGolden compares the payload with what OpenSIPS's event_datagram sent.
func TestGolden(t *testing.T) {
	for _, tt := range []struct{ network, file string }{{"udp", "A_single_named.udp.bin"}, {"unixgram", "A_single_named.unix.bin"}} {
		want, err := os.ReadFile(filepath.Join("..", "..", "testdata", "opensips", tt.file))
		if err != nil {
			t.Fatal(err)
		}
		r := evqtest.NewDatagramReceiver(t, tt.network)
		tr := newTransport(t, r.Socket())
		ev := &evq.Event{Seq: 1, Name: "E_EVQ_TEST", Named: true, Params: []evq.Param{{Name: "ip", Value: evq.String("192.168.2.11")}}}
		if n, err := tr.Send(context.Background(), []*evq.Event{ev}); n != 1 || err != nil {
			t.Fatal(n, err)
		}
		if got := r.WaitFor(1, 5*time.Second)[0]; !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %s\nwant %s", tt.file, got, want)
		}
	}
}

func TestOversize(t *testing.T) {
	r := evqtest.NewDatagramReceiver(t, "udp")
	tr := newTransport(t, r.Socket())
	small := &evq.Event{Seq: 1, Name: "E_BIG"}
	big := &evq.Event{Seq: 2, Name: "E_BIG", Named: true, Params: []evq.Param{{Name: "p", Value: evq.String(strings.Repeat("x", datagram.MaxPayload))}}}
	n, err := tr.Send(context.Background(), []*evq.Event{small, big, small})
	if n != 1 || !evq.IsPermanent(err) || !strings.Contains(err.Error(), "at most 65457") || !strings.Contains(err.Error(), " bytes as JSON-RPC") {
		t.Fatalf("n=%d err=%v", n, err)
	}
	r.WaitFor(1, 5*time.Second)
}

func TestMissingUnixSocket(t *testing.T) {
	tr := newTransport(t, "unix:"+filepath.Join(t.TempDir(), "nobody-here.sock"))
	n, err := tr.Send(context.Background(), []*evq.Event{{Seq: 1, Name: "E_X"}})
	if n != 0 || err == nil || evq.IsPermanent(err) || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("n=%d err=%v: want a retryable error naming the missing file", n, err)
	}
}
