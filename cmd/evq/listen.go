package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/evq/evq/transports/stream"
)

// runListen is a small JSON-RPC over TCP subscriber for trying evq out: it
// prints every event it receives and answers requests (reliable mode) with a
// result, or with an error for the first --reject ones.
func runListen(args []string) error {
	fs := flag.NewFlagSet("listen", flag.ContinueOnError)
	reject := fs.Int("reject", 0, "answer the first N requests with a JSON-RPC error")
	quiet := fs.Bool("quiet", false, "print only a count when stopped")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: evq listen [tcp:]HOST:PORT [--reject N]\nA test subscriber: prints each event; answers reliable-mode requests.")
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return fmt.Errorf("want one address to listen on, such as 127.0.0.1:9000")
	}
	addr := strings.TrimPrefix(strings.TrimPrefix(pos[0], "tcp:"), "jsonrpc:")
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "listening on tcp:%s\n", ln.Addr())
	var (
		out      = bufio.NewWriter(os.Stdout)
		outMu    sync.Mutex
		received atomic.Int64
		rejects  atomic.Int64
	)
	rejects.Store(int64(*reject))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	var (
		wg      sync.WaitGroup
		connsMu sync.Mutex
		conns   = make(map[net.Conn]bool)
	)
	go func() {
		<-sig
		ln.Close()
		connsMu.Lock()
		for c := range conns {
			c.Close()
		}
		connsMu.Unlock()
	}()
	for {
		conn, err := ln.Accept()
		if err != nil {
			break
		}
		connsMu.Lock()
		conns[conn] = true
		connsMu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				connsMu.Lock()
				delete(conns, conn)
				connsMu.Unlock()
				conn.Close()
			}()
			br := bufio.NewReader(conn)
			var buf, reply []byte
			for {
				obj, err := stream.ReadObject(br, buf, 1<<20)
				if err != nil {
					if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
						fmt.Fprintf(os.Stderr, "connection %s: %s\n", conn.RemoteAddr(), err)
					}
					return
				}
				buf = obj
				received.Add(1)
				if !*quiet {
					outMu.Lock()
					out.Write(obj)
					out.WriteByte('\n')
					out.Flush()
					outMu.Unlock()
				}
				req, err := stream.ParseReply(obj) // finds the id of a request too
				if err != nil || !req.HasID {
					continue
				}
				if rejects.Add(-1) >= 0 {
					reply = fmt.Appendf(reply[:0], `{"jsonrpc":"2.0","error":{"code":-32000,"message":"rejected by evq listen"},"id":%d}`, req.ID)
				} else {
					reply = fmt.Appendf(reply[:0], `{"jsonrpc":"2.0","result":"OK","id":%d}`, req.ID)
				}
				if _, err := conn.Write(reply); err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	fmt.Fprintf(os.Stderr, "received %d events\n", received.Load())
	return nil
}
