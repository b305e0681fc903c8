package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"text/tabwriter"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/bench/load"
)

// runBench is `evq bench`: a load generator against a running evq (its HTTP
// API) or an embedded one, with local subscribers that measure delivery.
func runBench(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	c := newClient(fs)
	embedded := fs.Bool("embedded", false, "run evq in this process (a store in --data) instead of using --server")
	ingest := fs.String("ingest", "", "raise over this tcp ingest listener of the server (tcp:HOST:PORT, as given to evq serve --listen), as OpenSIPS does, instead of over HTTP")
	ingestConns := fs.Int("ingest-conns", 1, "connections the raisers share on --ingest, each with many requests in flight, as OpenSIPS's event_stream keeps one per destination")
	data := fs.String("data", "", "store directory for --embedded (default: a new temporary directory, removed after)")
	rate := fs.Int("rate", 0, "events/s to raise in all (default 0: as fast as they are acknowledged)")
	duration := fs.Duration("duration", 10*time.Second, "how long to raise")
	count := fs.Int("count", 0, "raise this many events instead of running for --duration")
	warmup := fs.Duration("warmup", 0, "raise for this long first, counting and timing nothing, before --duration or --count")
	concurrency := fs.Int("concurrency", 64, "concurrent raisers, each waiting for its acknowledgement")
	size := fs.Int("size", 256, "event payload size in bytes")
	subscribers := fs.Int("subscribers", 1, "local tcp subscribers, each receiving every event")
	reliable := fs.Bool("reliable", true, "subscribers acknowledge every event (JSON-RPC replies); false: fire and forget")
	window := fs.Int("window", 256, "requests in flight per reliable subscriber (max_inflight)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: evq bench [--embedded | --ingest tcp:HOST:PORT [--ingest-conns 1]] [--rate N] [--duration 10s] [--warmup 0s] [--concurrency 64] [--size 256] [--subscribers 1] [--reliable] [--json]")
		fs.PrintDefaults()
	}
	if _, err := parseInterleaved(fs, args); err != nil {
		return err
	}
	if *size < 32 {
		return fmt.Errorf("--size %d: want at least 32 bytes (the payload carries its send time)", *size)
	}
	opts := load.EvqOptions{Subscribers: *subscribers, Reliable: *reliable, Window: *window, IngestConns: *ingestConns}
	var sys load.System
	if *embedded {
		dir := *data
		if dir == "" {
			tmp, err := os.MkdirTemp("", "evq-bench-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			dir = tmp
		}
		e, err := load.NewEmbedded(dir, opts)
		if err != nil {
			return err
		}
		sys = e
	} else {
		addr := ""
		if *ingest != "" {
			sock, err := evq.ParseSocket(*ingest)
			if err != nil || sock.Scheme != "tcp" {
				return fmt.Errorf("--ingest %q: want the server's tcp ingest listener, tcp:HOST:PORT", *ingest)
			}
			addr = sock.Addr()
		}
		sys = load.NewRemote(*c.server, *c.token, addr, opts)
	}
	defer sys.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cfg := load.Config{Publishers: *concurrency, Rate: *rate, Duration: *duration, Count: *count, Size: *size, Warmup: *warmup}
	fmt.Fprintf(os.Stderr, "evq bench: %d raisers, %d-byte events, %d %s subscriber(s), %s\n", cfg.Publishers, cfg.Size,
		opts.Subscribers, map[bool]string{true: "reliable", false: "fire-and-forget"}[opts.Reliable], sys.Durability())
	var last load.Progress
	res, err := load.Run(ctx, sys, cfg, func(p load.Progress) {
		secs := (p.Elapsed - last.Elapsed).Seconds()
		fmt.Fprintf(os.Stderr, "%6.0fs  raised %9.0f/s  delivered %9.0f/s  lag %d\n", p.Elapsed.Seconds(),
			float64(p.Published-last.Published)/secs, float64(p.Delivered-last.Delivered)/float64(sys.Consumers())/secs, p.Lag)
		last = p
	})
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if jerr := enc.Encode(res); jerr != nil {
			return jerr
		}
	} else {
		printResult(os.Stdout, res)
	}
	return err
}

// printResult prints a run as a table.
func printResult(w io.Writer, r load.Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "\traised\tdelivered\terrors\traised/s\tdelivered/s\t\n")
	fmt.Fprintf(tw, "events\t%d\t%d\t%d\t%.0f\t%.0f\t\n", r.Published, r.Delivered, r.Errors, r.PublishPS, r.DeliverPS)
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "latency (ms)\tp50\tp90\tp99\tp99.9\tmax\t\n")
	for _, l := range []struct {
		name string
		l    load.Latency
	}{{"raise → acknowledged", r.PublishLat}, {"raise → delivered", r.EndToEnd}} {
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", l.name, l.l.P50, l.l.P90, l.l.P99, l.l.P999, l.l.Max)
	}
	tw.Flush()
	if r.FirstError != "" {
		fmt.Fprintf(w, "\nfirst error: %s\n", r.FirstError)
	}
}
