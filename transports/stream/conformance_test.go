package stream_test

import (
	"testing"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/internal/evqtest"
	"github.com/evq/evq/transports/transporttest"
)

type streamPeer struct{ *evqtest.Receiver }

func (p streamPeer) RejectNext(n int) { p.RejectFirst(n) }
func (p streamPeer) Stall(on bool)    { p.Silent(on) }

func (p streamPeer) Payloads() [][]byte {
	var out [][]byte
	for _, r := range p.Requests() {
		out = append(out, r.Raw)
	}
	return out
}

func TestConformance(t *testing.T) {
	for _, reliable := range []bool{false, true} {
		name := map[bool]string{false: "Notify", true: "Reliable"}[reliable]
		t.Run(name, func(t *testing.T) {
			transporttest.Run(t, transporttest.Harness{
				NewPeer: func(t *testing.T) transporttest.Peer { return streamPeer{evqtest.NewReceiver(t)} },
				New: func(t *testing.T, socket string) evq.Transport {
					return newTransport(t, socket, evq.Options{Reliable: reliable, MaxInflight: 16, Timeout: 300 * time.Millisecond})
				},
				DetectsDown: reliable,
				Reliable:    reliable,
			})
		})
	}
}
