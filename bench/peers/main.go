// Command peers runs one workload against evq and the brokers a user would
// otherwise pick, in the same run on the same machine, and reports each
// figure with the ratio evq/peer:
//
//	go run ./bench/peers -chart bench/peers.svg
//
// The workload (bench/load): publishers send 256-byte messages durably and
// wait for each acknowledgement; a consumer receives every message and
// acknowledges it. Systems:
//
//   - evq-tcp: evq in this process, published to over loopback TCP with
//     JSON-RPC requests to its tcp ingest listener (the like-for-like
//     path), delivered to a reliable tcp subscriber that acknowledges every
//     event. The publishers share one connection (-ingest-conns), as the
//     requests of OpenSIPS's event_stream do, each waiting for its reply.
//   - evq: the same, published to through the Go API (Engine.Raise).
//   - rabbitmq-quorum: the broker at -rabbitmq, a quorum queue, publisher
//     confirms, manual acks; a channel per publisher, 16 to a connection.
//   - jetstream: the server at -nats, file storage with its default periodic
//     fsync; the publishers share one connection, as nats.go's do.
//   - jetstream-sync: nats-server embedded in this process with sync
//     always, so that every acknowledged message was fsynced, like evq.
//
// A peer that cannot be reached is skipped, and the report says so.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wcharczuk/go-chart/v2"
	"github.com/wcharczuk/go-chart/v2/drawing"

	"github.com/evq/evq/bench/load"
)

func main() {
	pubs := flag.String("publishers", "1,16,64,256", "publisher counts to run, comma-separated")
	duration := flag.Duration("duration", 5*time.Second, "how long each run publishes")
	size := flag.Int("size", 256, "message size in bytes")
	systems := flag.String("systems", "evq-tcp,evq,rabbitmq-quorum,jetstream,jetstream-sync", "systems to run, comma-separated")
	rabbitURL := flag.String("rabbitmq", "amqp://guest:guest@127.0.0.1:5672/", "RabbitMQ URL")
	natsURL := flag.String("nats", "nats://127.0.0.1:4222", "NATS server with JetStream")
	chartPath := flag.String("chart", "", "write a chart of delivered events/s against publishers to this file (.svg or .png)")
	jsonPath := flag.String("json", "", "write every result as JSON to this file")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	ingestConns := flag.Int("ingest-conns", 1, "connections the evq-tcp publishers share")
	replot := flag.String("replot", "", "draw -chart from the results of an earlier -json file instead of running")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fatalf("%v", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fatalf("%v", err)
		}
		defer pprof.StopCPUProfile()
	}

	var counts []int
	for _, f := range strings.Split(*pubs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fatalf("-publishers %q: want numbers such as 1,16,64,256", *pubs)
		}
		counts = append(counts, n)
	}
	names := strings.Split(*systems, ",")
	if *replot != "" {
		var results map[string]map[int]load.Result
		b, err := os.ReadFile(*replot)
		if err == nil {
			err = json.Unmarshal(b, &results)
		}
		if err == nil {
			err = writeChart(*chartPath, counts, names, results)
		}
		if err != nil {
			fatalf("replot: %v", err)
		}
		return
	}
	open := map[string]func() (load.System, error){
		"evq": func() (load.System, error) {
			return inTemp(func(dir string) (load.System, error) { return load.NewEmbedded(dir, load.EvqOptions{Reliable: true}) })
		},
		"evq-tcp": func() (load.System, error) {
			return inTemp(func(dir string) (load.System, error) {
				return load.NewIngest(dir, load.EvqOptions{Reliable: true, IngestConns: *ingestConns})
			})
		},
		"rabbitmq-quorum": func() (load.System, error) { return newRabbit(*rabbitURL) },
		"jetstream":       func() (load.System, error) { return newJetStream(*natsURL) },
		"jetstream-sync":  func() (load.System, error) { return newJetStreamSync() },
	}

	host, _ := os.Hostname()
	fmt.Printf("evq peers: %s, %d CPUs, %s, %s; %d-byte messages, %s per run\n\n", host, runtime.NumCPU(), runtime.Version(),
		time.Now().UTC().Format("2006-01-02 15:04 MST"), *size, *duration)
	results := make(map[string]map[int]load.Result)
	durability := make(map[string]string)
	var skipped []string
	for _, name := range names {
		name = strings.TrimSpace(name)
		mk, ok := open[name]
		if !ok {
			fatalf("-systems: unknown system %q", name)
		}
		for _, n := range counts {
			sys, err := mk()
			if err != nil {
				fmt.Printf("%-16s skipped: %v\n", name, err)
				skipped = append(skipped, fmt.Sprintf("%s (%v)", name, err))
				break
			}
			durability[name] = sys.Durability()
			res, err := load.Run(context.Background(), sys, load.Config{Publishers: n, Duration: *duration, Size: *size, Drain: time.Minute}, nil)
			if cerr := sys.Close(); err == nil {
				err = cerr
			}
			fmt.Printf("%-16s publishers %4d  published %8.0f/s  delivered %8.0f/s  publish p50 %6.2f ms p99 %6.2f ms  end-to-end p99 %7.2f ms",
				name, n, res.PublishPS, res.DeliverPS, res.PublishLat.P50, res.PublishLat.P99, res.EndToEnd.P99)
			if err != nil {
				fmt.Printf("  error: %v", err)
			}
			fmt.Println()
			if results[name] == nil {
				results[name] = make(map[int]load.Result)
			}
			results[name][n] = res
		}
	}
	fmt.Println()
	report(os.Stdout, counts, names, results, durability, skipped)
	if *chartPath != "" {
		if err := writeChart(*chartPath, counts, names, results); err != nil {
			fatalf("chart: %v", err)
		}
		fmt.Printf("\nchart written to %s\n", *chartPath)
	}
	if *jsonPath != "" {
		b, _ := json.MarshalIndent(results, "", "  ")
		if err := os.WriteFile(*jsonPath, b, 0o644); err != nil {
			fatalf("json: %v", err)
		}
	}
}

// report prints delivered events/s per system and publisher count, and the
// ratio of evq (Go API) and evq-tcp (network clients, like the peers') to
// each peer.
func report(w io.Writer, counts []int, names []string, results map[string]map[int]load.Result, durability map[string]string, skipped []string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "delivered events/s\t")
	for _, n := range counts {
		fmt.Fprintf(tw, "%d pub\t", n)
	}
	fmt.Fprintln(tw)
	for _, name := range names {
		r, ok := results[name]
		if !ok {
			continue
		}
		fmt.Fprintf(tw, "%s\t", name)
		for _, n := range counts {
			fmt.Fprintf(tw, "%.0f\t", r[n].DeliverPS)
		}
		fmt.Fprintln(tw)
	}
	for _, evqName := range []string{"evq", "evq-tcp"} {
		base, ok := results[evqName]
		if !ok {
			continue
		}
		for _, name := range names {
			r, ok := results[name]
			if !ok || strings.HasPrefix(name, "evq") {
				continue
			}
			fmt.Fprintf(tw, "%s / %s\t", evqName, name)
			for _, n := range counts {
				if r[n].DeliverPS > 0 {
					fmt.Fprintf(tw, "%.1f×\t", base[n].DeliverPS/r[n].DeliverPS)
				} else {
					fmt.Fprint(tw, "—\t")
				}
			}
			fmt.Fprintln(tw)
		}
	}
	tw.Flush()
	fmt.Fprintln(w, "\nDurability of each acknowledgement:")
	for _, name := range names {
		if d, ok := durability[name]; ok {
			fmt.Fprintf(w, "  %-16s %s\n", name, d)
		}
	}
	for _, s := range skipped {
		fmt.Fprintf(w, "  skipped: %s\n", s)
	}
}

// writeChart draws delivered events/s against publishers (log scale) for
// every system that ran.
func writeChart(path string, counts []int, names []string, results map[string]map[int]load.Result) error {
	var ticks []chart.Tick
	for _, n := range counts {
		ticks = append(ticks, chart.Tick{Value: math.Log2(float64(n)), Label: strconv.Itoa(n)})
	}
	g := chart.Chart{
		Title:      "durable publish, then consume: both acknowledged",
		Width:      900,
		Height:     500,
		Background: chart.Style{Padding: chart.Box{Top: 50, Left: 150, Right: 20, Bottom: 20}},
		XAxis:      chart.XAxis{Name: "concurrent publishers", Ticks: ticks},
		YAxis: chart.YAxis{Name: "delivered events/s", ValueFormatter: func(v any) string {
			return fmt.Sprintf("%.0fk", v.(float64)/1000)
		}},
		YAxisSecondary: chart.YAxis{Style: chart.Hidden()},
	}
	for _, name := range names {
		r, ok := results[name]
		if !ok {
			continue
		}
		s := chart.ContinuousSeries{Name: name, Style: chart.Style{StrokeWidth: 2, StrokeColor: colors[name]}}
		for _, n := range counts {
			if res, ok := r[n]; ok {
				s.XValues = append(s.XValues, math.Log2(float64(n)))
				s.YValues = append(s.YValues, res.DeliverPS)
			}
		}
		g.Series = append(g.Series, s)
	}
	g.Elements = []chart.Renderable{chart.LegendLeft(&g)}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	render := chart.SVG
	if strings.HasSuffix(path, ".png") {
		render = chart.PNG
	}
	if err := g.Render(render, f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// colors keeps evq's lines apart from the peers' in the chart.
var colors = map[string]drawing.Color{
	"evq":             drawing.ColorFromHex("1b7837"),
	"evq-tcp":         drawing.ColorFromHex("5aae61"),
	"rabbitmq-quorum": drawing.ColorFromHex("e66101"),
	"jetstream":       drawing.ColorFromHex("5e3c99"),
	"jetstream-sync":  drawing.ColorFromHex("b2abd2"),
}

// tempSystem is a system whose store lives in a directory removed at Close.
type tempSystem struct {
	load.System
	dir string
}

func (t tempSystem) Close() error {
	err := t.System.Close()
	os.RemoveAll(t.dir)
	return err
}

// inTemp opens a system on a new temporary directory.
func inTemp(open func(dir string) (load.System, error)) (load.System, error) {
	dir, err := os.MkdirTemp("", "evq-peers-")
	if err != nil {
		return nil, err
	}
	sys, err := open(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return tempSystem{sys, dir}, nil
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "peers: "+format+"\n", args...)
	os.Exit(1)
}
