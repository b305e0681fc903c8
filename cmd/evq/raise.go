package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"strconv"
	"strings"
)

func runRaise(args []string) error {
	fs := flag.NewFlagSet("raise", flag.ContinueOnError)
	c := newClient(fs)
	asStrings := fs.Bool("strings", false, "send every value as a string, even if it looks like a number")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: evq raise EVENT [name=value ...]   (named params)\n       evq raise EVENT value value ...      (unnamed params)\nA value that is an integer is sent as one unless --strings.")
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 1 {
		fs.Usage()
		return fmt.Errorf("missing EVENT")
	}
	body, err := raiseBody(pos[0], pos[1:], *asStrings)
	if err != nil {
		return err
	}
	var out struct{ Seq uint64 }
	if err := c.call("POST", "/v1/events", body, &out); err != nil {
		return err
	}
	fmt.Printf("raised %s seq %d\n", pos[0], out.Seq)
	return nil
}

// raiseBody builds the POST /v1/events body, keeping the params' order.
func raiseBody(event string, params []string, asStrings bool) (json.RawMessage, error) {
	value := func(v string) json.RawMessage {
		if !asStrings {
			if _, err := strconv.ParseInt(v, 10, 64); err == nil {
				return json.RawMessage(v)
			}
		}
		b, _ := json.Marshal(v)
		return b
	}
	ev, _ := json.Marshal(event)
	b := []byte(`{"event":`)
	b = append(b, ev...)
	if len(params) == 0 {
		return append(b, '}'), nil
	}
	named := strings.Contains(params[0], "=")
	if named {
		b = append(b, `,"params":{`...)
	} else {
		b = append(b, `,"params":[`...)
	}
	for i, p := range params {
		if i > 0 {
			b = append(b, ',')
		}
		name, v, ok := strings.Cut(p, "=")
		if ok != named {
			return nil, fmt.Errorf("param %q: give all params as name=value, or none", p)
		}
		if named {
			if name == "" {
				return nil, fmt.Errorf("param %q has no name", p)
			}
			k, _ := json.Marshal(name)
			b = append(b, k...)
			b = append(b, ':')
			b = append(b, value(v)...)
		} else {
			b = append(b, value(p)...)
		}
	}
	if named {
		b = append(b, '}')
	} else {
		b = append(b, ']')
	}
	return append(b, '}'), nil
}
