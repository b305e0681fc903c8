package load

import (
	"bufio"
	"bytes"
	"net"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/evq/evq/transports/stream"
)

// AckReceiver is a fast reliable JSON-RPC subscriber on 127.0.0.1: it reads
// what evq sends, acknowledges every request, and batches replies into one
// write when several requests arrived together, as a well-built receiver
// would.
type AckReceiver struct {
	ln       net.Listener
	onObject func(obj []byte) // called for every object read, before its reply
	received atomic.Int64
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

// NewAckReceiver listens on a free loopback port. onObject, if not nil, is
// called from the connection's goroutine with each object read; it must not
// keep the slice.
func NewAckReceiver(onObject func(obj []byte)) (*AckReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &AckReceiver{ln: ln, onObject: onObject}
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

// Socket returns the receiver's tcp: socket string.
func (r *AckReceiver) Socket() string { return "tcp:" + r.ln.Addr().String() }

// Received returns how many objects the receiver has read.
func (r *AckReceiver) Received() int64 { return r.received.Load() }

func (r *AckReceiver) serve(c net.Conn) {
	defer r.wg.Done()
	defer c.Close()
	br := bufio.NewReaderSize(c, 64<<10)
	bw := bufio.NewWriterSize(c, 64<<10)
	var buf, reply []byte
	for {
		obj, err := stream.ReadObject(br, buf, 1<<20)
		if err != nil {
			return
		}
		buf = obj
		id, hasID := RequestID(obj)
		if !hasID {
			req, err := stream.ParseReply(obj)
			if err != nil {
				return
			}
			id, hasID = req.ID, req.HasID
		}
		if r.onObject != nil {
			r.onObject(obj)
		}
		if hasID {
			reply = append(reply[:0], `{"jsonrpc":"2.0","result":"OK","id":`...)
			reply = strconv.AppendUint(reply, id, 10)
			reply = append(reply, '}')
			bw.Write(reply)
		}
		r.received.Add(1)
		if br.Buffered() == 0 {
			if bw.Flush() != nil {
				return
			}
		}
	}
}

// Close stops the receiver and waits for its goroutines.
func (r *AckReceiver) Close() {
	r.ln.Close()
	r.mu.Lock()
	for _, c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// RequestID reads the id of a request that starts with {"id":N, as evq and
// OpenSIPS write them, or ends with "id":N}, without scanning the params:
// the first member after the opening brace, or the last before the closing
// one, is a top-level member. Anything else is left to stream.ParseReply.
func RequestID(obj []byte) (uint64, bool) {
	if id, ok := leadingID(obj); ok {
		return id, true
	}
	return trailingID(obj)
}

func leadingID(obj []byte) (uint64, bool) {
	const prefix = `{"id":`
	if !bytes.HasPrefix(obj, []byte(prefix)) {
		return 0, false
	}
	i := len(prefix)
	for i < len(obj) && obj[i] >= '0' && obj[i] <= '9' {
		i++
	}
	if i == len(prefix) || i-len(prefix) > 20 || i >= len(obj) || obj[i] != ',' && obj[i] != '}' {
		return 0, false
	}
	id, err := strconv.ParseUint(string(obj[len(prefix):i]), 10, 64)
	return id, err == nil
}

func trailingID(obj []byte) (uint64, bool) {
	end := len(obj) - 1
	if end < 0 || obj[end] != '}' {
		return 0, false
	}
	i := end
	for i > 0 && obj[i-1] >= '0' && obj[i-1] <= '9' {
		i--
	}
	if i == end || end-i > 20 || !bytes.HasSuffix(obj[:i], []byte(`"id":`)) {
		return 0, false
	}
	id, err := strconv.ParseUint(string(obj[i:end]), 10, 64)
	return id, err == nil
}
