package load

import (
	"bufio"
	"fmt"
	"net"
	"strconv"
	"sync"

	"github.com/evq/evq/transports/stream"
)

// jsonrpcClients publish as OpenSIPS's event_stream does in reliable_mode:
// its one sending process keeps one connection per destination and writes
// each event as a JSON-RPC request as soon as it is raised, one send per
// request, with any number awaiting their replies, which it matches by id.
// Publishers share conns such connections (round robin); each publisher
// still waits for its own reply before it raises again.
type jsonrpcClients struct {
	addr, event string
	conns       int // 0 means 1, as one OpenSIPS has towards one evq

	mu   sync.Mutex
	pool []*rpcConn
	next int
}

// rpcConn is one connection: requests are written whole under wmu, and a
// reader goroutine hands each reply to the publisher waiting on its id.
type rpcConn struct {
	c   net.Conn
	wmu sync.Mutex

	mu      sync.Mutex
	id      uint64
	waiting map[uint64]chan error
	err     error // why the reader stopped; no new requests once set
	done    chan struct{}
}

func (j *jsonrpcClients) conn() (*rpcConn, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.pool) < max(j.conns, 1) {
		c, err := net.Dial("tcp", j.addr)
		if err != nil {
			return nil, err
		}
		rc := &rpcConn{c: c, waiting: make(map[uint64]chan error), done: make(chan struct{})}
		go rc.readReplies()
		j.pool = append(j.pool, rc)
		return rc, nil
	}
	rc := j.pool[j.next%len(j.pool)]
	j.next++
	return rc, nil
}

func (j *jsonrpcClients) publisher() (func([]byte) error, error) {
	rc, err := j.conn()
	if err != nil {
		return nil, err
	}
	reply := make(chan error, 1)
	var req []byte
	return func(p []byte) error {
		rc.mu.Lock()
		if rc.err != nil {
			rc.mu.Unlock()
			return rc.err
		}
		rc.id++
		id := rc.id
		rc.waiting[id] = reply
		rc.mu.Unlock()

		req = append(req[:0], `{"jsonrpc":"2.0","method":"`...)
		req = append(req, j.event...)
		req = append(req, `","params":{"p":"`...)
		req = append(req, p...)
		req = append(req, `"},"id":`...)
		req = strconv.AppendUint(req, id, 10)
		req = append(req, '}')
		rc.wmu.Lock()
		_, err := rc.c.Write(req)
		rc.wmu.Unlock()
		if err != nil {
			// The reader fails every waiter once the connection breaks;
			// take this publisher's answer from there, or drop its entry.
			rc.mu.Lock()
			_, still := rc.waiting[id]
			delete(rc.waiting, id)
			rc.mu.Unlock()
			if still {
				return err
			}
		}
		return <-reply
	}, nil
}

// readReplies answers waiting publishers until the connection ends, then
// fails the ones still waiting.
func (rc *rpcConn) readReplies() {
	defer close(rc.done)
	br := bufio.NewReaderSize(rc.c, 64<<10)
	var buf []byte
	var err error
	for err == nil {
		var obj []byte
		if obj, err = stream.ReadObject(br, buf, 1<<20); err != nil {
			break
		}
		buf = obj
		rep, perr := stream.ParseReply(obj)
		if perr != nil || !rep.HasID {
			err = fmt.Errorf("evq sent %q, not a reply to a request", obj)
			break
		}
		rc.mu.Lock()
		ch, ok := rc.waiting[rep.ID]
		delete(rc.waiting, rep.ID)
		rc.mu.Unlock()
		switch {
		case !ok:
			err = fmt.Errorf("evq answered request %d, which is not waiting", rep.ID)
		case rep.HasError:
			ch <- fmt.Errorf("evq answered %s", rep.Error)
		default:
			ch <- nil
		}
	}
	rc.mu.Lock()
	rc.err = fmt.Errorf("ingest connection: %w", err)
	for id, ch := range rc.waiting {
		ch <- rc.err
		delete(rc.waiting, id)
	}
	rc.mu.Unlock()
}

func (j *jsonrpcClients) close() {
	j.mu.Lock()
	pool := j.pool
	j.pool = nil
	j.mu.Unlock()
	for _, rc := range pool {
		rc.c.Close()
		<-rc.done
	}
}
