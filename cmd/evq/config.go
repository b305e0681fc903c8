package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/api"
	"github.com/evq/evq/queue"
)

// config is the evq serve configuration file (JSON). Every field is
// optional; flags given on the command line win over the file.
type config struct {
	Data      string `json:"data"`       // data directory; default ./evq-data
	HTTP      string `json:"http"`       // API address; default 127.0.0.1:8055
	Token     string `json:"token"`      // API bearer token; required beyond loopback
	LogFormat string `json:"log_format"` // text (default) or json
	LogLevel  string `json:"log_level"`  // debug, info (default), warn, error
	MaxEvent  int    `json:"max_event_size"`
	// Listen are the sockets on which evq takes events from OpenSIPS:
	// tcp:host:port (event_stream/event_jsonrpc), udp:host:port and
	// unix:/path (event_datagram). None by default.
	Listen []string `json:"listen"`
	// ListenEventParam names the param that holds the event name, for an
	// OpenSIPS subscribed with event_param; the method is then ignored.
	ListenEventParam string          `json:"listen_event_param"`
	Retention        retentionConfig `json:"retention"`
	Defaults         defaultsConfig  `json:"defaults"` // options a subscription does not give
}

type retentionConfig struct {
	MinAge   duration `json:"min_age"`   // default 24h
	MaxAge   duration `json:"max_age"`   // default 168h
	MaxBytes int64    `json:"max_bytes"` // default 0, no limit
}

// defaultsConfig holds the OpenSIPS modparams: the options of every
// subscription that does not give its own (MI event_subscribe cannot give
// any). Zero values mean OpenSIPS's defaults.
type defaultsConfig struct {
	Reliable          bool     `json:"reliable"`            // event_stream reliable_mode, event_jsonrpc/xmlrpc sync_mode
	TimeoutMS         int      `json:"timeout_ms"`          // event_stream timeout; 1000
	EventParam        string   `json:"event_param"`         // event_stream event_param
	UseStructParam    bool     `json:"use_struct_param"`    // event_xmlrpc use_struct_param
	Delimiter         string   `json:"delimiter"`           // event_flatstore delimiter; ","
	SuppressEventName bool     `json:"suppress_event_name"` // event_flatstore suppress_event_name
	EscapeDelimiter   string   `json:"escape_delimiter"`    // event_flatstore escape_delimiter; " "
	FailoverTimeout   duration `json:"failover_timeout"`    // event_virtual failover_timeout; 30s
	BreakerFailures   int      `json:"breaker_failures"`    // evq: consecutive failures that open a virtual member's breaker; 1
	MaxInflight       int      `json:"max_inflight"`        // evq: pipelined requests in reliable mode; 1
	MaxAttempts       int      `json:"max_attempts"`        // evq: attempts before the dead letters; 0 = forever
	MaxAge            duration `json:"max_age"`             // evq: dead-letter events older than this; 0 = never
}

func (d defaultsConfig) options() evq.Options {
	return evq.Options{Reliable: d.Reliable, Timeout: time.Duration(d.TimeoutMS) * time.Millisecond,
		EventParam: d.EventParam, UseStructParam: d.UseStructParam, Delimiter: d.Delimiter,
		SuppressEventName: d.SuppressEventName, EscapeDelimiter: d.EscapeDelimiter,
		FailoverTimeout: time.Duration(d.FailoverTimeout), BreakerFailures: d.BreakerFailures, MaxInflight: d.MaxInflight,
		MaxAttempts: d.MaxAttempts, MaxAge: time.Duration(d.MaxAge)}
}

// duration reads "24h", "90s" or a number of seconds.
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n float64
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("want a duration such as \"24h\" or a number of seconds, got %s", b)
		}
		*d = duration(n * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as \"24h\": %w", err)
	}
	*d = duration(v)
	return nil
}

func defaultConfig() config {
	return config{Data: "./evq-data", HTTP: api.DefaultAddr, LogFormat: "text", LogLevel: "info"}
}

func loadConfig(path string, c *config) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %s", path, strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

func (c *config) logOptions() *queue.Options {
	return &queue.Options{
		MaxEventSize: c.MaxEvent,
		MinAge:       time.Duration(c.Retention.MinAge),
		MaxAge:       time.Duration(c.Retention.MaxAge),
		MaxBytes:     c.Retention.MaxBytes,
	}
}

// stringsFlag is a flag that may be given several times.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

// parseInterleaved parses flags that may come before, between or after the
// positional arguments, which it returns.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
