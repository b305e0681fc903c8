package evqtest

import (
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// DatagramReceiver is a real udp or unix datagram subscriber that records
// every datagram it receives.
type DatagramReceiver struct {
	tb      testing.TB
	network string // udp or unixgram
	addr    string

	mu   sync.Mutex
	conn net.PacketConn
	got  [][]byte
	wg   sync.WaitGroup
}

// NewDatagramReceiver listens on 127.0.0.1:0 (network "udp") or on a socket
// in tb.TempDir() (network "unixgram"). It stops at cleanup.
func NewDatagramReceiver(tb testing.TB, network string) *DatagramReceiver {
	tb.Helper()
	r := &DatagramReceiver{tb: tb, network: network, addr: "127.0.0.1:0"}
	if network == "unixgram" {
		r.addr = filepath.Join(tb.TempDir(), "evq.sock")
	}
	r.Restart()
	tb.Cleanup(r.Stop)
	return r
}

// Socket returns the receiver's udp: or unix: socket string.
func (r *DatagramReceiver) Socket() string {
	if r.network == "unixgram" {
		return "unix:" + r.addr
	}
	return "udp:" + r.addr
}

// Restart listens again on the same address after Stop.
func (r *DatagramReceiver) Restart() {
	r.tb.Helper()
	conn, err := net.ListenPacket(r.network, r.addr)
	if err != nil {
		r.tb.Fatalf("datagram receiver on %s: %v", r.addr, err)
	}
	r.addr = conn.LocalAddr().String()
	r.mu.Lock()
	r.conn = conn
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		buf := make([]byte, 1<<17)
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			r.got = append(r.got, append([]byte(nil), buf[:n]...))
			r.mu.Unlock()
		}
	}()
}

// Stop closes the socket (and removes a unix socket file): the subscriber is down.
func (r *DatagramReceiver) Stop() {
	r.mu.Lock()
	conn := r.conn
	r.conn = nil
	r.mu.Unlock()
	if conn != nil {
		conn.Close()
		if r.network == "unixgram" {
			os.Remove(r.addr)
		}
	}
	r.wg.Wait()
}

// Received returns the datagrams received so far.
func (r *DatagramReceiver) Received() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.got...)
}

// WaitFor waits until at least n datagrams arrived and returns them.
func (r *DatagramReceiver) WaitFor(n int, timeout time.Duration) [][]byte {
	r.tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := r.Received()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			r.tb.Fatalf("datagram receiver got %d, want %d, within %s", len(got), n, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}
