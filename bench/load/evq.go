package load

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/delivery"
	"github.com/evq/evq/queue"
	"github.com/evq/evq/transports"
	"github.com/evq/evq/transports/stream"
)

// EvqOptions shape the evq side of a run.
type EvqOptions struct {
	Subscribers int  // local tcp subscribers, each receiving every event; 0 means 1
	Reliable    bool // subscribers acknowledge each event (JSON-RPC replies)
	Window      int  // max_inflight of reliable subscribers; 0 means 256
	Event       string
	// IngestConns is how many connections publishers share on a tcp
	// ingest; 0 means 1, as one OpenSIPS keeps to one evq.
	IngestConns int
}

func (o *EvqOptions) defaults() {
	if o.Subscribers <= 0 {
		o.Subscribers = 1
	}
	if o.Window <= 0 {
		o.Window = 256
	}
	if o.Event == "" {
		o.Event = fmt.Sprintf("E_BENCH_%d", time.Now().Unix())
	}
}

func (o *EvqOptions) options() evq.Options {
	return evq.Options{Reliable: o.Reliable, MaxInflight: o.Window}
}

// receivers starts n AckReceivers that hand every event's object to deliver.
func receivers(n int, deliver func([]byte)) ([]*AckReceiver, error) {
	var out []*AckReceiver
	for i := 0; i < n; i++ {
		r, err := NewAckReceiver(deliver)
		if err != nil {
			for _, r := range out {
				r.Close()
			}
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Embedded is evq in this process: a log in a directory, the engine, and
// publishers that call Engine.Raise, which returns after the fsync.
type Embedded struct {
	opts EvqOptions
	log  *queue.Log
	eng  *delivery.Engine
	recv []*AckReceiver
}

// NewEmbedded opens a log in dir (which should be new, or hold a store of
// evq's) and starts an engine on it.
func NewEmbedded(dir string, opts EvqOptions) (*Embedded, error) {
	opts.defaults()
	l, err := queue.Open(filepath.Join(dir, "evq.db"), nil)
	if err != nil {
		return nil, err
	}
	e := delivery.New(l, &delivery.Options{NewTransportFunc: transports.New})
	if err := e.Start(); err != nil {
		l.Close()
		return nil, err
	}
	return &Embedded{opts: opts, log: l, eng: e}, nil
}

// Name implements System.
func (s *Embedded) Name() string { return "evq" }

// Durability implements System.
func (s *Embedded) Durability() string {
	return "fdatasync of every group commit (one WAL record) before a raise returns (embedded: Go API)"
}

// Consumers implements System.
func (s *Embedded) Consumers() int { return s.opts.Subscribers }

// Start implements System: it subscribes the receivers from now on.
func (s *Embedded) Start(ctx context.Context, deliver func([]byte)) error {
	recv, err := receivers(s.opts.Subscribers, deliver)
	if err != nil {
		return err
	}
	s.recv = recv
	for _, r := range recv {
		_, err := s.eng.Subscribe(ctx, delivery.SubscribeRequest{Event: s.opts.Event, Socket: r.Socket(),
			Options: s.opts.options(), Start: delivery.Start{Kind: delivery.StartNow}})
		if err != nil {
			return err
		}
	}
	return nil
}

// Publisher implements System.
func (s *Embedded) Publisher(ctx context.Context) (func([]byte) error, error) {
	return func(p []byte) error {
		ev := &evq.Event{Name: s.opts.Event, Named: true, Params: []evq.Param{{Name: "p", Value: evq.String(string(p))}}}
		return s.eng.Raise(ctx, ev)
	}, nil
}

// Close implements System.
func (s *Embedded) Close() error {
	err := s.eng.Close(context.Background())
	for _, r := range s.recv {
		r.Close()
	}
	return errors.Join(err, s.log.Close())
}

// Remote is a running `evq serve`, reached over its HTTP API: publishers
// POST /v1/events (200 after the fsync), and the subscribers are local tcp
// receivers subscribed through the API, removed again at Close.
type Remote struct {
	url     string
	token   string
	opts    EvqOptions
	client  *http.Client
	recv    []*AckReceiver
	subs    []uint64
	clients *jsonrpcClients // publishing over a tcp ingest listener instead of HTTP
}

// NewRemote returns the evq serving its API at url. If ingest is not
// empty, it is the host:port of one of that evq's tcp ingest listeners
// (evq serve --listen tcp:…), and publishers raise there as OpenSIPS would,
// as JSON-RPC requests; the API still manages the subscriptions.
func NewRemote(url, token, ingest string, opts EvqOptions) *Remote {
	opts.defaults()
	tr := &http.Transport{MaxIdleConnsPerHost: 4096, MaxConnsPerHost: 0}
	r := &Remote{url: strings.TrimRight(url, "/"), token: token, opts: opts, client: &http.Client{Transport: tr, Timeout: time.Minute}}
	if ingest != "" {
		r.clients = &jsonrpcClients{addr: ingest, event: opts.Event, conns: opts.IngestConns}
	}
	return r
}

// Name implements System.
func (s *Remote) Name() string { return "evq" }

// Durability implements System.
func (s *Remote) Durability() string {
	if s.clients != nil {
		return "fdatasync of every group commit before the JSON-RPC reply (evq serve, tcp ingest at " + s.clients.addr + ")"
	}
	return "fdatasync of every group commit before POST /v1/events answers 200 (evq serve at " + s.url + ")"
}

// Consumers implements System.
func (s *Remote) Consumers() int { return s.opts.Subscribers }

func (s *Remote) call(ctx context.Context, method, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, s.url+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// Start implements System.
func (s *Remote) Start(ctx context.Context, deliver func([]byte)) error {
	recv, err := receivers(s.opts.Subscribers, deliver)
	if err != nil {
		return err
	}
	s.recv = recv
	for _, r := range recv {
		body, _ := json.Marshal(map[string]any{"event": s.opts.Event, "socket": r.Socket(), "reliable": s.opts.Reliable,
			"max_inflight": s.opts.Window, "start": "now"})
		var sub struct{ ID uint64 }
		if err := s.call(ctx, "POST", "/v1/subscriptions", body, &sub); err != nil {
			return err
		}
		s.subs = append(s.subs, sub.ID)
	}
	return nil
}

// Publisher implements System.
func (s *Remote) Publisher(ctx context.Context) (func([]byte) error, error) {
	if s.clients != nil {
		return s.clients.publisher()
	}
	var body []byte
	return func(p []byte) error {
		body = append(body[:0], `{"event":"`...)
		body = append(body, s.opts.Event...)
		body = append(body, `","params":{"p":"`...)
		body = append(body, p...) // ASCII without quotes or backslashes
		body = append(body, `"}}`...)
		return s.call(ctx, "POST", "/v1/events", body, nil)
	}, nil
}

// Close implements System: it unsubscribes the receivers and stops them.
func (s *Remote) Close() error {
	var errs []error
	for _, id := range s.subs {
		errs = append(errs, s.call(context.Background(), "DELETE", fmt.Sprintf("/v1/subscriptions/%d", id), nil, nil))
	}
	for _, r := range s.recv {
		r.Close()
	}
	if s.clients != nil {
		s.clients.close()
	}
	s.client.CloseIdleConnections()
	return errors.Join(errs...)
}

// Ingest is the embedded evq reached the way OpenSIPS reaches it: publishers
// send JSON-RPC requests over loopback TCP to evq's tcp ingest listener,
// sharing one connection as OpenSIPS's event_stream does (EvqOptions.IngestConns),
// and a request is answered once its event is fsynced.
// This is the like-for-like path against brokers with network clients.
type Ingest struct {
	*Embedded
	ln      *stream.Listener
	clients *jsonrpcClients
}

// NewIngest starts an embedded evq in dir with a tcp ingest listener.
func NewIngest(dir string, opts EvqOptions) (*Ingest, error) {
	e, err := NewEmbedded(dir, opts)
	if err != nil {
		return nil, err
	}
	ln, err := stream.Listen("127.0.0.1:0", e.eng, &stream.ListenerOptions{MaxConns: 8192})
	if err != nil {
		e.Close()
		return nil, err
	}
	return &Ingest{Embedded: e, ln: ln, clients: &jsonrpcClients{addr: ln.Addr().String(), event: e.opts.Event, conns: e.opts.IngestConns}}, nil
}

// Name implements System.
func (s *Ingest) Name() string { return "evq-tcp" }

// Durability implements System.
func (s *Ingest) Durability() string {
	return "fdatasync of every group commit before the JSON-RPC reply (tcp ingest, as OpenSIPS reliable_mode)"
}

// Publisher implements System.
func (s *Ingest) Publisher(ctx context.Context) (func([]byte) error, error) {
	return s.clients.publisher()
}

// Close implements System.
func (s *Ingest) Close() error {
	s.clients.close()
	return errors.Join(s.ln.Close(), s.Embedded.Close())
}
