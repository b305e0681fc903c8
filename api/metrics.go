package api

import (
	"strconv"
	"strings"
	"time"

	"github.com/evq/evq/delivery"
	"github.com/evq/evq/queue"
	"github.com/prometheus/client_golang/prometheus"
)

// CommitMetrics observes the log's group commits. Pass its Observe method as
// queue.Options.CommitFunc.
type CommitMetrics struct {
	batch   prometheus.Histogram
	latency prometheus.Histogram
}

// NewCommitMetrics returns unregistered commit histograms.
func NewCommitMetrics() *CommitMetrics {
	return &CommitMetrics{
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "evq_commit_batch_events", Help: "Events per group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9),
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "evq_commit_seconds", Help: "Time of one group commit, the WAL's fdatasync included.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
	}
}

// Observe records one commit.
func (m *CommitMetrics) Observe(events int, took time.Duration) {
	if events > 0 {
		m.batch.Observe(float64(events))
	}
	m.latency.Observe(took.Seconds())
}

// collector reads the engine's and log's counters at scrape time.
type collector struct {
	engine *delivery.Engine
	log    *queue.Log

	raised, commits, commitErrors, retainDeleted, retainDropped, lastSeq *prometheus.Desc
	applies, applyErrors                                                 *prometheus.Desc
	delivered, failures, retries, parked, lag, deadLetters, state        *prometheus.Desc
	breaker, memberDelivered, memberFailures, memberLag                  *prometheus.Desc
}

func newCollector(engine *delivery.Engine, log *queue.Log) *collector {
	sub := []string{"id", "event", "socket"}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &collector{
		engine:          engine,
		log:             log,
		raised:          d("evq_raised_events_total", "Events durably stored."),
		commits:         d("evq_commits_total", "Group commits (one WAL record and fdatasync each)."),
		commitErrors:    d("evq_commit_errors_total", "Commits that failed (disk full, I/O error)."),
		applies:         d("evq_store_applies_total", "Transactions writing WAL events and cursors into the bbolt store."),
		applyErrors:     d("evq_store_apply_errors_total", "Store transactions that failed; their events stay in the WAL and are retried."),
		retainDeleted:   d("evq_retention_deleted_events_total", "Events deleted by retention."),
		retainDropped:   d("evq_retention_dropped_unacked_events_total", "Events deleted by max_age or max_bytes before every subscriber acknowledged them."),
		lastSeq:         d("evq_last_seq", "Seq of the last stored event."),
		delivered:       d("evq_delivered_events_total", "Events delivered (acknowledged in reliable mode).", sub...),
		failures:        d("evq_delivery_failures_total", "Failed delivery attempts.", sub...),
		retries:         d("evq_delivery_retries_total", "Retries after a failed attempt.", sub...),
		parked:          d("evq_dead_lettered_events_total", "Events moved to the dead letters.", sub...),
		lag:             d("evq_subscription_lag_events", "Stored events not yet delivered.", sub...),
		deadLetters:     d("evq_dead_letters", "Events in the dead-letter store.", sub...),
		state:           d("evq_subscription_state", "1 for the subscription's current state.", append(sub, "state")...),
		breaker:         d("evq_virtual_member_breaker", "1 for the current circuit-breaker state of each member of a virtual group.", append(sub, "member", "breaker")...),
		memberDelivered: d("evq_virtual_member_delivered_events_total", "Events a member of a virtual group acknowledged.", append(sub, "member")...),
		memberFailures:  d("evq_virtual_member_failures_total", "Failed sends to a member of a virtual group (refusals by its open breaker not counted).", append(sub, "member")...),
		memberLag:       d("evq_virtual_member_lag_events", "Stored events a member of a PARALLEL group has yet to receive.", append(sub, "member")...),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.log.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter(c.raised, st.CommitEvents.Load())
	counter(c.commits, st.Commits.Load())
	counter(c.commitErrors, st.CommitErrors.Load())
	counter(c.applies, st.Applies.Load())
	counter(c.applyErrors, st.ApplyErrors.Load())
	counter(c.retainDeleted, st.RetainDeleted.Load())
	counter(c.retainDropped, st.RetainDropped.Load())
	gauge(c.lastSeq, float64(c.log.LastSeq()))
	for _, s := range c.engine.Subscriptions() {
		l := []string{strconv.FormatUint(s.ID, 10), s.Event, s.Socket}
		counter(c.delivered, s.Delivered, l...)
		counter(c.failures, s.Failures, l...)
		counter(c.retries, s.Retries, l...)
		counter(c.parked, s.Parked, l...)
		gauge(c.lag, float64(s.Lag), l...)
		gauge(c.deadLetters, float64(s.DeadLetters), l...)
		gauge(c.state, 1, append(l, s.State)...)
		parallel := len(s.Members) > 0 && strings.HasPrefix(strings.ToUpper(s.Socket), "VIRTUAL:PARALLEL")
		for _, m := range s.Members {
			gauge(c.breaker, 1, append(l, m.Socket, m.State)...)
			counter(c.memberDelivered, m.Delivered, append(l, m.Socket)...)
			counter(c.memberFailures, m.Failures, append(l, m.Socket)...)
			if parallel {
				gauge(c.memberLag, float64(m.Lag), append(l, m.Socket)...)
			}
		}
	}
}

// IngestCounts are what a listener counted.
type IngestCounts struct {
	Accepted, Rejected, StoreFailed uint64 // events
	Refused, TimedOut               uint64 // connections (tcp)
	// Rejected by reason, where the listener tells (tcp); the rest of
	// Rejected is reported as "rejected".
	ParseErrors, InvalidRequests, InvalidParams, Oversize uint64
}

// IngestSource is one listener as /metrics shows it.
type IngestSource struct {
	Name   string // its socket, such as tcp:127.0.0.1:9060
	Counts func() IngestCounts
}

// IngestMetrics are the ingest listeners' counters and the reply latency of
// the tcp listeners. Pass ObserveReply as stream.ListenerOptions.ObserveFunc.
type IngestMetrics struct {
	Sources []IngestSource
	latency prometheus.Histogram
}

// NewIngestMetrics returns ingest metrics for the given listeners.
func NewIngestMetrics(sources ...IngestSource) *IngestMetrics {
	return &IngestMetrics{Sources: sources, latency: prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "evq_ingest_reply_seconds", Help: "From reading an ingested request to writing its answer (fsync included).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
	})}
}

// ObserveReply records one answered request.
func (m *IngestMetrics) ObserveReply(took time.Duration) { m.latency.Observe(took.Seconds()) }

var (
	ingestEvents = prometheus.NewDesc("evq_ingest_events_total", "Events taken from OpenSIPS, by listener and result: accepted, store_failed, or refused as parse_error, invalid_request, invalid_params, oversize (rejected: malformed, for listeners that do not tell why).", []string{"listener", "result"}, nil)
	ingestConns  = prometheus.NewDesc("evq_ingest_connections_dropped_total", "Ingest connections refused (too many open) or cut off (an object too slow).", []string{"listener", "reason"}, nil)
)

// Describe implements prometheus.Collector.
func (m *IngestMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- ingestEvents
	ch <- ingestConns
	m.latency.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *IngestMetrics) Collect(ch chan<- prometheus.Metric) {
	for _, s := range m.Sources {
		c := s.Counts()
		other := c.Rejected - c.ParseErrors - c.InvalidRequests - c.InvalidParams - c.Oversize
		for result, v := range map[string]uint64{"accepted": c.Accepted, "rejected": other, "store_failed": c.StoreFailed,
			"parse_error": c.ParseErrors, "invalid_request": c.InvalidRequests, "invalid_params": c.InvalidParams, "oversize": c.Oversize} {
			ch <- prometheus.MustNewConstMetric(ingestEvents, prometheus.CounterValue, float64(v), s.Name, result)
		}
		for reason, v := range map[string]uint64{"refused": c.Refused, "timed_out": c.TimedOut} {
			ch <- prometheus.MustNewConstMetric(ingestConns, prometheus.CounterValue, float64(v), s.Name, reason)
		}
	}
	m.latency.Collect(ch)
}
