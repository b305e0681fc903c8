// Package datagram is the transport of OpenSIPS's event_datagram module:
// sockets udp:host:port and unix:/path (a unix datagram socket).
//
// Each event is one datagram holding the JSON-RPC notification that the
// stream transport writes, byte for byte. A datagram carries at most 65457
// bytes; a larger event is a permanent error, parked in the dead letters at
// once. No acknowledgement exists: an event counts as delivered when it is
// sent. A udp receiver that is down is noticed only when the kernel reports
// the ICMP error on a later send, so prefer tcp: where loss matters; a unix
// socket path that does not exist, or whose receiver is gone, fails at once
// and is retried.
package datagram

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/transports/stream"
)

var _ evq.Transport = (*Transport)(nil)

// MaxPayload is the largest datagram OpenSIPS's event_datagram sends, and so
// the largest event this transport delivers.
const MaxPayload = 65457

// Transport sends events to one udp: or unix: socket.
type Transport struct {
	sock    evq.Socket
	network string // udp or unixgram
	addr    string
	msg     stream.Message
	timeout time.Duration
	conn    net.Conn
	buf     []byte
}

// New returns a Transport for sock (scheme udp or unix). It does not
// connect until the first Send.
func New(sock evq.Socket, opts evq.Options) (*Transport, error) {
	t := &Transport{sock: sock, msg: stream.Message{EventParam: opts.EventParam}, timeout: opts.TimeoutOrDefault()}
	switch sock.Scheme {
	case "udp":
		t.network, t.addr = "udp", sock.Addr()
	case "unix":
		t.network, t.addr = "unixgram", sock.Path
	default:
		return nil, fmt.Errorf("datagram transport: %w: scheme %q", evq.ErrInvalidSocket, sock.Scheme)
	}
	return t, nil
}

// Send sends one datagram per event, in order. It stops at the first event
// that cannot be sent; one too large for a datagram is a permanent error.
func (t *Transport) Send(ctx context.Context, events []*evq.Event) (int, error) {
	for i, ev := range events {
		t.buf = t.msg.Append(t.buf[:0], ev)
		if len(t.buf) > MaxPayload {
			return i, evq.Permanent(fmt.Errorf("event %d (%s) is %d bytes as JSON-RPC; a datagram to %s holds at most %d",
				ev.Seq, ev.Name, len(t.buf), t.sock, MaxPayload))
		}
		if t.conn == nil {
			var d net.Dialer
			dctx, cancel := context.WithTimeout(ctx, t.timeout)
			conn, err := d.DialContext(dctx, t.network, t.addr)
			cancel()
			if err != nil {
				return i, fmt.Errorf("connect %s: %w", t.sock, err)
			}
			t.conn = conn
		}
		t.conn.SetWriteDeadline(time.Now().Add(t.timeout))
		if _, err := t.conn.Write(t.buf); err != nil {
			t.conn.Close()
			t.conn = nil
			return i, fmt.Errorf("send to %s: %w", t.sock, err)
		}
	}
	return len(events), nil
}

// Close closes the socket.
func (t *Transport) Close() error {
	if t.conn == nil {
		return nil
	}
	err := t.conn.Close()
	t.conn = nil
	return err
}
