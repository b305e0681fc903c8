package xmlrpc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/evq/evq"
)

var _ evq.Transport = (*Transport)(nil)

// maxResponse bounds a response body read in reliable mode.
const maxResponse = 1 << 20

// ErrFault means the server answered with an XML-RPC fault.
var ErrFault = errors.New("xml-rpc fault")

// Transport posts events to one xmlrpc:host:port:method socket.
type Transport struct {
	sock      evq.Socket
	reliable  bool
	useStruct bool
	timeout   time.Duration
	req, body []byte
}

// New returns a Transport for sock (scheme xmlrpc).
func New(sock evq.Socket, opts evq.Options) (*Transport, error) {
	if sock.Scheme != "xmlrpc" {
		return nil, fmt.Errorf("xmlrpc transport: %w: scheme %q", evq.ErrInvalidSocket, sock.Scheme)
	}
	return &Transport{sock: sock, reliable: opts.Reliable, useStruct: opts.UseStructParam, timeout: opts.TimeoutOrDefault()}, nil
}

// Send posts each event in order on its own connection.
func (t *Transport) Send(ctx context.Context, events []*evq.Event) (int, error) {
	for i, ev := range events {
		if err := t.post(ctx, ev); err != nil {
			return i, err
		}
	}
	return len(events), nil
}

func (t *Transport) post(ctx context.Context, ev *evq.Event) error {
	t.req, t.body = AppendRequest(t.req[:0], ev, t.sock.Addr(), t.sock.Method, t.useStruct, t.body)
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	conn, err := d.DialContext(dctx, "tcp", t.sock.Addr())
	if err != nil {
		return fmt.Errorf("connect %s: %w", t.sock.Addr(), err)
	}
	defer conn.Close()
	deadline := time.Now().Add(t.timeout)
	conn.SetDeadline(deadline)
	if _, err := conn.Write(t.req); err != nil {
		return fmt.Errorf("post to %s: %w", t.sock.Addr(), err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if !t.reliable {
		// Non-reliable mode counts the event sent once written, but still
		// waits (up to the timeout) for the server to answer, so that a
		// server handling connections concurrently sees events in order.
		if err == nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
			resp.Body.Close()
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("response from %s: %w", t.sock.Addr(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("response from %s: %w", t.sock.Addr(), err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s answered HTTP %s", t.sock.Addr(), resp.Status)
	}
	return ParseResponse(body)
}

// ParseResponse checks an XML-RPC methodResponse: nil for a response with
// params, an error wrapping ErrFault for a fault, and an error for anything
// that is not a methodResponse.
func ParseResponse(body []byte) error {
	var r struct {
		XMLName xml.Name
		Params  *struct{} `xml:"params"`
		Fault   *struct {
			Value struct {
				Inner []byte `xml:",innerxml"`
			} `xml:"value"`
		} `xml:"fault"`
	}
	if err := xml.NewDecoder(bytes.NewReader(body)).Decode(&r); err != nil {
		return fmt.Errorf("response is not XML-RPC: %w", err)
	}
	if r.XMLName.Local != "methodResponse" {
		return fmt.Errorf("response is a <%s>, not a <methodResponse>", r.XMLName.Local)
	}
	if r.Fault != nil {
		inner := bytes.Join(bytes.Fields(r.Fault.Value.Inner), []byte(" "))
		if len(inner) > 300 {
			inner = inner[:300]
		}
		return fmt.Errorf("%w: %s", ErrFault, inner)
	}
	if r.Params == nil {
		return errors.New("methodResponse has neither params nor fault")
	}
	return nil
}

// Close is a no-op: each event has its own connection.
func (t *Transport) Close() error { return nil }
