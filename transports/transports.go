// Package transports maps a socket string to the Transport of its scheme.
// Each wire protocol lives in its own package below this one.
package transports

import (
	"errors"
	"fmt"

	"github.com/evq/evq"
	"github.com/evq/evq/transports/datagram"
	"github.com/evq/evq/transports/flatstore"
	"github.com/evq/evq/transports/rabbitmq"
	"github.com/evq/evq/transports/stream"
	"github.com/evq/evq/transports/xmlrpc"
	"github.com/evq/evq/virtual"
)

// ErrUnsupported means the socket's scheme parses but evq cannot deliver to
// it yet.
var ErrUnsupported = errors.New("transport not available in this build")

// New returns the Transport for sub's socket. It does not connect.
func New(sub evq.Subscription) (evq.Transport, error) {
	sock, err := evq.ParseSocket(sub.Socket)
	if err != nil {
		return nil, err
	}
	if sub.Parent != 0 {
		// A member lane of a PARALLEL group: its transport behind the
		// member's circuit breaker.
		lane := sub
		lane.Parent = 0
		tr, err := New(lane)
		if err != nil {
			return nil, err
		}
		return virtual.NewMember(sock, sub.Options, tr), nil
	}
	switch sock.Scheme {
	case "tcp", "jsonrpc":
		return stream.New(sock, sub.Options)
	case "udp", "unix":
		return datagram.New(sock, sub.Options)
	case "xmlrpc":
		return xmlrpc.New(sock, sub.Options)
	case "flatstore":
		return flatstore.New(sock, sub.Options)
	case "rabbitmq":
		return rabbitmq.New(sock, sub.Options)
	case "virtual":
		return virtual.New(sock, sub.Options, func(m evq.Socket) (evq.Transport, error) {
			return New(evq.Subscription{ID: sub.ID, Event: sub.Event, Socket: m.String(), Options: sub.Options})
		})
	default:
		return nil, fmt.Errorf("socket %q: %w: scheme %s: %s", sub.Socket, ErrUnsupported, sock.Scheme,
			"this build delivers over tcp:, jsonrpc:, udp:, unix:, xmlrpc:, flatstore:, rabbitmq: and virtual:FAILOVER|ROUND-ROBIN")
	}
}
