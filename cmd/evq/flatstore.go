package main

import (
	"flag"
	"fmt"
)

func runFlatstore(args []string) error {
	fs := flag.NewFlagSet("flatstore", flag.ContinueOnError)
	c := newClient(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] != "reopen" {
		return fmt.Errorf("usage: evq flatstore reopen   (reopen flatstore files after log rotation)")
	}
	if err := c.call("POST", "/v1/flatstore/reopen", nil, nil); err != nil {
		return err
	}
	fmt.Println("flatstore files will be reopened before their next write")
	return nil
}
