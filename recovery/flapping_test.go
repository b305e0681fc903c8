package recovery_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/delivery"
	"github.com/evq/evq/internal/evqtest"
	"github.com/evq/evq/transports"
	"github.com/evq/evq/transports/stream"
)

// flapper is a reliable JSON-RPC subscriber that cycles through the ways a
// real one fails: it answers, stalls (reads, never answers), resets its
// connections, and refuses new ones.
type flapper struct {
	t    *testing.T
	addr string
	mode atomic.Int32 // 0 answer, 1 stall, 2 reset, 3 refuse
	mu   sync.Mutex
	ln   net.Listener
	conn map[net.Conn]bool
	// What arrived, by seq, in arrays sized up front so that the test's own
	// records do not show up as heap growth.
	got   []bool
	at    []time.Time
	count int
	wg    sync.WaitGroup
}

func newFlapper(t *testing.T, capacity int) *flapper {
	f := &flapper{t: t, addr: evqtest.FreeAddr(t), conn: make(map[net.Conn]bool),
		got: make([]bool, capacity+1), at: make([]time.Time, capacity+1)}
	f.listen()
	return f
}

func (f *flapper) listen() {
	ln, err := net.Listen("tcp", f.addr)
	for i := 0; err != nil && i < 100; i++ {
		time.Sleep(10 * time.Millisecond)
		ln, err = net.Listen("tcp", f.addr)
	}
	if err != nil {
		f.t.Fatal(err)
	}
	f.mu.Lock()
	f.ln = ln
	f.mu.Unlock()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conn[c] = true
			f.mu.Unlock()
			f.wg.Add(1)
			go f.serve(c)
		}
	}()
}

func (f *flapper) serve(c net.Conn) {
	defer f.wg.Done()
	defer func() { f.mu.Lock(); delete(f.conn, c); f.mu.Unlock(); c.Close() }()
	br := bufio.NewReader(c)
	for {
		obj, err := stream.ReadObject(br, nil, 1<<20)
		if err != nil {
			return
		}
		req, err := stream.ParseReply(obj)
		if err != nil || !req.HasID || f.mode.Load() != 0 {
			continue // stalled: read, never answer
		}
		f.mu.Lock()
		if req.ID < uint64(len(f.got)) && !f.got[req.ID] {
			f.got[req.ID], f.at[req.ID] = true, time.Now()
			f.count++
		}
		f.mu.Unlock()
		if _, err := fmt.Fprintf(c, `{"jsonrpc":"2.0","result":"OK","id":%d}`, req.ID); err != nil {
			return
		}
	}
}

// setMode switches to mode m, resetting or refusing as it says.
func (f *flapper) setMode(m int32) {
	f.mu.Lock()
	if f.ln == nil && m != 3 {
		f.mu.Unlock()
		f.listen()
		f.mu.Lock()
	}
	switch m {
	case 2: // reset every connection: RST, not FIN
		for c := range f.conn {
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	case 3: // refuse: nobody listens
		for c := range f.conn {
			c.Close()
		}
		if f.ln != nil {
			f.ln.Close()
			f.ln = nil
		}
	}
	f.mode.Store(m)
	f.mu.Unlock()
}

func (f *flapper) stop() {
	f.setMode(3)
	f.wg.Wait()
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func TestFlappingSubscriber(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for several seconds")
	}
	run := 8 * time.Second
	if v := os.Getenv("EVQ_FLAP_SECONDS"); v != "" {
		var s int
		fmt.Sscan(v, &s)
		run = time.Duration(s) * time.Second
	}
	l := evqtest.MustOpenLog(t, nil)
	e := delivery.New(l, &delivery.Options{NewTransportFunc: transports.New, RetryMax: 200 * time.Millisecond})
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	capacity := int(run/time.Millisecond) + 1000 // at most one event per millisecond
	flap := newFlapper(t, capacity)
	defer flap.stop()
	healthy := newFlapper(t, capacity) // never flaps
	defer healthy.stop()
	ctx := context.Background()
	for _, s := range []string{"tcp:" + flap.addr, "tcp:" + healthy.addr} {
		if _, err := e.Subscribe(ctx, delivery.SubscribeRequest{Event: "E_F", Socket: s, Options: evq.Options{Reliable: true, MaxInflight: 16, Timeout: 100 * time.Millisecond}}); err != nil {
			t.Fatal(err)
		}
	}

	// Raise at a steady 1000 events/s and flap the subscriber every 250 ms.
	heaps := make([]uint64, 0, capacity/1000+1)
	raised := make([]time.Time, 0, capacity)
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for i := 0; time.Since(start) < run; i++ {
		<-tick.C
		if err := e.Raise(ctx, &evq.Event{Name: "E_F", Named: true, Params: []evq.Param{{Name: "i", Value: evq.Int(int64(i))}}}); err != nil {
			t.Fatal(err)
		}
		raised = append(raised, time.Now())
		if i%250 == 0 {
			flap.setMode(int32((i / 250) % 4))
		}
		if i%1000 == 999 {
			heaps = append(heaps, heapInUse())
		}
	}
	flap.setMode(0) // it finally behaves
	n := len(raised)

	// Both get everything: the healthy one at once, the flapping one once
	// it answers again. Event i has seq i+1.
	for _, f := range []*flapper{healthy, flap} {
		deadline := time.Now().Add(time.Minute)
		for {
			f.mu.Lock()
			got := f.count
			f.mu.Unlock()
			if got >= n {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("subscriber %s has %d of %d events a minute after the load", f.addr, got, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Memory does not grow with the time spent flapping.
	first, last := heaps[1], heaps[len(heaps)-1]
	if last > first*3/2+8<<20 {
		t.Errorf("heap in use grew from %d to %d bytes while a subscriber flapped", first, last)
	}
	// How long the healthy subscriber waited for its events: reported, and
	// bounded only to show it was never held up behind the flapping one.
	lat := make([]time.Duration, n)
	healthy.mu.Lock()
	for i := range n {
		lat[i] = healthy.at[i+1].Sub(raised[i])
	}
	healthy.mu.Unlock()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if worst := lat[len(lat)-1]; worst > 5*time.Second {
		t.Errorf("the healthy subscriber waited %s for an event", worst)
	}
	sort.Slice(heaps, func(i, j int) bool { return heaps[i] < heaps[j] })
	t.Logf("%d events in %s with a subscriber flapping every 250 ms: all delivered to both; heap in use %d..%d KiB; healthy subscriber latency p50 %s, p99 %s, max %s",
		n, run, heaps[0]>>10, heaps[len(heaps)-1]>>10, lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1])
}
