package transports_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/evq/evq"
	"github.com/evq/evq/transports"
)

func TestNew(t *testing.T) {
	tr, err := transports.New(evq.Subscription{Event: "E_X", Socket: "jsonrpc:127.0.0.1:9000/m"})
	if err != nil {
		t.Fatal(err)
	}
	tr.Close()
	for _, s := range []string{"udp:127.0.0.1:9000", "unix:/run/x.sock", "xmlrpc:127.0.0.1:9000:m", "flatstore:/tmp/f", "rabbitmq:127.0.0.1/key"} {
		tr, err := transports.New(evq.Subscription{Event: "E_X", Socket: s})
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		tr.Close()
	}
	_, err = transports.New(evq.Subscription{Event: "E_X", Socket: "virtual:PARALLEL tcp:127.0.0.1:1 tcp:127.0.0.1:2"})
	if !errors.Is(err, transports.ErrUnsupported) || !strings.Contains(err.Error(), "PARALLEL") {
		t.Fatalf("virtual PARALLEL: %v", err)
	}
	tr, err = transports.New(evq.Subscription{Event: "E_X", Socket: "virtual:FAILOVER tcp:127.0.0.1:1 udp:127.0.0.1:2"})
	if err != nil {
		t.Fatalf("virtual FAILOVER: %v", err)
	}
	tr.Close()
	_, err = transports.New(evq.Subscription{Event: "E_X", Socket: "nope:1"})
	if !errors.Is(err, evq.ErrInvalidSocket) {
		t.Fatalf("bad socket: %v", err)
	}
}
