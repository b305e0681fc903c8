package main

import (
	"bufio"
	"flag"
	"fmt"
	"net/url"
	"os"
	"text/tabwriter"
)

func runEvents(args []string) error {
	fs := flag.NewFlagSet("events", flag.ContinueOnError)
	c := newClient(fs)
	if _, err := parseInterleaved(fs, args); err != nil {
		return err
	}
	var out struct {
		Events []struct {
			Name          string
			Count         uint64
			FirstSeq      uint64 `json:"first_seq"`
			LastSeq       uint64 `json:"last_seq"`
			Subscriptions int
		}
		LastSeq uint64 `json:"last_seq"`
	}
	if err := c.call("GET", "/v1/events", nil, &out); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EVENT\tSTORED\tFIRST SEQ\tLAST SEQ\tSUBSCRIPTIONS")
	for _, e := range out.Events {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", e.Name, e.Count, e.FirstSeq, e.LastSeq, e.Subscriptions)
	}
	fmt.Fprintf(tw, "(last seq %d)\n", out.LastSeq)
	return tw.Flush()
}

func runTail(args []string) error {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	c := newClient(fs)
	from := fs.Uint64("from", 0, "start at this seq instead of now")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("want one EVENT name")
	}
	path := "/v1/events/" + url.PathEscape(pos[0]) + "/tail"
	if *from > 0 {
		path += fmt.Sprintf("?from=%d", *from)
	}
	resp, err := c.request("GET", path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		fmt.Println(sc.Text())
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return fmt.Errorf("the server closed the stream")
}
