// Package rabbitmq is the transport of OpenSIPS's event_rabbitmq module:
// socket rabbitmq:[user[:pass]@]host[:port]/[exchange?]routing_key
// (guest/guest, port 5672 and the default exchange when omitted).
//
// Each event is published as the JSON-RPC notification the stream transport
// writes, with content type application/json and persistent delivery mode.
// In reliable mode the channel is in confirm mode and messages are published
// mandatory: an event counts as delivered only when the broker confirms it
// and did not return it as unroutable. After any failure the connection is
// dropped and made again on the next send, so a broker restart costs
// retries, not events.
package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/evq/evq"
	"github.com/evq/evq/transports/stream"
)

var _ evq.Transport = (*Transport)(nil)

// ErrReturned means the broker could not route a mandatory message.
var ErrReturned = errors.New("returned by the broker")

// ErrNacked means the broker refused a message in confirm mode.
var ErrNacked = errors.New("nacked by the broker")

// Transport publishes events to one rabbitmq: socket.
type Transport struct {
	sock     evq.Socket
	url      string
	msg      stream.Message
	reliable bool
	timeout  time.Duration

	conn    *amqp.Connection
	ch      *amqp.Channel
	returns chan amqp.Return
	buf     []byte
	dcs     []*amqp.DeferredConfirmation
}

// New returns a Transport for sock (scheme rabbitmq). It does not connect
// until the first Send.
func New(sock evq.Socket, opts evq.Options) (*Transport, error) {
	if sock.Scheme != "rabbitmq" {
		return nil, fmt.Errorf("rabbitmq transport: %w: scheme %q", evq.ErrInvalidSocket, sock.Scheme)
	}
	uri := amqp.URI{Scheme: "amqp", Host: sock.Host, Port: sock.Port, Username: sock.User, Password: sock.Password, Vhost: "/"}
	return &Transport{sock: sock, url: uri.String(), msg: stream.Message{EventParam: opts.EventParam},
		reliable: opts.Reliable, timeout: opts.TimeoutOrDefault()}, nil
}

func (t *Transport) connect() error {
	conn, err := amqp.DialConfig(t.url, amqp.Config{Dial: amqp.DefaultDial(t.timeout), Heartbeat: 10 * time.Second})
	if err != nil {
		return fmt.Errorf("connect %s:%d: %w", t.sock.Host, t.sock.Port, err)
	}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		return fmt.Errorf("open a channel on %s:%d: %w", t.sock.Host, t.sock.Port, err)
	}
	if t.reliable {
		if err := ch.Confirm(false); err != nil {
			conn.Close()
			return fmt.Errorf("confirm mode on %s:%d: %w", t.sock.Host, t.sock.Port, err)
		}
		t.returns = ch.NotifyReturn(make(chan amqp.Return, 4096))
	}
	t.conn, t.ch = conn, ch
	return nil
}

// Send publishes events in order; in reliable mode it waits for their
// confirms and reports how many leading events were confirmed and routed.
func (t *Transport) Send(ctx context.Context, events []*evq.Event) (int, error) {
	if t.conn != nil && (t.conn.IsClosed() || t.ch.IsClosed()) {
		t.Close()
	}
	if t.conn == nil {
		if err := t.connect(); err != nil {
			return 0, err
		}
	}
	// Bodies are cut from one buffer, each left intact until its publish.
	t.buf = t.buf[:0]
	ends := make([]int, len(events))
	for i, ev := range events {
		t.buf = t.msg.Append(t.buf, ev)
		ends[i] = len(t.buf)
	}
	t.dcs = t.dcs[:0]
	start := 0
	for i, ev := range events {
		pub := amqp.Publishing{
			ContentType:  "application/json",
			DeliveryMode: amqp.Persistent,
			MessageId:    strconv.FormatUint(ev.Seq, 10),
			Timestamp:    ev.Time,
			Body:         t.buf[start:ends[i]],
		}
		start = ends[i]
		dc, err := t.ch.PublishWithDeferredConfirmWithContext(ctx, t.sock.Exchange, t.sock.RoutingKey, t.reliable, false, pub)
		if err != nil {
			t.Close()
			if !t.reliable {
				return i, fmt.Errorf("publish to %s: %w", t.sock, err)
			}
			return t.confirmed(ctx, events[:i], fmt.Errorf("publish to %s: %w", t.sock, err))
		}
		t.dcs = append(t.dcs, dc)
	}
	if !t.reliable {
		return len(events), nil
	}
	return t.confirmed(ctx, events, nil)
}

// confirmed waits for the confirms of the published events and returns how
// many leading ones were acked and not returned; cause is the error to
// report if all of them were.
func (t *Transport) confirmed(ctx context.Context, published []*evq.Event, cause error) (int, error) {
	wctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	n := 0
	var err error
	for i, dc := range t.dcs[:len(published)] {
		ack, werr := dc.WaitContext(wctx)
		if werr != nil {
			err = fmt.Errorf("no confirm from %s within %s: %w", t.sock, t.timeout, werr)
			t.Close()
			break
		}
		if !ack {
			err = fmt.Errorf("event %d: %w (%s)", published[i].Seq, ErrNacked, t.sock)
			break
		}
		n = i + 1
	}
	// A return arrives before the ack of its message: every return for the
	// published events is in the channel by now.
	for t.returns != nil {
		select {
		case r := <-t.returns:
			for i := 0; i < n; i++ {
				if strconv.FormatUint(published[i].Seq, 10) == r.MessageId {
					n = i
					err = fmt.Errorf("event %d: %w: %d %s (exchange %q, routing key %q)", published[i].Seq, ErrReturned,
						r.ReplyCode, r.ReplyText, r.Exchange, r.RoutingKey)
					break
				}
			}
			continue
		default:
		}
		break
	}
	if err == nil {
		err = cause // nil when every event was confirmed and routed
	}
	return n, err
}

// Close closes the connection.
func (t *Transport) Close() error {
	if t.conn == nil {
		return nil
	}
	err := t.conn.Close()
	t.conn, t.ch, t.returns = nil, nil, nil
	if errors.Is(err, amqp.ErrClosed) {
		err = nil
	}
	return err
}
