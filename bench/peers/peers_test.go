package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/evq/evq/bench/load"
)

// Each peer runs the workload for real: against the RabbitMQ and NATS on
// this machine (skipped when absent, failed when EVQ_REQUIRE_SERVICES=1) and
// against an embedded nats-server with sync always.
func TestPeers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		open    func() (load.System, error)
		service bool
	}{
		{"rabbitmq-quorum", func() (load.System, error) { return newRabbit("amqp://guest:guest@127.0.0.1:5672/") }, true},
		{"jetstream", func() (load.System, error) { return newJetStream("nats://127.0.0.1:4222") }, true},
		{"jetstream-sync", func() (load.System, error) { return newJetStreamSync() }, false},
		{"evq-tcp", func() (load.System, error) {
			return inTemp(func(dir string) (load.System, error) { return load.NewIngest(dir, load.EvqOptions{Reliable: true}) })
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys, err := tc.open()
			if err != nil {
				if !tc.service {
					t.Fatal(err)
				}
				if os.Getenv("EVQ_REQUIRE_SERVICES") == "1" {
					t.Fatalf("%s is required (EVQ_REQUIRE_SERVICES=1) but cannot be reached: %v", tc.name, err)
				}
				t.Skipf("%s not reachable (%v): start it to run this test", tc.name, err)
			}
			res, err := load.Run(context.Background(), sys, load.Config{Publishers: 4, Count: 300}, nil)
			if cerr := sys.Close(); err == nil {
				err = cerr
			}
			if err != nil || res.Published != 300 || res.Delivered != 300 || res.Errors != 0 {
				t.Fatalf("%+v %v", res, err)
			}
			if sys.Name() != tc.name || sys.Durability() == "" {
				t.Fatalf("name %q, durability %q", sys.Name(), sys.Durability())
			}
		})
	}
}

func TestReportAndChart(t *testing.T) {
	counts := []int{1, 16}
	names := []string{"evq", "rabbitmq-quorum", "jetstream"}
	results := map[string]map[int]load.Result{
		"evq":             {1: {DeliverPS: 2000}, 16: {DeliverPS: 30000}},
		"rabbitmq-quorum": {1: {DeliverPS: 500}, 16: {DeliverPS: 5000}},
	}
	var out strings.Builder
	report(&out, counts, names, results, map[string]string{"evq": "fsync"}, []string{"jetstream (connection refused)"})
	for _, want := range []string{"evq / rabbitmq-quorum   4.0×    6.0×", "skipped: jetstream (connection refused)", "  evq              fsync"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	for _, ext := range []string{"svg", "png"} {
		path := filepath.Join(t.TempDir(), "chart."+ext)
		if err := writeChart(path, counts, names, results); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(path); err != nil || fi.Size() < 1000 {
			t.Fatalf("chart %s: %v", ext, err)
		}
	}
}
