package api

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/delivery"
	"github.com/evq/evq/queue"
	"github.com/evq/evq/transports"
	"github.com/evq/evq/transports/flatstore"
	"github.com/evq/evq/transports/stream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultAddr is where the API listens unless told otherwise: loopback only.
const DefaultAddr = "127.0.0.1:8055"

// DefaultMaxBody bounds a request body.
const DefaultMaxBody = 16 << 20

// Server serves the HTTP API.
type Server struct {
	engine *delivery.Engine
	log    *queue.Log
	opts   Options
	mux    *http.ServeMux
	reg    *prometheus.Registry

	stopOnce sync.Once
	stop     chan struct{}
}

// Options configure a Server.
type Options struct {
	// Token, if set, must be sent as "Authorization: Bearer TOKEN" on every
	// request but /healthz. Required when listening beyond loopback.
	Token string
	// MaxBody bounds request bodies. 0 means 16 MiB.
	MaxBody int64
	// Logger receives request errors. nil means slog.Default().
	Logger *slog.Logger
	// Defaults are the subscription options that a request does not give:
	// the OpenSIPS modparams of the configuration file. MI event_subscribe,
	// which cannot give any, uses them all.
	Defaults evq.Options
	// NowFunc returns the current time. nil means time.Now.
	NowFunc func() time.Time
	// Commits, if set, are exported at /metrics.
	Commits *CommitMetrics
	// Ingest, if set, is exported at /metrics.
	Ingest *IngestMetrics
}

// New returns the API of engine over log.
func New(engine *delivery.Engine, log *queue.Log, opts *Options) *Server {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.NowFunc == nil {
		o.NowFunc = time.Now
	}
	s := &Server{engine: engine, log: log, opts: o, mux: http.NewServeMux(), reg: prometheus.NewRegistry(), stop: make(chan struct{})}
	s.reg.MustRegister(newCollector(engine, log), prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	if o.Commits != nil {
		s.reg.MustRegister(o.Commits.batch, o.Commits.latency)
	}
	if o.Ingest != nil {
		s.reg.MustRegister(o.Ingest)
	}
	s.routes()
	return s
}

func (s *Server) routes() {
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "last_seq": s.log.LastSeq()})
	})
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	s.mux.HandleFunc("POST /v1/events", s.raise)
	s.mux.HandleFunc("GET /v1/events", s.listEvents)
	s.mux.HandleFunc("GET /v1/events/{name}/tail", s.tail)
	s.mux.HandleFunc("POST /v1/subscriptions", s.subscribe)
	s.mux.HandleFunc("GET /v1/subscriptions", s.listSubscriptions)
	s.mux.HandleFunc("GET /v1/subscriptions/{id}", s.getSubscription)
	s.mux.HandleFunc("DELETE /v1/subscriptions/{id}", s.unsubscribe)
	s.mux.HandleFunc("POST /v1/subscriptions/{id}/replay", s.replay)
	s.mux.HandleFunc("GET /v1/subscriptions/{id}/dlq", s.listDLQ)
	s.mux.HandleFunc("DELETE /v1/subscriptions/{id}/dlq", s.purgeDLQ)
	s.mux.HandleFunc("POST /v1/subscriptions/{id}/dlq/redrive", s.redrive)
	s.mux.HandleFunc("POST /mi", s.mi)
	s.mux.HandleFunc("POST /v1/flatstore/reopen", func(w http.ResponseWriter, r *http.Request) {
		flatstore.Reopen()
		writeJSON(w, http.StatusOK, map[string]string{"status": "flatstore files will be reopened before their next write"})
	})
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.opts.Token != "" && r.URL.Path != "/healthz" {
		got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if subtle.ConstantTimeCompare([]byte(got), []byte(s.opts.Token)) != 1 {
			writeError(w, http.StatusUnauthorized, errors.New("missing or wrong token: send Authorization: Bearer TOKEN"))
			return
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxBody)
	s.mux.ServeHTTP(w, r)
}

func (s *Server) now() time.Time { return s.opts.NowFunc() }

// Stop ends long-lived responses (tail) so that an http.Server can shut
// down. It is safe to call twice.
func (s *Server) Stop() { s.stopOnce.Do(func() { close(s.stop) }) }

func (s *Server) stopping() <-chan struct{} { return s.stop }

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// statusOf maps an error to its HTTP status.
func statusOf(err error) int {
	var maxErr *http.MaxBytesError
	switch {
	case errors.Is(err, evq.ErrStorageFull):
		return http.StatusInsufficientStorage
	case errors.Is(err, delivery.ErrClosed), errors.Is(err, queue.ErrClosed):
		return http.StatusServiceUnavailable
	case errors.Is(err, evq.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, queue.ErrEventTooLarge), errors.As(err, &maxErr):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, evq.ErrInvalidEvent), errors.Is(err, evq.ErrInvalidSocket), errors.Is(err, evq.ErrInvalidOptions),
		errors.Is(err, delivery.ErrBadStart),
		errors.Is(err, stream.ErrBadParams), errors.Is(err, transports.ErrUnsupported), errors.Is(err, errBadRequest),
		errors.Is(err, delivery.ErrNotRunning):
		return http.StatusBadRequest
	default:
		return http.StatusInternalServerError
	}
}

var errBadRequest = errors.New("bad request")

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(format, args...))
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := statusOf(err)
	if code >= 500 {
		s.opts.Logger.Error("api request failed", "method", r.Method, "path", r.URL.Path, "status", code, "err", err)
	}
	writeError(w, code, err)
}

func pathID(r *http.Request) (uint64, error) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		return 0, badRequest("subscription id %q is not a number", r.PathValue("id"))
	}
	return id, nil
}
