package evqtest

import (
	"context"
	"testing"
	"time"

	"github.com/evq/evq/delivery"
	"github.com/evq/evq/transports"
)

// StartEngine starts a delivery engine on l with fast retries (1 ms
// doubling to 20 ms) and evq's real transports unless opts says otherwise.
// It is closed at cleanup, and a close that times out fails the test.
func StartEngine(tb testing.TB, l delivery.Log, opts *delivery.Options) *delivery.Engine {
	tb.Helper()
	o := delivery.Options{RetryInitial: time.Millisecond, RetryMax: 20 * time.Millisecond}
	if opts != nil {
		o = *opts
	}
	if o.NewTransportFunc == nil {
		o.NewTransportFunc = transports.New
	}
	e := delivery.New(l, &o)
	if err := e.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.Close(ctx); err != nil {
			tb.Error(err)
		}
	})
	return e
}
