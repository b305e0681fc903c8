package delivery_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/evq/evq"
	"github.com/evq/evq/delivery"
	"github.com/evq/evq/queue"
	"github.com/evq/evq/transports"
)

// Example raises an event through the Go API and shows what a tcp:
// subscriber receives: the bytes OpenSIPS's event_stream would send.
func Example() {
	dir, _ := os.MkdirTemp("", "evq-example-")
	defer os.RemoveAll(dir)
	log, err := queue.Open(filepath.Join(dir, "evq.db"), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer log.Close()
	engine := delivery.New(log, &delivery.Options{NewTransportFunc: transports.New})
	if err := engine.Start(); err != nil {
		fmt.Println(err)
		return
	}
	defer engine.Close(context.Background())

	// A subscriber that prints the first thing it reads.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	got := make(chan string)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 512)
		n, _ := c.Read(buf)
		got <- string(buf[:n])
	}()

	ctx := context.Background()
	_, err = engine.Subscribe(ctx, delivery.SubscribeRequest{Event: "E_ACC_CDR", Socket: "tcp:" + ln.Addr().String()})
	if err != nil {
		fmt.Println(err)
		return
	}
	ev := &evq.Event{Name: "E_ACC_CDR", Named: true, Params: []evq.Param{
		{Name: "callid", Value: evq.String("abc@example.com")},
		{Name: "duration", Value: evq.Int(42)},
	}}
	if err := engine.Raise(ctx, ev); err != nil { // returns once the event is fsynced
		fmt.Println(err)
		return
	}
	fmt.Println("stored as seq", ev.Seq)
	fmt.Println(<-got)
	// Output:
	// stored as seq 1
	// {"jsonrpc":"2.0","method":"E_ACC_CDR","params":{"callid":"abc@example.com","duration":42}}
}
