package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

type subscription struct {
	ID          uint64
	Event       string
	Socket      string
	Reliable    bool
	Expire      int
	State       string
	Cursor      uint64
	Lag         uint64
	DeadLetters int `json:"dead_letters"`
	Delivered   uint64
	Failures    uint64
	LastError   string `json:"last_error"`
	Members     []struct {
		Socket      string
		Breaker     string
		Delivered   uint64
		Failures    uint64
		Cursor      *uint64
		Lag         *uint64
		DeadLetters *int `json:"dead_letters"`
	}
	Warnings []string
}

func runSubscribe(args []string) error {
	fs := flag.NewFlagSet("subscribe", flag.ContinueOnError)
	c := newClient(fs)
	reliable := fs.Bool("reliable", false, "count an event delivered only when the subscriber acknowledges it")
	timeout := fs.Duration("timeout", time.Second, "reply timeout in reliable mode")
	expire := fs.Int("expire", 0, "lifetime in seconds; 0 means never")
	start := fs.String("start", "", "where a new subscription starts: now (default), earliest, a seq or an RFC 3339 time; a renewed one resumes unless given")
	inflight := fs.Int("max-inflight", 0, "requests in flight in reliable mode (default 1: strict order)")
	attempts := fs.Int("max-attempts", 0, "attempts before an event is dead-lettered (default 0: retry forever)")
	maxAge := fs.Duration("max-age", 0, "dead-letter events older than this instead of retrying (default 0: never)")
	eventParam := fs.String("event-param", "", "add the event name as this param (OpenSIPS event_param)")
	useStruct := fs.Bool("use-struct-param", false, "xmlrpc: send each param as a one-member struct")
	delimiter := fs.String("delimiter", "", "flatstore: the delimiter between values (default \",\")")
	suppress := fs.Bool("suppress-event-name", false, "flatstore: leave out the event name")
	escape := fs.String("escape-delimiter", "", "flatstore: what replaces the delimiter and line breaks inside values (default a space)")
	failoverTimeout := fs.Duration("failover-timeout", 0, "virtual: how long a failed member's breaker stays open (default 30s)")
	breakerFailures := fs.Int("breaker-failures", 0, "virtual: consecutive failures that open a member's breaker (default 1)")
	parallelSuccess := fs.String("parallel-success", "", "virtual:PARALLEL: an event is delivered when all members (default) or any member acknowledged it")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: evq subscribe EVENT SOCKET [flags]\n")
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		fs.Usage()
		return fmt.Errorf("want EVENT and SOCKET, got %d arguments", len(pos))
	}
	// Only the options given go out: the server's defaults (its
	// configuration's OpenSIPS modparams) apply to the others.
	all := map[string]any{
		"reliable": *reliable, "timeout": timeout.Milliseconds(), "expire": *expire, "start": *start,
		"max-inflight": *inflight, "max-attempts": *attempts, "max-age": int(maxAge.Seconds()),
		"event-param": *eventParam, "use-struct-param": *useStruct, "delimiter": *delimiter,
		"suppress-event-name": *suppress, "escape-delimiter": *escape,
		"failover-timeout": int(failoverTimeout.Seconds()), "breaker-failures": *breakerFailures,
		"parallel-success": *parallelSuccess,
	}
	body := map[string]any{"event": pos[0], "socket": pos[1]}
	fs.Visit(func(f *flag.Flag) {
		if v, ok := all[f.Name]; ok {
			field := strings.ReplaceAll(f.Name, "-", "_")
			if f.Name == "timeout" {
				field = "timeout_ms"
			}
			body[field] = v
		}
	})
	var sub subscription
	if err := c.call("POST", "/v1/subscriptions", body, &sub); err != nil {
		return err
	}
	fmt.Printf("subscription %d: %s -> %s (cursor %d, lag %d, %s)\n", sub.ID, sub.Event, sub.Socket, sub.Cursor, sub.Lag, sub.State)
	for _, w := range sub.Warnings {
		fmt.Fprintf(os.Stderr, "warning: %s\n", w)
	}
	return nil
}

func parseID(fs *flag.FlagSet, pos []string) (string, error) {
	if len(pos) != 1 {
		return "", fmt.Errorf("want one subscription ID (see evq subscribers)")
	}
	if _, err := strconv.ParseUint(pos[0], 10, 64); err != nil {
		return "", fmt.Errorf("subscription ID %q is not a number (see evq subscribers)", pos[0])
	}
	return pos[0], nil
}

func runUnsubscribe(args []string) error {
	fs := flag.NewFlagSet("unsubscribe", flag.ContinueOnError)
	c := newClient(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	id, err := parseID(fs, pos)
	if err != nil {
		return err
	}
	if err := c.call("DELETE", "/v1/subscriptions/"+id, nil, nil); err != nil {
		return err
	}
	fmt.Printf("unsubscribed %s\n", id)
	return nil
}

func runSubscribers(args []string) error {
	fs := flag.NewFlagSet("subscribers", flag.ContinueOnError)
	c := newClient(fs)
	asJSON := fs.Bool("json", false, "print the API's JSON")
	if _, err := parseInterleaved(fs, args); err != nil {
		return err
	}
	var out struct {
		Subscriptions []json.RawMessage
	}
	if err := c.call("GET", "/v1/subscriptions", nil, &out); err != nil {
		return err
	}
	if *asJSON {
		for _, s := range out.Subscriptions {
			fmt.Println(string(s))
		}
		return nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tEVENT\tSOCKET\tMODE\tSTATE\tCURSOR\tLAG\tDLQ\tDELIVERED\tLAST ERROR")
	for _, raw := range out.Subscriptions {
		var s subscription
		if err := json.Unmarshal(raw, &s); err != nil {
			return err
		}
		mode := "notify"
		if s.Reliable {
			mode = "reliable"
		}
		if s.State != "retrying" {
			s.LastError = "" // history is in the API's last_error; the table shows what is wrong now
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", s.ID, s.Event, s.Socket, mode, s.State, s.Cursor, s.Lag, s.DeadLetters, s.Delivered, s.LastError)
		for _, m := range s.Members { // a virtual group: one line per member
			cursor, lag, dlq := "", "", ""
			if m.Cursor != nil { // PARALLEL: each member has its own progress
				cursor, lag, dlq = strconv.FormatUint(*m.Cursor, 10), strconv.FormatUint(*m.Lag, 10), strconv.Itoa(*m.DeadLetters)
			}
			failures := ""
			if m.Failures > 0 {
				failures = fmt.Sprintf("%d failures", m.Failures)
			}
			fmt.Fprintf(tw, "\t\t  %s\t\tbreaker %s\t%s\t%s\t%s\t%d\t%s\n", m.Socket, m.Breaker, cursor, lag, dlq, m.Delivered, failures)
		}
	}
	return tw.Flush()
}
