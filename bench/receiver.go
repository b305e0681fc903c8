package bench

import (
	"bufio"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"github.com/evq/evq/transports/stream"
)

// ackReceiver is a fast reliable JSON-RPC subscriber: it counts what it
// reads and acknowledges every request, batching replies into one write when
// several requests arrived together, as a well-built receiver would.
type ackReceiver struct {
	ln       net.Listener
	received atomic.Int64
	notify   chan struct{} // receives a value when received reaches target
	target   atomic.Int64
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

func newAckReceiver() (*ackReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &ackReceiver{ln: ln, notify: make(chan struct{}, 1)}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.conns = append(r.conns, c)
			r.mu.Unlock()
			r.wg.Add(1)
			go r.serve(c)
		}
	}()
	return r, nil
}

func (r *ackReceiver) socket() string { return "tcp:" + r.ln.Addr().String() }

func (r *ackReceiver) serve(c net.Conn) {
	defer r.wg.Done()
	defer c.Close()
	br := bufio.NewReaderSize(c, 64<<10)
	bw := bufio.NewWriterSize(c, 64<<10)
	var buf []byte
	for {
		obj, err := stream.ReadObject(br, buf, 1<<20)
		if err != nil {
			return
		}
		buf = obj
		req, err := stream.ParseReply(obj)
		if err != nil {
			return
		}
		if req.HasID {
			fmt.Fprintf(bw, `{"jsonrpc":"2.0","result":"OK","id":%d}`, req.ID)
		}
		if n := r.received.Add(1); n == r.target.Load() {
			select {
			case r.notify <- struct{}{}:
			default:
			}
		}
		if br.Buffered() == 0 {
			if bw.Flush() != nil {
				return
			}
		}
	}
}

func (r *ackReceiver) close() {
	r.ln.Close()
	r.mu.Lock()
	for _, c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}
