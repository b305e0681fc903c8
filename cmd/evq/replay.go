package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"
)

func runReplay(args []string) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	c := newClient(fs)
	fromSeq := fs.Uint64("from-seq", 0, "deliver again from this seq")
	since := fs.String("since", "", "deliver again everything raised since this RFC 3339 time (or a duration ago, such as 1h)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	id, err := parseID(fs, pos)
	if err != nil {
		return err
	}
	body := map[string]any{}
	switch {
	case *fromSeq > 0 && *since != "":
		return fmt.Errorf("give --from-seq or --since, not both")
	case *fromSeq > 0:
		body["from_seq"] = *fromSeq
	case *since != "":
		if d, err := time.ParseDuration(*since); err == nil {
			body["since"] = time.Now().Add(-d).UTC().Format(time.RFC3339Nano)
		} else {
			body["since"] = *since
		}
	default:
		return fmt.Errorf("give --from-seq N or --since TIME")
	}
	var sub subscription
	if err := c.call("POST", "/v1/subscriptions/"+id+"/replay", body, &sub); err != nil {
		return err
	}
	fmt.Printf("subscription %d replays from cursor %d (%d events to deliver)\n", sub.ID, sub.Cursor, sub.Lag)
	return nil
}

func runDLQ(args []string) error {
	fs := flag.NewFlagSet("dlq", flag.ContinueOnError)
	c := newClient(fs)
	limit := fs.Int("limit", 100, "list at most this many")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: evq dlq list|redrive|purge ID")
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		fs.Usage()
		return fmt.Errorf("want an action (list, redrive or purge) and a subscription ID")
	}
	id, err := parseID(fs, pos[1:])
	if err != nil {
		return err
	}
	switch pos[0] {
	case "list":
		var out struct {
			DeadLetters []json.RawMessage `json:"dead_letters"`
		}
		if err := c.call("GET", fmt.Sprintf("/v1/subscriptions/%s/dlq?limit=%d", id, *limit), nil, &out); err != nil {
			return err
		}
		for _, d := range out.DeadLetters {
			fmt.Fprintln(os.Stdout, string(d))
		}
		fmt.Fprintf(os.Stderr, "%d dead letters\n", len(out.DeadLetters))
	case "redrive":
		var out struct{ Redriving int }
		if err := c.call("POST", "/v1/subscriptions/"+id+"/dlq/redrive", nil, &out); err != nil {
			return err
		}
		fmt.Printf("redriving %d dead letters of subscription %s\n", out.Redriving, id)
	case "purge":
		var out struct{ Purged int }
		if err := c.call("DELETE", "/v1/subscriptions/"+id+"/dlq", nil, &out); err != nil {
			return err
		}
		fmt.Printf("purged %d dead letters of subscription %s\n", out.Purged, id)
	default:
		return fmt.Errorf("unknown action %q: want list, redrive or purge", pos[0])
	}
	return nil
}
