// Package load is evq's load generator, the engine of `evq bench` and of the
// side-by-side runs against other brokers in bench/peers.
//
// The workload is the same for every system: publishers send fixed-size
// messages durably and wait for each acknowledgement; consumers receive
// them and acknowledge each. Every message carries its send time, so a
// consumer measures end-to-end latency. With a target rate, each publisher
// sends on a fixed schedule and latency is measured from the scheduled
// time, so a stall is counted against every message it delayed
// (no coordinated omission).
package load

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// System is something to publish to and consume from.
type System interface {
	// Name names the system in reports, such as "evq" or "rabbitmq-quorum".
	Name() string
	// Durability says, honestly, when a publish is acknowledged.
	Durability() string
	// Consumers returns how many consumers get every message (evq's
	// subscribers); 1 for a queue.
	Consumers() int
	// Start starts the consumers; they call deliver for every message
	// received, then acknowledge it.
	Start(ctx context.Context, deliver func(payload []byte)) error
	// Publisher returns a function that publishes one message and returns
	// once the system acknowledged it. Each publisher goroutine gets its own.
	Publisher(ctx context.Context) (func(payload []byte) error, error)
	// Close stops the consumers and releases everything.
	Close() error
}

// Config is one run's workload.
type Config struct {
	Publishers int           // concurrent publishers; 0 means 1
	Rate       int           // messages/s in all; 0 means as fast as acknowledged
	Duration   time.Duration // how long to publish; 0 means 10 s
	Count      int           // stop after this many messages instead, when > 0
	Size       int           // message size in bytes; 0 means 256
	Drain      time.Duration // how long to wait for consumers after publishing; 0 means 30 s
	// Warmup publishes for this long before Duration or Count starts. What it
	// publishes is neither counted nor timed: a new store, a cold cache and the
	// disk's work left from an earlier run stay out of the figures.
	Warmup time.Duration
}

func (c *Config) defaults() {
	if c.Publishers <= 0 {
		c.Publishers = 1
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Size <= 0 {
		c.Size = 256
	}
	if c.Drain <= 0 {
		c.Drain = 30 * time.Second
	}
}

// Progress is a snapshot taken while a run goes on.
type Progress struct {
	Elapsed   time.Duration
	Published int64 // acknowledged publishes so far
	Delivered int64 // messages received by consumers so far (each consumer counts)
	Lag       int64 // deliveries still due: Published × consumers − Delivered
}

// Result is what a run measured.
type Result struct {
	System     string `json:"system"`
	Durability string `json:"durability"`
	Publishers int    `json:"publishers"`
	Consumers  int    `json:"consumers"`
	Size       int    `json:"size"`
	Rate       int    `json:"target_rate,omitempty"`

	Published  int64   `json:"published"`
	Delivered  int64   `json:"delivered"` // deliveries, every consumer counted
	Errors     int64   `json:"errors"`
	Warmup     float64 `json:"warmup_s,omitempty"` // seconds published before measuring
	Seconds    float64 `json:"seconds"`            // from the first measured publish to the last delivery
	PublishPS  float64 `json:"publish_per_s"`
	DeliverPS  float64 `json:"deliver_per_s"` // messages delivered to every consumer, per second
	PublishLat Latency `json:"publish_latency_ms"`
	EndToEnd   Latency `json:"end_to_end_latency_ms"`
	FirstError string  `json:"first_error,omitempty"`
}

// Latency holds percentiles in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
}

// histogram is a concurrency-safe HDR histogram of microseconds, 1 µs to
// 1 h at 3 significant digits.
type histogram struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
}

func newHistogram() *histogram {
	return &histogram{h: hdrhistogram.New(1, int64(time.Hour/time.Microsecond), 3)}
}

func (h *histogram) record(d time.Duration) {
	us := max(d.Microseconds(), 1)
	h.mu.Lock()
	h.h.RecordValue(min(us, h.h.HighestTrackableValue()))
	h.mu.Unlock()
}

func (h *histogram) merge(o *histogram) {
	h.mu.Lock()
	o.mu.Lock()
	h.h.Merge(o.h)
	o.mu.Unlock()
	h.mu.Unlock()
}

func (h *histogram) latency() Latency {
	h.mu.Lock()
	defer h.mu.Unlock()
	ms := func(q float64) float64 { return float64(h.h.ValueAtQuantile(q)) / 1000 }
	return Latency{P50: ms(50), P90: ms(90), P99: ms(99), P999: ms(99.9), Max: float64(h.h.Max()) / 1000}
}

// Payload returns a size-byte message that carries t: "t=<unix nanos>;"
// followed by filler. It is plain ASCII, so it travels as a JSON string.
func Payload(buf []byte, t time.Time, size int) []byte {
	buf = append(buf[:0], "t="...)
	buf = strconv.AppendInt(buf, t.UnixNano(), 10)
	buf = append(buf, ';')
	for len(buf) < size {
		buf = append(buf, 'x')
	}
	return buf
}

// SentAt finds the send time in a message, or in anything that contains
// one (such as the JSON-RPC object evq delivers).
func SentAt(b []byte) (time.Time, bool) {
	for i := 0; i+2 < len(b); i++ {
		if b[i] != 't' || b[i+1] != '=' {
			continue
		}
		j := i + 2
		var n int64
		for ; j < len(b) && b[j] >= '0' && b[j] <= '9'; j++ {
			n = n*10 + int64(b[j]-'0')
		}
		if j < len(b) && b[j] == ';' && j > i+2 {
			return time.Unix(0, n), true
		}
	}
	return time.Time{}, false
}

// Run runs cfg against sys. progress, if not nil, is called about once a
// second with a snapshot. Run closes nothing: the caller closes sys.
func Run(ctx context.Context, sys System, cfg Config, progress func(Progress)) (Result, error) {
	cfg.defaults()
	res := Result{System: sys.Name(), Durability: sys.Durability(), Publishers: cfg.Publishers,
		Consumers: sys.Consumers(), Size: cfg.Size, Rate: cfg.Rate, Warmup: cfg.Warmup.Seconds()}
	// published and delivered count everything; warmPublished and
	// warmDelivered what was due during the warm-up.
	var published, warmPublished, delivered, warmDelivered, errs atomic.Int64
	var firstErr atomic.Value
	var lastDelivery atomic.Int64
	e2e := newHistogram()
	var measureNanos atomic.Int64 // when the warm-up ends: set before the first publish
	if err := sys.Start(ctx, func(p []byte) {
		now := time.Now()
		if t, ok := SentAt(p); ok && t.UnixNano() < measureNanos.Load() {
			warmDelivered.Add(1)
		} else if ok {
			e2e.record(now.Sub(t))
		}
		delivered.Add(1)
		lastDelivery.Store(now.UnixNano())
	}); err != nil {
		return res, fmt.Errorf("%s: start consumers: %w", sys.Name(), err)
	}

	pubs := make([]func([]byte) error, cfg.Publishers)
	for i := range pubs {
		p, err := sys.Publisher(ctx)
		if err != nil {
			return res, fmt.Errorf("%s: publisher %d: %w", sys.Name(), i+1, err)
		}
		pubs[i] = p
	}

	pubLat := newHistogram()
	start := time.Now()
	measureFrom := start.Add(cfg.Warmup)
	measureNanos.Store(measureFrom.UnixNano())
	stopAt := measureFrom.Add(cfg.Duration)
	var left atomic.Int64
	left.Store(int64(cfg.Count))
	var wg sync.WaitGroup
	for i, publish := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := newHistogram()
			defer pubLat.merge(local)
			var interval time.Duration
			if cfg.Rate > 0 {
				interval = time.Duration(float64(time.Second) * float64(cfg.Publishers) / float64(cfg.Rate))
			}
			next := start.Add(interval * time.Duration(i) / time.Duration(cfg.Publishers))
			buf := make([]byte, 0, cfg.Size)
			for ctx.Err() == nil {
				sent := time.Now()
				if interval > 0 {
					sent = next // latency counts from when the message was due
				}
				warm := sent.Before(measureFrom)
				if cfg.Count > 0 {
					if !warm && left.Add(-1) < 0 {
						return
					}
				} else if sent.After(stopAt) {
					return
				}
				if interval > 0 {
					if d := time.Until(next); d > 0 {
						time.Sleep(d)
					}
					next = next.Add(interval)
				}
				buf = Payload(buf, sent, cfg.Size)
				if err := publish(buf); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				published.Add(1)
				if warm {
					warmPublished.Add(1)
					continue
				}
				local.record(time.Since(sent))
			}
		}()
	}

	snapshot := func() Progress {
		p, d := published.Load(), delivered.Load()
		// A delivery can land before its publisher has its ack: not lag.
		return Progress{Elapsed: time.Since(start), Published: p, Delivered: d, Lag: max(0, p*int64(res.Consumers)-d)}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var drainUntil, pubEnd time.Time
	for {
		select {
		case <-tick.C:
			if progress != nil {
				progress(snapshot())
			}
		case <-done:
			done = nil
			pubEnd = time.Now()
			drainUntil = pubEnd.Add(cfg.Drain)
		case <-time.After(10 * time.Millisecond):
		}
		if done == nil && (snapshot().Lag <= 0 || time.Now().After(drainUntil) || ctx.Err() != nil) {
			break
		}
	}

	res.Published, res.Delivered, res.Errors = published.Load(), delivered.Load(), errs.Load()
	lag := res.Published*int64(res.Consumers) - res.Delivered
	res.Published -= warmPublished.Load()
	res.Delivered -= warmDelivered.Load()
	if v := firstErr.Load(); v != nil {
		res.FirstError = v.(string)
	}
	end := time.Now()
	if last := lastDelivery.Load(); last > 0 {
		end = time.Unix(0, last)
	}
	res.Seconds = end.Sub(measureFrom).Seconds()
	res.PublishPS = float64(res.Published) / pubEnd.Sub(measureFrom).Seconds()
	res.DeliverPS = float64(res.Delivered) / float64(res.Consumers) / res.Seconds
	res.PublishLat, res.EndToEnd = pubLat.latency(), e2e.latency()
	if lag > 0 {
		return res, fmt.Errorf("%s: %d deliveries still missing %s after the last publish", sys.Name(), lag, cfg.Drain)
	}
	return res, ctx.Err()
}
