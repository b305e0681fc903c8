// Command evq is a durable, reliable delivery engine for OpenSIPS Event
// Interface events: "evq serve" runs it, and the other subcommands talk to a
// running server over its HTTP API.
package main

import (
	"fmt"
	"os"
)

const usage = `evq: durable, reliable delivery of OpenSIPS events

Server:
  evq serve [--config FILE] [--data DIR] [--http ADDR]   run evq (data dir default ./evq-data)
  evq check --data DIR                                   check a stopped server's store

Client (--server URL, or EVQ_SERVER, default http://127.0.0.1:8055):
  evq raise EVENT [name=value ...]        raise an event (or EVENT value value ... for unnamed params)
  evq subscribe EVENT SOCKET [--reliable] [--timeout 1s] [--expire N] [--start now|earliest|SEQ|TIME]
  evq unsubscribe ID
  evq subscribers                         list subscriptions with cursor, lag and state
  evq events                              list event names with counts and seqs
  evq replay ID --from-seq N | --since TIME
  evq dlq list|redrive|purge ID           dead letters of a subscription
  evq tail EVENT [--from SEQ]             print events as they are raised
  evq flatstore reopen                    reopen flatstore files (after logrotate; or send SIGHUP)

Testing:
  evq listen HOST:PORT [--reject N]       a JSON-RPC subscriber that prints what it receives
  evq bench [--embedded] [--rate N] [--duration 10s] [--concurrency 64] [--subscribers 1]
                                          load: raise, deliver and acknowledge; report throughput and latency

Run "evq COMMAND --help" for a command's flags.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "serve":
		err = runServe(args)
	case "check":
		err = runCheck(args)
	case "raise":
		err = runRaise(args)
	case "subscribe":
		err = runSubscribe(args)
	case "unsubscribe":
		err = runUnsubscribe(args)
	case "subscribers":
		err = runSubscribers(args)
	case "events":
		err = runEvents(args)
	case "replay":
		err = runReplay(args)
	case "dlq":
		err = runDLQ(args)
	case "tail":
		err = runTail(args)
	case "listen":
		err = runListen(args)
	case "flatstore":
		err = runFlatstore(args)
	case "bench":
		err = runBench(args)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "evq: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "evq %s: %s\n", cmd, err)
		os.Exit(1)
	}
}
