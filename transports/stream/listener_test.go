package stream_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/internal/evqtest"
	"github.com/evq/evq/queue"
	"github.com/evq/evq/transports/stream"
)

type logRaiser struct{ l *queue.Log }

func (r logRaiser) RaiseBatch(ctx context.Context, evs []*evq.Event) error {
	return r.l.Append(ctx, evs...)
}

func listen(t *testing.T, opts *stream.ListenerOptions) (*stream.Listener, *queue.Log) {
	t.Helper()
	l := evqtest.MustOpenLog(t, nil)
	ln, err := stream.Listen("127.0.0.1:0", evqtest.LogRaiser{Log: l}, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, l
}

// exchange writes in on a new connection and reads n reply objects.
func exchange(t *testing.T, ln *stream.Listener, in string, n int) (replies []string, conn net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte(in)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for len(replies) < n {
		obj, err := stream.ReadObject(br, nil, 1<<20)
		if err != nil {
			t.Fatalf("after %d replies: %v", len(replies), err)
		}
		replies = append(replies, string(obj))
	}
	return replies, c
}

func capture(t *testing.T, name string) string {
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "opensips", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestListener_ReliableCapture(t *testing.T) {
	ln, l := listen(t, &stream.ListenerOptions{EventParam: "opensips_event"})
	replies, _ := exchange(t, ln, capture(t, "D_named.stream_rm1_event_param.bin"), 1)
	if replies[0] != `{"jsonrpc":"2.0","result":1,"id":1225711609}` {
		t.Fatalf("reply %s", replies[0])
	}
	evs := evqtest.WaitStored(t, l, "E_EVQ_TEST", 1)
	if fmt.Sprint(evs[0].Params) != fmt.Sprint([]evq.Param{{Name: "str", Value: evq.String("hello")}, {Name: "int", Value: evq.Int(42)}}) {
		t.Fatalf("stored %+v", evs[0].Params)
	}
}

func TestListener_RequestsAnsweredInOrder(t *testing.T) {
	ln, l := listen(t, nil)
	in := capture(t, "B_rel_ok.txt")
	in = in[strings.Index(in, "## exact bytes received from OpenSIPS (requests):\n")+50:]
	in = in[:strings.Index(in, "\n")]
	replies, _ := exchange(t, ln, in, 3)
	want := []string{`{"jsonrpc":"2.0","result":1,"id":884109633}`, `{"jsonrpc":"2.0","result":2,"id":884109629}`, `{"jsonrpc":"2.0","result":3,"id":884109625}`}
	for i := range want {
		if replies[i] != want[i] {
			t.Fatalf("reply %d: %s, want %s", i, replies[i], want[i])
		}
	}
	evs := evqtest.WaitStored(t, l, "E_EVQ_REL", 3)
	if evs[2].Params[0].Value.Int != 2 {
		t.Fatalf("%+v", evs[2])
	}
}

func TestListener_NotificationsCapture(t *testing.T) {
	ln, l := listen(t, nil)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte(capture(t, "A_stream_rm0_full_connection_9001.bin")))
	evs := evqtest.WaitStored(t, l, "E_EVQ_TEST", 8)
	if evs[1].Named || len(evs[1].Params) != 3 || evs[1].Params[2].Value.Str != "3" {
		t.Errorf("OpenSIPS's {\"\":…} params: %+v", evs[1])
	}
	if evs[3].Params != nil || evs[0].Params[2].Value.Int != -7 {
		t.Errorf("%+v %+v", evs[3], evs[0])
	}
}

func TestListener_BadInput(t *testing.T) {
	ln, l := listen(t, &stream.ListenerOptions{MaxMessage: 4096})
	in := `{"id":1,"jsonrpc":"2.0","method":"E_OK","params":{"a":1}}` +
		`{"id":2,"jsonrpc":"2.0","method":5}` +
		`{"id":3,"jsonrpc":"2.0","method":"bad name"}` +
		`{"id":4,"jsonrpc":"2.0","method":"E_OK","params":{"a":{"nested":1}}}` +
		`{"id":5,"method":"E_OK",}` + // invalid, but its braces balance: the stream resynchronises
		"\n" + `{"id":"six","jsonrpc":"2.0","method":"E_OK","params":[1,"x"]}`
	replies, _ := exchange(t, ln, in, 6)
	for i, want := range []string{
		`{"jsonrpc":"2.0","result":1,"id":1}`,
		`{"jsonrpc":"2.0","error":{"code":-32600,"message":"Invalid Request: no method"},"id":2}`,
		`"code":-32602,"message":"Invalid params: invalid event: event name \"bad name\"`,
		`"code":-32602,"message":"Invalid params: bad params: param \"a\": nested objects`,
		`{"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse error"},"id":null}`,
		`{"jsonrpc":"2.0","result":2,"id":"six"}`,
	} { // rejected so far: invalid request 1, invalid params 2, parse 1
		if !strings.Contains(replies[i], want) {
			t.Errorf("reply %d: %s, want %s", i, replies[i], want)
		}
	}
	if evs := evqtest.WaitStored(t, l, "E_OK", 2); evs[1].Named || evs[1].Params[1].Value.Str != "x" {
		t.Fatalf("%+v", evs[1])
	}

	t.Run("CannotResync", func(t *testing.T) {
		for _, tt := range []struct {
			in   string
			n    int // replies, the last of which says why the connection closes
			want string
		}{
			{`{"id":7,"jsonrpc":"2.0","method":"E_OK"}[1,2]`, 2, `"code":-32600,"message":"Invalid Request: not a json object`},
			{`{"id":7,"jsonrpc":"2.0","method":"E_OK"}{"a":1]}`, 3, `"code":-32600,"message":"Invalid Request: not a json object: stream has '}'`},
			{`{"id":7,"jsonrpc":"2.0","method":"E_OK"}{"id":8,"method":"E_OK","params":{"p":"` + strings.Repeat("x", 5000) + `"}}`, 2, `"code":-32700,"message":"Parse error: json object too large: over 4096 bytes"`},
		} {
			replies, c := exchange(t, ln, tt.in, tt.n)
			if !strings.Contains(replies[0], `"result"`) || !strings.Contains(replies[tt.n-1], tt.want) {
				t.Errorf("%s: %s", tt.want, replies)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err == nil {
				t.Errorf("connection still open after %s", tt.want)
			}
		}
		// What was answered before is stored.
		evqtest.WaitStored(t, l, "E_OK", 5)
		st := ln.Stats()
		if st.ParseErrors.Load() != 2 || st.InvalidRequests.Load() != 3 || st.InvalidParams.Load() != 2 || st.Oversize.Load() != 1 || st.Rejected.Load() != 8 {
			t.Errorf("rejected by reason: parse %d, invalid request %d, invalid params %d, oversize %d, total %d",
				st.ParseErrors.Load(), st.InvalidRequests.Load(), st.InvalidParams.Load(), st.Oversize.Load(), st.Rejected.Load())
		}
	})
}

func TestListener_StorageFull(t *testing.T) {
	ln, l := listen(t, nil)
	big := strings.Repeat("x", 8000)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	send := func(id int) string {
		fmt.Fprintf(c, `{"id":%d,"jsonrpc":"2.0","method":"E_BIG","params":{"p":%q}}`, id, big)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		obj, err := stream.ReadObject(br, nil, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		return string(obj)
	}
	send(0)
	fi, _ := os.Stat(l.Path())
	restore := evqtest.LimitFileSize(t, uint64(fi.Size()))
	var reply string
	stored := 1
	for i := 1; i < 5000; i++ {
		if reply = send(i); !strings.Contains(reply, `"result"`) {
			break
		}
		stored++
	}
	restore()
	if !strings.Contains(reply, `"code":-32000,"message":"event not stored: storage full`) {
		t.Fatalf("reply on a full disk: %s", reply)
	}
	if r := send(9999); !strings.Contains(r, `"result"`) {
		t.Fatalf("after space returned: %s", r)
	}
	evqtest.WaitStored(t, l, "E_BIG", stored+1)
}

// TestListener_PipelinedConnections sends requests back to back on several
// connections at once: every request gets one success reply, in order, and
// each connection's events are stored in its order.
func TestListener_PipelinedConnections(t *testing.T) {
	ln, l := listen(t, nil)
	const conns, each = 4, 2000
	var wg sync.WaitGroup
	for k := 0; k < conns; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			go func() {
				w := bufio.NewWriter(c)
				for i := 0; i < each; i++ {
					fmt.Fprintf(w, `{"id":%d,"jsonrpc":"2.0","method":"E_P","params":{"conn":%d,"i":%d}}`, i, k, i)
				}
				w.Flush()
			}()
			br := bufio.NewReader(c)
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			var last uint64
			for i := 0; i < each; i++ {
				obj, err := stream.ReadObject(br, nil, 1<<20)
				if err != nil {
					t.Errorf("conn %d reply %d: %v", k, i, err)
					return
				}
				var r struct {
					Result uint64
					ID     int
				}
				if err := json.Unmarshal(obj, &r); err != nil || r.ID != i || r.Result <= last {
					t.Errorf("conn %d reply %d: %s after seq %d", k, i, obj, last)
					return
				}
				last = r.Result
			}
		}(k)
	}
	wg.Wait()
	evs := evqtest.WaitStored(t, l, "E_P", conns*each)
	next := make([]int64, conns)
	for _, ev := range evs {
		k, i := ev.Params[0].Value.Int, ev.Params[1].Value.Int
		if i != next[k] {
			t.Fatalf("connection %d: event %d stored after %d", k, i, next[k]-1)
		}
		next[k]++
	}
}

func TestListener_Limits(t *testing.T) {
	ln, l := listen(t, &stream.ListenerOptions{MaxConns: 2, ObjectTimeout: 200 * time.Millisecond})
	a, _ := exchange(t, ln, `{"id":1,"method":"E_L"}`, 1)
	if !strings.Contains(a[0], `"result"`) {
		t.Fatal(a)
	}
	// A slowloris sender: starts an object and never finishes it.
	slow, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	slow.Write([]byte(`{"id":2,"method":"E_L","params":{"a":"`))
	// The limit is reached: a third connection is closed at once.
	third, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	third.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := third.Read(make([]byte, 1)); err == nil {
		t.Fatal("a connection over MaxConns was served")
	}
	third.Close()
	// The slow one is cut off after ObjectTimeout, which frees its place.
	slow.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := slow.Read(make([]byte, 1)); err == nil {
		t.Fatal("the slowloris connection got an answer")
	}
	deadline := time.Now().Add(5 * time.Second)
	for ln.Stats().TimedOut.Load() != 1 || ln.Stats().Refused.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("timed out %d, refused %d", ln.Stats().TimedOut.Load(), ln.Stats().Refused.Load())
		}
		time.Sleep(time.Millisecond)
	}
	// An idle connection is not cut off: it may wait long between objects.
	idle, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	time.Sleep(400 * time.Millisecond) // longer than ObjectTimeout, on purpose
	idle.Write([]byte(`{"id":3,"method":"E_L"}`))
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if obj, err := stream.ReadObject(bufio.NewReader(idle), nil, 1024); err != nil || !strings.Contains(string(obj), `"result"`) {
		t.Fatalf("idle connection: %s %v", obj, err)
	}
	evqtest.WaitStored(t, l, "E_L", 2)
}

// TestListener_ManyConnections opens 1500 connections at once, each sending
// one request, while another sender writes garbage: every request is
// answered and stored, and the garbage affects nobody else.
func TestListener_ManyConnections(t *testing.T) {
	ln, l := listen(t, &stream.ListenerOptions{MaxConns: 4096})
	bad, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	go func() {
		for i := 0; i < 100; i++ {
			if _, err := bad.Write([]byte(`{"id":1,"method":5}{"x":\xff\xfe}{{{`)); err != nil {
				return
			}
		}
	}()
	const n = 1500
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			fmt.Fprintf(c, `{"id":%d,"jsonrpc":"2.0","method":"E_MANY","params":{"i":%d}}`, i, i)
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			obj, err := stream.ReadObject(bufio.NewReader(c), nil, 1024)
			if err != nil || !strings.Contains(string(obj), fmt.Sprintf(`,"id":%d}`, i)) || !strings.Contains(string(obj), `"result"`) {
				errs <- fmt.Errorf("connection %d: %s %v", i, obj, err)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	evqtest.WaitStored(t, l, "E_MANY", n)
}

// pickyRaiser refuses any batch holding an event named E_BAD.
type pickyRaiser struct{ stored []string }

func (p *pickyRaiser) RaiseBatch(ctx context.Context, evs []*evq.Event) error {
	for _, ev := range evs {
		if ev.Name == "E_BAD" {
			return fmt.Errorf("refused %s", ev.Name)
		}
	}
	for _, ev := range evs {
		p.stored = append(p.stored, ev.Name)
	}
	return nil
}

func TestStoreEach(t *testing.T) {
	p := &pickyRaiser{}
	failed := map[*evq.Event]error{{Name: "stale"}: nil}
	evs := []*evq.Event{{Name: "E_A"}, {Name: "E_BAD"}, {Name: "E_B"}}
	stream.StoreEach(context.Background(), p, evs, failed)
	if len(failed) != 1 || failed[evs[1]] == nil || fmt.Sprint(p.stored) != "[E_A E_B]" {
		t.Fatalf("failed %v, stored %v: one bad event must fail alone", failed, p.stored)
	}
	stream.StoreEach(context.Background(), p, evs[:1], failed)
	if len(failed) != 0 {
		t.Fatalf("a good batch left failures %v", failed)
	}
}
