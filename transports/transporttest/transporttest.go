// Package transporttest is the conformance suite that every transport runs
// against real peers on loopback sockets: delivery in order, failure
// detection when the peer is down (where the protocol can detect it), and
// delivery again once the peer is back.
package transporttest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/evq/evq"
)

// Peer is a real receiver that a transport delivers to.
type Peer interface {
	Socket() string
	// Payloads returns what arrived, in order of arrival.
	Payloads() [][]byte
	// Stop takes the peer down; Restart brings it back on the same address.
	Stop()
	Restart()
}

// Rejecter is a peer that can answer with a protocol-level error (a
// JSON-RPC error reply, an XML-RPC fault).
type Rejecter interface {
	RejectNext(n int)
}

// Staller is a peer that can stop answering while it keeps the connection.
type Staller interface {
	Stall(on bool)
}

// Harness describes a transport under test.
type Harness struct {
	// NewPeer starts a peer; it is stopped at cleanup.
	NewPeer func(t *testing.T) Peer
	// New returns the transport for socket.
	New func(t *testing.T, socket string) evq.Transport
	// DetectsDown says that Send reports an error when the peer is down
	// (reliable tcp, unix datagrams) instead of success (udp, plain tcp).
	DetectsDown bool
	// Index returns the "i" param of a received payload. nil means the
	// payload is a JSON-RPC object with params {"i": N}.
	Index func(payload []byte) (int, error)
	// Reliable says that the transports New returns wait for the peer's
	// answer; with a Rejecter or Staller peer the suite then checks that an
	// error answer and no answer are reported as failures to retry. Their
	// reply timeout must be short (at most a second).
	Reliable bool
}

func event(i int) *evq.Event {
	return &evq.Event{Seq: uint64(i + 1), Name: "E_CONFORM", Named: true,
		Params: []evq.Param{{Name: "i", Value: evq.Int(int64(i))}, {Name: "s", Value: evq.String(`quote " and <xml> & ünïcødé`)}}}
}

func jsonIndex(payload []byte) (int, error) {
	var m struct {
		Method string
		Params struct{ I *int }
	}
	if err := json.Unmarshal(payload, &m); err != nil {
		return 0, err
	}
	if m.Method != "E_CONFORM" || m.Params.I == nil {
		return 0, fmt.Errorf("payload %s: want method E_CONFORM and params.i", payload)
	}
	return *m.Params.I, nil
}

// send delivers events [from, to) in chunks, failing the test on error.
func send(t *testing.T, tr evq.Transport, from, to, chunk int) {
	t.Helper()
	for i := from; i < to; i += chunk {
		var evs []*evq.Event
		for k := i; k < min(i+chunk, to); k++ {
			evs = append(evs, event(k))
		}
		if n, err := tr.Send(context.Background(), evs); n != len(evs) || err != nil {
			t.Fatalf("send %d..%d: delivered %d, %v", i, i+len(evs), n, err)
		}
	}
}

// waitIndexes waits until the peer received n payloads and returns their indexes.
func waitIndexes(t *testing.T, h Harness, p Peer, n int) []int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := p.Payloads()
		if len(got) >= n {
			out := make([]int, len(got))
			for k, pl := range got {
				i, err := h.Index(pl)
				if err != nil {
					t.Fatal(err)
				}
				out[k] = i
			}
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("peer received %d payloads, want %d", len(got), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// arrived waits briefly for a payload beyond the first five.
func arrived(p Peer, already bool) bool {
	for i := 0; i < 50 && !already; i++ {
		time.Sleep(2 * time.Millisecond)
		already = len(p.Payloads()) > 5
	}
	return already
}

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	if h.Index == nil {
		h.Index = jsonIndex
	}
	t.Run("ErrorReply", func(t *testing.T) {
		p := h.NewPeer(t)
		r, ok := p.(Rejecter)
		if !h.Reliable || !ok {
			t.Skip("the protocol has no error answer, or the transport does not wait for one")
		}
		tr := h.New(t, p.Socket())
		defer tr.Close()
		r.RejectNext(1)
		n, err := tr.Send(context.Background(), []*evq.Event{event(0), event(1)})
		if n != 0 || err == nil || evq.IsPermanent(err) {
			t.Fatalf("an error answer: delivered %d, %v; want 0 and an error to retry", n, err)
		}
		send(t, tr, 0, 2, 2)
		got := waitIndexes(t, h, p, 2)
		if got[len(got)-2] != 0 || got[len(got)-1] != 1 {
			t.Fatalf("after the retry the peer got %v", got)
		}
	})
	t.Run("NoAnswer", func(t *testing.T) {
		p := h.NewPeer(t)
		st, ok := p.(Staller)
		if !h.Reliable || !ok {
			t.Skip("the transport does not wait for an answer")
		}
		tr := h.New(t, p.Socket())
		defer tr.Close()
		st.Stall(true)
		start := time.Now()
		n, err := tr.Send(context.Background(), []*evq.Event{event(0)})
		if n != 0 || err == nil || evq.IsPermanent(err) {
			t.Fatalf("no answer: delivered %d, %v; want 0 and an error to retry", n, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("gave up after %s: the reply timeout is not applied", d)
		}
		st.Stall(false)
		send(t, tr, 1, 2, 1)
		if got := waitIndexes(t, h, p, 1); got[len(got)-1] != 1 {
			t.Fatalf("after the peer answered again it got %v", got)
		}
	})
	t.Run("InOrder", func(t *testing.T) {
		p := h.NewPeer(t)
		tr := h.New(t, p.Socket())
		defer tr.Close()
		send(t, tr, 0, 200, 16)
		got := waitIndexes(t, h, p, 200)
		for k := range 200 {
			if got[k] != k {
				t.Fatalf("payload %d holds event %d", k, got[k])
			}
		}
	})
	t.Run("PeerDownAndBack", func(t *testing.T) {
		p := h.NewPeer(t)
		tr := h.New(t, p.Socket())
		defer tr.Close()
		send(t, tr, 0, 5, 5)
		waitIndexes(t, h, p, 5)
		p.Stop()
		if h.DetectsDown {
			// The failure is reported, at the latest on the second try (a
			// write into a connection the peer just closed can succeed once).
			var err error
			for try := 0; try < 2 && err == nil; try++ {
				var n int
				n, err = tr.Send(context.Background(), []*evq.Event{event(5)})
				if err == nil && n != 1 {
					t.Fatalf("Send reported %d delivered and no error", n)
				}
			}
			if err == nil {
				t.Fatal("Send to a stopped peer reported success twice")
			}
			if evq.IsPermanent(err) {
				t.Fatalf("a down peer is a permanent error: %v", err)
			}
		}
		p.Restart()
		// Send until the event arrives, as the engine's retries would. A
		// transport that cannot detect failure may report success for an
		// event written into the old, dead connection: resend that too.
		deadline := time.Now().Add(10 * time.Second)
		for {
			n, err := tr.Send(context.Background(), []*evq.Event{event(6)})
			if n == 1 && err == nil && arrived(p, len(p.Payloads()) > 5) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no delivery after the peer came back: %v", err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		got := waitIndexes(t, h, p, 6)
		if got[5] != 6 {
			t.Fatalf("after restart the peer got %v", got)
		}
	})
}
