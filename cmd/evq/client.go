package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
)

// client talks to a running evq over its HTTP API.
type client struct {
	server *string
	token  *string
	hc     http.Client
}

// newClient registers --server and --token on fs.
func newClient(fs *flag.FlagSet) *client {
	def := os.Getenv("EVQ_SERVER")
	if def == "" {
		def = "http://127.0.0.1:8055"
	}
	return &client{
		server: fs.String("server", def, "evq server URL (env EVQ_SERVER)"),
		token:  fs.String("token", os.Getenv("EVQ_TOKEN"), "API token (env EVQ_TOKEN)"),
	}
}

func (c *client) request(method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	base := strings.TrimRight(*c.server, "/")
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("server URL %q: %w", *c.server, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if *c.token != "" {
		req.Header.Set("Authorization", "Bearer "+*c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("cannot reach evq at %s: is \"evq serve\" running? (set --server or EVQ_SERVER)", base)
		}
		return nil, err
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var e struct{ Error string }
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("%s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return resp, nil
}

// call sends body (if not nil) and decodes the reply into out (if not nil).
func (c *client) call(method, path string, body, out any) error {
	resp, err := c.request(method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
