package evqtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Request is one JSON-RPC object a Receiver read.
type Request struct {
	Raw    []byte
	ID     *uint64
	Method string
	Params json.RawMessage
	At     time.Time // when it was read
}

// Receiver is a real JSON-RPC over TCP subscriber on 127.0.0.1, like the
// programs users put behind OpenSIPS's event_stream. It records every object
// it reads and answers requests (objects with an id).
type Receiver struct {
	tb   testing.TB
	addr string

	mu          sync.Mutex
	cond        *sync.Cond
	ln          net.Listener
	conns       map[net.Conn]bool
	reqs        []Request
	rejectFirst int // answer this many requests with an error first
	silent      bool
	wg          sync.WaitGroup
}

// NewReceiver starts a Receiver on 127.0.0.1:0; it stops at cleanup.
func NewReceiver(tb testing.TB) *Receiver {
	tb.Helper()
	r := &Receiver{tb: tb, conns: make(map[net.Conn]bool)}
	r.cond = sync.NewCond(&r.mu)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.serve(ln)
	tb.Cleanup(r.Stop)
	return r
}

// Addr returns host:port.
func (r *Receiver) Addr() string { return r.addr }

// Socket returns the receiver's tcp: socket string.
func (r *Receiver) Socket() string { return "tcp:" + r.addr }

// RejectFirst makes the receiver answer the next n requests with a JSON-RPC
// error instead of a result.
func (r *Receiver) RejectFirst(n int) {
	r.mu.Lock()
	r.rejectFirst = n
	r.mu.Unlock()
}

// Silent makes the receiver read requests but never answer them.
func (r *Receiver) Silent(on bool) {
	r.mu.Lock()
	r.silent = on
	r.mu.Unlock()
}

func (r *Receiver) serve(ln net.Listener) {
	r.mu.Lock()
	r.ln = ln
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.conns[c] = true
			r.mu.Unlock()
			r.wg.Add(1)
			go r.handle(c)
		}
	}()
}

func (r *Receiver) handle(c net.Conn) {
	defer r.wg.Done()
	defer func() {
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
		c.Close()
	}()
	dec := json.NewDecoder(c)
	dec.UseNumber()
	var out []byte
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return
		}
		var m struct {
			ID     json.Number     `json:"id"`
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			r.tb.Errorf("receiver: bad object %q: %v", raw, err)
			return
		}
		req := Request{Raw: bytes.Clone(raw), Method: m.Method, Params: m.Params, At: time.Now()}
		if m.ID != "" {
			id, err := strconv.ParseUint(m.ID.String(), 10, 64)
			if err != nil {
				r.tb.Errorf("receiver: bad id %q", m.ID)
				return
			}
			req.ID = &id
		}
		r.mu.Lock()
		reject := req.ID != nil && r.rejectFirst > 0
		if reject {
			r.rejectFirst--
		} else {
			r.reqs = append(r.reqs, req)
			r.cond.Broadcast()
		}
		silent := r.silent
		r.mu.Unlock()
		if req.ID == nil || silent {
			continue
		}
		out = out[:0]
		if reject {
			out = fmt.Appendf(out, `{"jsonrpc":"2.0","error":{"code":-32000,"message":"rejected by test"},"id":%d}`, *req.ID)
		} else {
			out = fmt.Appendf(out, `{"jsonrpc":"2.0","result":"OK","id":%d}`, *req.ID)
		}
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

// Stop closes the listener and every connection: the subscriber is down.
func (r *Receiver) Stop() {
	r.mu.Lock()
	if r.ln != nil {
		r.ln.Close()
		r.ln = nil
	}
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// Restart listens again on the same address after Stop.
func (r *Receiver) Restart() {
	r.tb.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", r.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond) // the port can take a moment to be free again
	}
	if err != nil {
		r.tb.Fatalf("receiver restart on %s: %v", r.addr, err)
	}
	r.serve(ln)
}

// Requests returns what the receiver has accepted so far (rejected requests
// are not included).
func (r *Receiver) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.reqs...)
}

// WaitFor waits until at least n requests were accepted and returns them.
func (r *Receiver) WaitFor(n int, timeout time.Duration) []Request {
	r.tb.Helper()
	deadline := time.Now().Add(timeout)
	t := time.AfterFunc(timeout, func() {
		r.mu.Lock()
		r.cond.Broadcast()
		r.mu.Unlock()
	})
	defer t.Stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.reqs) < n {
		if time.Now().After(deadline) {
			r.tb.Fatalf("receiver got %d requests, want %d, within %s", len(r.reqs), n, timeout)
		}
		r.cond.Wait()
	}
	return append([]Request(nil), r.reqs...)
}
