package transports_test

import (
	"errors"
	"testing"

	"github.com/evq/evq"
	"github.com/evq/evq/transports"
	"github.com/evq/evq/virtual"
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
	if !errors.Is(err, virtual.ErrParallel) {
		t.Fatalf("virtual PARALLEL as one transport: %v", err)
	}
	// A PARALLEL group's member lane gets its transport behind a breaker.
	tr, err = transports.New(evq.Subscription{Event: "E_X", Socket: "tcp:127.0.0.1:1", Parent: 7})
	if _, ok := tr.(*virtual.Member); err != nil || !ok {
		t.Fatalf("lane of a PARALLEL group: %T %v", tr, err)
	}
	tr.Close()
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
