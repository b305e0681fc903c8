package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/api"
	"github.com/evq/evq/delivery"
	"github.com/evq/evq/queue"
	"github.com/evq/evq/transports"
	"github.com/evq/evq/transports/datagram"
	"github.com/evq/evq/transports/flatstore"
	"github.com/evq/evq/transports/stream"
	"github.com/evq/evq/transports/xmlrpc"
)

// shutdownTimeout bounds a graceful stop: open requests and the batches
// being delivered get this long before they are cut.
const shutdownTimeout = 10 * time.Second

func runServe(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	configPath := fs.String("config", "", "configuration file (JSON)")
	data := fs.String("data", "", "data directory (default ./evq-data)")
	httpAddr := fs.String("http", "", "HTTP API address (default 127.0.0.1:8055)")
	token := fs.String("token", "", "bearer token for the HTTP API (required beyond loopback)")
	logFormat := fs.String("log-format", "", "log format: text or json")
	logLevel := fs.String("log-level", "", "log level: debug, info, warn, error")
	var listen stringsFlag
	fs.Var(&listen, "listen", "take events from OpenSIPS on this socket: tcp:HOST:PORT, udp:HOST:PORT, unix:/PATH or xmlrpc:HOST:PORT (repeatable)")
	listenEventParam := fs.String("listen-event-param", "", "the param holding the event name in ingested events (OpenSIPS event_param)")
	if _, err := parseInterleaved(fs, args); err != nil {
		return err
	}
	cfg := defaultConfig()
	if *configPath != "" {
		if err := loadConfig(*configPath, &cfg); err != nil {
			return err
		}
	}
	for flagVal, field := range map[*string]*string{data: &cfg.Data, httpAddr: &cfg.HTTP, token: &cfg.Token, logFormat: &cfg.LogFormat, logLevel: &cfg.LogLevel} {
		if *flagVal != "" {
			*field = *flagVal
		}
	}
	cfg.Listen = append(cfg.Listen, listen...)
	if *listenEventParam != "" {
		cfg.ListenEventParam = *listenEventParam
	}
	logger, err := newLogger(cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return err
	}
	if !loopback(cfg.HTTP) && cfg.Token == "" {
		return fmt.Errorf("refusing to serve the API on %s without a token: give --token, or listen on 127.0.0.1", cfg.HTTP)
	}

	// A write past a file-size limit must fail with EFBIG, which the log
	// reports as storage full, rather than kill evq with SIGXFSZ.
	signal.Ignore(syscall.SIGXFSZ)

	commits := api.NewCommitMetrics()
	lopts := cfg.logOptions()
	lopts.Logger = logger
	lopts.CommitFunc = commits.Observe
	path := filepath.Join(cfg.Data, "evq.db")
	if err := queue.CheckStartup(path); err != nil {
		return fmt.Errorf("refusing to start on a damaged store: %w\nkeep a copy of %s, run \"evq check --data %s\" for a full report, then restore a backup or start with a new --data directory", err, path, cfg.Data)
	}
	log, err := queue.Open(path, lopts)
	if err != nil {
		return err
	}
	engine := delivery.New(log, &delivery.Options{NewTransportFunc: transports.New, Logger: logger,
		KeepExpired: time.Duration(cfg.Retention.MaxAge)}) // an expired subscriber's cursor lives as long as events do
	if err := engine.Start(); err != nil {
		log.Close()
		return err
	}
	ingest := api.NewIngestMetrics()
	listeners, err := startListeners(cfg.Listen, engine, cfg.ListenEventParam, logger, ingest)
	if err != nil {
		engine.Close(context.Background())
		log.Close()
		return err
	}
	srv := api.New(engine, log, &api.Options{Token: cfg.Token, Logger: logger, Defaults: cfg.Defaults.options(), Commits: commits, Ingest: ingest})
	ln, err := net.Listen("tcp", cfg.HTTP)
	if err != nil {
		closeListeners(listeners, logger)
		engine.Close(context.Background())
		log.Close()
		return fmt.Errorf("listen on %s: %w (is another evq running? use --http to pick another address)", cfg.HTTP, err)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	logger.Info("evq serving", "http", ln.Addr().String(), "data", cfg.Data, "last_seq", log.LastSeq(),
		"subscriptions", len(engine.Subscriptions()))

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sig)
	var serveErr error
wait:
	for {
		select {
		case s := <-sig:
			if s == syscall.SIGHUP {
				flatstore.Reopen() // logrotate: let rotated files go
				logger.Info("SIGHUP: flatstore files will be reopened")
				continue
			}
			logger.Info("shutting down", "signal", s.String())
			break wait
		case serveErr = <-served:
			logger.Error("HTTP server stopped", "err", serveErr)
			break wait
		}
	}

	// Stop accepting, let open requests finish (their raises commit), stop
	// the workers after their current batch, then flush cursors and close.
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	closeListeners(listeners, logger) // events already read are stored and answered first
	srv.Stop()
	if err := hs.Shutdown(ctx); err != nil {
		logger.Warn("HTTP shutdown cut open requests", "err", err)
	}
	if err := engine.Close(ctx); err != nil {
		logger.Warn("delivery shutdown cut in-flight batches", "err", err)
	}
	if err := log.Close(); err != nil {
		return err
	}
	logger.Info("evq stopped", "last_seq", log.LastSeq())
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
}

type closer interface{ Close() error }

// startListeners opens the ingest sockets.
func startListeners(sockets []string, engine *delivery.Engine, eventParam string, logger *slog.Logger, m *api.IngestMetrics) ([]closer, error) {
	var out []closer
	for _, s := range sockets {
		if hp, ok := strings.CutPrefix(s, "xmlrpc:"); ok && strings.Count(hp, ":") == 1 {
			s += ":evq" // a listener has no method: the socket syntax wants one
		}
		sock, err := evq.ParseSocket(s)
		if err != nil {
			closeListeners(out, logger)
			return nil, fmt.Errorf("--listen: %w", err)
		}
		var l closer
		var counts func() api.IngestCounts
		switch sock.Scheme {
		case "tcp", "jsonrpc":
			var sl *stream.Listener
			sl, err = stream.Listen(sock.Addr(), engine, &stream.ListenerOptions{EventParam: eventParam, Logger: logger, ObserveFunc: m.ObserveReply})
			if err == nil {
				l, counts = sl, func() api.IngestCounts {
					st := sl.Stats()
					return api.IngestCounts{Accepted: st.Accepted.Load(), Rejected: st.Rejected.Load(), StoreFailed: st.StoreFailed.Load(),
						Refused: st.Refused.Load(), TimedOut: st.TimedOut.Load(), ParseErrors: st.ParseErrors.Load(),
						InvalidRequests: st.InvalidRequests.Load(), InvalidParams: st.InvalidParams.Load(), Oversize: st.Oversize.Load()}
				}
			}
		case "udp", "unix":
			var dl *datagram.Listener
			dl, err = datagram.Listen(s, engine, eventParam, logger)
			if err == nil {
				l, counts = dl, func() api.IngestCounts {
					st := dl.Stats()
					return api.IngestCounts{Accepted: st.Accepted.Load(), Rejected: st.Rejected.Load(), StoreFailed: st.StoreFailed.Load()}
				}
			}
		case "xmlrpc":
			var xl *xmlrpc.Listener
			xl, err = xmlrpc.Listen(sock.Addr(), engine, logger)
			if err == nil {
				l, counts = xl, func() api.IngestCounts {
					st := xl.Stats()
					return api.IngestCounts{Accepted: st.Accepted.Load(), Rejected: st.Rejected.Load(), StoreFailed: st.StoreFailed.Load()}
				}
			}
		default:
			err = fmt.Errorf("--listen %q: evq takes events on tcp:, udp:, unix: and xmlrpc: sockets", s)
		}
		if err != nil {
			closeListeners(out, logger)
			return nil, err
		}
		logger.Info("taking events from OpenSIPS", "listen", s)
		m.Sources = append(m.Sources, api.IngestSource{Name: s, Counts: counts})
		out = append(out, l)
	}
	return out, nil
}

func closeListeners(ls []closer, logger *slog.Logger) {
	for _, l := range ls {
		if err := l.Close(); err != nil {
			logger.Warn("closing a listener", "err", err)
		}
	}
}

func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func newLogger(format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text", "":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}

func runCheck(args []string) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	data := fs.String("data", "./evq-data", "data directory of a stopped evq")
	if _, err := parseInterleaved(fs, args); err != nil {
		return err
	}
	path := filepath.Join(*data, "evq.db")
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("no store at %s: %w", path, err)
	}
	r, err := queue.CheckFile(path)
	fmt.Printf("store:          %s\nevents:         %d in %d names\nlast seq:       %d\nsubscriptions:  %d\ndead letters:   %d\n",
		path, r.Events, r.Names, r.LastSeq, r.Subscriptions, r.DeadLetters)
	if r.WALEvents > 0 {
		fmt.Printf("in the WAL:     %d events after seq %d, written into the store at the next start\n", r.WALEvents, r.LastSeq)
	}
	for _, p := range r.Problems {
		fmt.Printf("PROBLEM: %s\n", p)
	}
	if err != nil {
		return fmt.Errorf("%w\nthe store is damaged: keep a copy of %s, then restore from a backup or start with a new data directory", err, path)
	}
	fmt.Println("ok")
	return nil
}
