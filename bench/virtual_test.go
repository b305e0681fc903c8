package bench

import (
	"context"
	"testing"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/bench/load"
	"github.com/evq/evq/delivery"
	"github.com/evq/evq/internal/evqtest"
	"github.com/evq/evq/transports"
)

// BenchmarkVirtual delivers a stored backlog through each virtual group
// policy to reliable tcp members (window 64), with every member healthy and
// with one member dead (nothing listening: its connection is refused). With
// its breaker open, a dead member should cost little: FAILOVER skips it
// (it is first, the worst place), ROUND-ROBIN rotates past it, and PARALLEL
// delivers to the live member on its own lane. events/s counts events
// delivered once to the group (PARALLEL: to every live member).
func BenchmarkVirtual(b *testing.B) {
	for _, tc := range []struct {
		policy  string
		members int
		dead    int // index of the dead member in the one-dead case
	}{
		{evq.PolicyFailover, 2, 0},
		{evq.PolicyRoundRobin, 3, 1},
		{evq.PolicyParallel, 2, 1},
	} {
		for _, dead := range []bool{false, true} {
			name := tc.policy + "/healthy"
			if dead {
				name = tc.policy + "/one-dead"
			}
			b.Run(name, func(b *testing.B) { benchGroup(b, tc.policy, tc.members, dead, tc.dead) })
		}
	}
}

func benchGroup(b *testing.B, policy string, members int, withDead bool, deadAt int) {
	l := evqtest.MustOpenLog(b, nil)
	e := delivery.New(l, &delivery.Options{NewTransportFunc: transports.New})
	if err := e.Start(); err != nil {
		b.Fatal(err)
	}
	defer e.Close(context.Background())

	socket := "virtual:" + policy
	var live []*load.AckReceiver
	for i := 0; i < members; i++ {
		if withDead && i == deadAt {
			socket += " tcp:" + deadAddr(b)
			continue
		}
		r, err := load.NewAckReceiver(nil)
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		live = append(live, r)
		socket += " " + r.Socket()
	}

	// The backlog is stored before the clock starts: this measures delivery.
	batch := make([]*evq.Event, 0, 1024)
	for i := 0; i < b.N; i++ {
		batch = append(batch, evqtest.CDR(i))
		if len(batch) == cap(batch) || i == b.N-1 {
			if err := e.RaiseBatch(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	b.SetBytes(256)
	b.ResetTimer()
	start := time.Now()
	_, err := e.Subscribe(context.Background(), delivery.SubscribeRequest{Event: "E_ACC_CDR", Socket: socket,
		Start: delivery.Start{Kind: delivery.StartEarliest}, Options: evq.Options{Reliable: true, MaxInflight: 64}})
	if err != nil {
		b.Fatal(err)
	}
	done := func() bool {
		var sum int64
		for _, r := range live {
			n := r.Received()
			if policy == evq.PolicyParallel && n < int64(b.N) {
				return false
			}
			sum += n
		}
		return sum >= int64(b.N)
	}
	deadline := time.Now().Add(time.Minute)
	for !done() {
		if time.Now().After(deadline) {
			b.Fatalf("not delivered within a minute")
		}
		time.Sleep(200 * time.Microsecond)
	}
	d := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/d.Seconds(), "events/s")
}
