package datagram_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/internal/evqtest"
	"github.com/evq/evq/queue"
	"github.com/evq/evq/transports/datagram"
)

type logRaiser struct{ l *queue.Log }

func (r logRaiser) RaiseBatch(ctx context.Context, evs []*evq.Event) error {
	return r.l.Append(ctx, evs...)
}

func TestListener(t *testing.T) {
	for _, tt := range []struct{ network, capture string }{{"udp", "A_single_named.udp.bin"}, {"unixgram", "A_single_named.unix.bin"}} {
		t.Run(tt.network, func(t *testing.T) {
			l := evqtest.MustOpenLog(t, nil)
			socket := "udp:" + evqtest.FreeAddr(t)
			if tt.network == "unixgram" {
				socket = "unix:" + filepath.Join(t.TempDir(), "in.sock")
			}
			ln, err := datagram.Listen(socket, evqtest.LogRaiser{Log: l}, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			c, err := net.Dial(tt.network, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			golden, _ := os.ReadFile(filepath.Join("..", "..", "testdata", "opensips", tt.capture))
			for _, d := range [][]byte{golden, []byte(`{"method":`), []byte(`{"jsonrpc":"2.0"}`), []byte(`{"jsonrpc":"2.0","method":"E_EVQ_TEST","params":[1]}`)} {
				if _, err := c.Write(d); err != nil {
					t.Fatal(err)
				}
			}
			evs := evqtest.WaitStored(t, l, "E_EVQ_TEST", 2)
			if evs[0].Params[0].Name != "ip" || evs[0].Params[0].Value.Str != "192.168.2.11" || evs[1].Named {
				t.Fatalf("%+v %+v", evs[0], evs[1])
			}
			// The counters move just after the commit the events are seen in.
			deadline := time.Now().Add(5 * time.Second)
			st := ln.Stats()
			for st.Rejected.Load() != 2 || st.Accepted.Load() != 2 {
				if time.Now().After(deadline) {
					t.Fatalf("accepted %d rejected %d", st.Accepted.Load(), st.Rejected.Load())
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
}

func TestListener_InOrder(t *testing.T) {
	l := evqtest.MustOpenLog(t, nil)
	ln, err := datagram.Listen("unix:"+filepath.Join(t.TempDir(), "in.sock"), evqtest.LogRaiser{Log: l}, "opensips_event", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("unixgram", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 3000
	for i := 0; i < n; i++ {
		fmt.Fprintf(c, `{"jsonrpc":"2.0","method":"x","params":{"opensips_event":"E_D","i":%d}}`, i)
	}
	c.Write([]byte(`{"jsonrpc":"2.0","method":"x","params":{"opensips_event":"E_D","p":"` + strings.Repeat("y", 65500) + `"}}`)) // oversize
	evs := evqtest.WaitStored(t, l, "E_D", n)
	for i, ev := range evs {
		if ev.Params[0].Value.Int != int64(i) {
			t.Fatalf("event %d holds %d", i, ev.Params[0].Value.Int)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for ln.Stats().Rejected.Load() != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if ln.Stats().Rejected.Load() != 1 {
		t.Fatal("the oversize datagram was not counted")
	}
}
