package evqtest

import (
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// XMLRPCReceiver is an XML-RPC subscriber over real HTTP on 127.0.0.1 that
// answers every call with true, restartable on the same address. It can
// answer with faults or stall.
type XMLRPCReceiver struct {
	t       testing.TB
	addr    string
	mu      sync.Mutex
	got     [][]byte
	reject  int
	stalled chan struct{} // non-nil while stalled; closed to let handlers go
	srv     *http.Server
	done    chan struct{}
}

// RejectNext answers the next n calls with a fault.
func (p *XMLRPCReceiver) RejectNext(n int) { p.mu.Lock(); p.reject = n; p.mu.Unlock() }

// Stall holds every answer back while on.
func (p *XMLRPCReceiver) Stall(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on && p.stalled == nil {
		p.stalled = make(chan struct{})
	}
	if !on && p.stalled != nil {
		close(p.stalled)
		p.stalled = nil
	}
}

// NewXMLRPCReceiver starts an XMLRPCReceiver; it stops at cleanup.
func NewXMLRPCReceiver(t testing.TB) *XMLRPCReceiver {
	p := &XMLRPCReceiver{t: t, addr: "127.0.0.1:0"}
	p.Restart()
	t.Cleanup(p.Stop)
	return p
}

// Socket returns the xmlrpc: socket string, with method "handle".
func (p *XMLRPCReceiver) Socket() string { return "xmlrpc:" + p.addr + ":handle" }

// Payloads returns the bodies of the calls answered with true.
func (p *XMLRPCReceiver) Payloads() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]byte(nil), p.got...)
}

// Restart listens again on the same address after Stop.
func (p *XMLRPCReceiver) Restart() {
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		p.mu.Lock()
		stalled, reject := p.stalled, p.reject > 0
		if reject {
			p.reject--
		} else if stalled == nil {
			p.got = append(p.got, b)
		}
		p.mu.Unlock()
		if stalled != nil {
			select { // hold the answer back until unstalled or stopped
			case <-stalled:
			case <-r.Context().Done():
			}
			return
		}
		if reject {
			io.WriteString(w, `<?xml version="1.0"?><methodResponse><fault><value><struct><member><name>faultString</name><value><string>refused by test</string></value></member></struct></value></fault></methodResponse>`)
			return
		}
		io.WriteString(w, `<?xml version="1.0"?><methodResponse><params><param><value><boolean>1</boolean></value></param></params></methodResponse>`)
	})}
	p.done = make(chan struct{})
	go func(srv *http.Server, done chan struct{}) { srv.Serve(ln); close(done) }(p.srv, p.done)
}

// Stop closes the server: the subscriber is down.
func (p *XMLRPCReceiver) Stop() {
	p.Stall(false)
	if p.srv != nil {
		p.srv.Close()
		<-p.done
		p.srv = nil
	}
}
