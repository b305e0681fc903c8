package evq

import (
	"errors"
	"strings"
	"testing"
)

func TestParseSocket(t *testing.T) {
	tests := []struct {
		in   string
		want Socket
	}{
		{"tcp:127.0.0.1:9001", Socket{Scheme: "tcp", Host: "127.0.0.1", Port: 9001}},
		{"tcp:127.0.0.1:9002/evq_method", Socket{Scheme: "tcp", Host: "127.0.0.1", Port: 9002, Method: "evq_method"}},
		{"jsonrpc:[::1]:80", Socket{Scheme: "jsonrpc", Host: "::1", Port: 80}},
		{"xmlrpc:127.0.0.1:9201:evq_xmlrpc_method", Socket{Scheme: "xmlrpc", Host: "127.0.0.1", Port: 9201, Method: "evq_xmlrpc_method"}},
		{"udp:localhost:9101", Socket{Scheme: "udp", Host: "localhost", Port: 9101}},
		{"unix:/run/evq.sock", Socket{Scheme: "unix", Path: "/run/evq.sock"}},
		{"flatstore:/var/log/ev.log", Socket{Scheme: "flatstore", Path: "/var/log/ev.log"}},
		{"rabbitmq:h/key", Socket{Scheme: "rabbitmq", Host: "h", Port: 5672, User: "guest", Password: "guest", RoutingKey: "key"}},
		{"rabbitmq:u:p@h:5673/ex?key", Socket{Scheme: "rabbitmq", Host: "h", Port: 5673, User: "u", Password: "p", Exchange: "ex", RoutingKey: "key"}},
	}
	for _, tt := range tests {
		got, err := ParseSocket(tt.in)
		if err != nil {
			t.Errorf("ParseSocket(%q): %v", tt.in, err)
			continue
		}
		tt.want.raw = tt.in
		if got.String() != tt.in || got.Scheme != tt.want.Scheme || got.Host != tt.want.Host || got.Port != tt.want.Port ||
			got.Method != tt.want.Method || got.Path != tt.want.Path || got.User != tt.want.User ||
			got.Password != tt.want.Password || got.Exchange != tt.want.Exchange || got.RoutingKey != tt.want.RoutingKey {
			t.Errorf("ParseSocket(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseSocket_Virtual(t *testing.T) {
	s, err := ParseSocket("virtual:failover tcp:127.0.0.1:1 udp:127.0.0.1:2")
	if err != nil {
		t.Fatal(err)
	}
	if s.Policy != PolicyFailover || len(s.Members) != 2 || s.Members[1].Scheme != "udp" {
		t.Fatalf("got %+v", s)
	}
}

func TestParseSocket_Errors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"foo:bar", `unknown scheme "foo"`},
		{"nocolon", "no scheme"},
		{"tcp:127.0.0.1", "missing port; expected tcp:host:port[/method]"},
		{"tcp:127.0.0.1:99999", `bad port "99999"`},
		{"xmlrpc:127.0.0.1:9000", "expected xmlrpc:host:port:method"},
		{"unix:", "empty path"},
		{"rabbitmq:host", "missing /routing_key"},
		{"virtual:SOMETIMES tcp:a:1", `unknown policy "SOMETIMES" (want PARALLEL, FAILOVER or ROUND-ROBIN); expected virtual:POLICY socket1 socket2 ...`},
		{"virtual:PARALLEL", "no members; expected virtual:POLICY socket1 socket2 ..."},
		{"virtual:PARALLEL tcp:a:1 virtual:FAILOVER", `member "virtual:FAILOVER": virtual groups cannot be nested; expected virtual:POLICY`},
		{"virtual:FAILOVER tcp:a:1 bogus:x", `member: invalid socket "bogus:x": unknown scheme "bogus"`},
		{"virtual:PARALLEL tcp:a:1 tcp:a:1", `member "tcp:a:1" appears twice`},
	}
	for _, tt := range tests {
		_, err := ParseSocket(tt.in)
		if err == nil {
			t.Errorf("ParseSocket(%q): no error", tt.in)
			continue
		}
		if !errors.Is(err, ErrInvalidSocket) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), `"`+tt.in+`"`) {
			t.Errorf("ParseSocket(%q) error %q: want it to quote the input and contain %q", tt.in, err, tt.want)
		}
	}
}

func FuzzParseSocket(f *testing.F) {
	for _, s := range []string{"tcp:127.0.0.1:9001/m", "xmlrpc:h:1:m", "udp:[::1]:5", "unix:/x", "flatstore:/f",
		"rabbitmq:u:p@h:1/e?k", "virtual:FAILOVER tcp:a:1 udp:b:2", "foo:", ":", "tcp::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseSocket(in)
		if err != nil {
			if !errors.Is(err, ErrInvalidSocket) {
				t.Fatalf("error not ErrInvalidSocket: %v", err)
			}
			return
		}
		// A parsed socket parses again to the same thing.
		s2, err := ParseSocket(s.String())
		if err != nil || s2.Scheme != s.Scheme || s2.Port != s.Port || s2.Host != s.Host || len(s2.Members) != len(s.Members) {
			t.Fatalf("reparse of %q: %+v, %v", s.String(), s2, err)
		}
		if s.Port < 0 || s.Port > 65535 {
			t.Fatalf("port %d", s.Port)
		}
	})
}

func TestSocketWarnings(t *testing.T) {
	for _, tt := range []struct {
		socket string
		opts   Options
		want   string // "" for no warning
	}{
		{"tcp:a:1", Options{}, ""},
		{"virtual:FAILOVER tcp:a:1 udp:b:2", Options{}, ""},
		{"virtual:FAILOVER udp:b:2 tcp:a:1", Options{}, "FAILOVER member 1 (udp:b:2) cannot detect a failed delivery, so the members after it are never tried: put it last"},
		{"virtual:FAILOVER tcp:a:1 unix:/s tcp:c:3", Options{}, "FAILOVER member 2 (unix:/s)"},
		{"virtual:ROUND-ROBIN tcp:a:1 udp:b:2", Options{}, "ROUND-ROBIN member 2 (udp:b:2) cannot detect a failed delivery: the events rotated to it are lost if its receiver is down"},
		{"virtual:PARALLEL tcp:a:1 udp:b:2", Options{}, ""},
		{"virtual:PARALLEL tcp:a:1 udp:b:2", Options{ParallelSuccess: SuccessAny}, "PARALLEL member 2 (udp:b:2) cannot detect a failed delivery, so with parallel_success any it counts every event delivered"},
	} {
		sock, err := ParseSocket(tt.socket)
		if err != nil {
			t.Fatal(err)
		}
		got := sock.Warnings(tt.opts)
		if tt.want == "" && len(got) != 0 || tt.want != "" && (len(got) != 1 || !strings.HasPrefix(got[0], tt.want)) {
			t.Errorf("%s: warnings %q, want %q", tt.socket, got, tt.want)
		}
	}
}
