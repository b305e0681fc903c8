package rabbitmq_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/evq/evq"
	"github.com/evq/evq/transports/rabbitmq"
	"github.com/evq/evq/transports/transporttest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// broker connects to the RabbitMQ on 127.0.0.1:5672, or skips the test
// (fails it when EVQ_REQUIRE_SERVICES=1, as in CI).
func broker(t *testing.T) *amqp.Channel {
	t.Helper()
	conn, err := amqp.DialConfig("amqp://guest:guest@127.0.0.1:5672/", amqp.Config{Dial: amqp.DefaultDial(2 * time.Second)})
	if err != nil {
		if os.Getenv("EVQ_REQUIRE_SERVICES") == "1" {
			t.Fatalf("RabbitMQ is required (EVQ_REQUIRE_SERVICES=1) but 127.0.0.1:5672 does not answer: %v", err)
		}
		t.Skipf("RabbitMQ not reachable on 127.0.0.1:5672 (%v): start it to run this test", err)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return ch
}

// queue is a consumer of a fresh test queue, bound to exchange/key if an
// exchange is given. It implements transporttest.Peer: Stop deletes the
// queue (the broker then returns mandatory messages), Restart declares it.
type queue struct {
	t        *testing.T
	ch       *amqp.Channel
	name     string
	exchange string
	mu       sync.Mutex
	got      []amqp.Delivery
	wg       sync.WaitGroup
}

func newQueue(t *testing.T, exchange string) *queue {
	t.Helper()
	q := &queue{t: t, ch: broker(t), name: fmt.Sprintf("evq-test-%d", rand.Uint64()), exchange: exchange}
	if exchange != "" {
		if err := q.ch.ExchangeDeclare(exchange, "direct", false, true, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	q.Restart()
	t.Cleanup(func() { q.Stop() })
	return q
}

func (q *queue) Socket() string {
	if q.exchange != "" {
		return "rabbitmq:guest:guest@127.0.0.1:5672/" + q.exchange + "?" + q.name
	}
	return "rabbitmq:127.0.0.1/" + q.name
}

func (q *queue) Restart() {
	if _, err := q.ch.QueueDeclare(q.name, false, false, false, false, nil); err != nil {
		q.t.Fatal(err)
	}
	if q.exchange != "" {
		if err := q.ch.QueueBind(q.name, q.name, q.exchange, false, nil); err != nil {
			q.t.Fatal(err)
		}
	}
	deliveries, err := q.ch.Consume(q.name, "", true, false, false, false, nil)
	if err != nil {
		q.t.Fatal(err)
	}
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		for d := range deliveries {
			q.mu.Lock()
			q.got = append(q.got, d)
			q.mu.Unlock()
		}
	}()
}

func (q *queue) Stop() {
	q.ch.QueueDelete(q.name, false, false, false) // ends the consumer
	q.wg.Wait()
}

func (q *queue) Payloads() [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out [][]byte
	for _, d := range q.got {
		out = append(out, d.Body)
	}
	return out
}

func (q *queue) wait(n int) []amqp.Delivery {
	q.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		q.mu.Lock()
		got := append([]amqp.Delivery(nil), q.got...)
		q.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			q.t.Fatalf("queue got %d messages, want %d", len(got), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func newTransport(t *testing.T, socket string, opts evq.Options) *rabbitmq.Transport {
	t.Helper()
	sock, err := evq.ParseSocket(socket)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := rabbitmq.New(sock, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func TestPublish(t *testing.T) {
	for _, exchange := range []string{"", fmt.Sprintf("evq-test-x-%d", rand.Uint64())} {
		q := newQueue(t, exchange)
		tr := newTransport(t, q.Socket(), evq.Options{Reliable: true})
		ev := &evq.Event{Seq: 7, Name: "E_EVQ_TEST", Named: true, Params: []evq.Param{{Name: "str", Value: evq.String("hello")}, {Name: "int", Value: evq.Int(42)}, {Name: "neg", Value: evq.Int(-7)}}}
		if n, err := tr.Send(context.Background(), []*evq.Event{ev}); n != 1 || err != nil {
			t.Fatal(n, err)
		}
		d := q.wait(1)[0]
		golden, _ := os.ReadFile("../../testdata/opensips/A_named_str_int.stream_rm0.bin")
		if !bytes.Equal(d.Body, golden) || d.ContentType != "application/json" || d.DeliveryMode != amqp.Persistent || d.MessageId != "7" {
			t.Errorf("exchange %q: body %s, content type %q, delivery mode %d, id %q", exchange, d.Body, d.ContentType, d.DeliveryMode, d.MessageId)
		}
	}
}

func TestReliable_Unroutable(t *testing.T) {
	broker(t)
	tr := newTransport(t, fmt.Sprintf("rabbitmq:127.0.0.1/evq-no-such-queue-%d", rand.Uint64()), evq.Options{Reliable: true})
	n, err := tr.Send(context.Background(), []*evq.Event{{Seq: 1, Name: "E_X"}, {Seq: 2, Name: "E_X"}})
	if n != 0 || err == nil || !strings.Contains(err.Error(), "returned by the broker") || !strings.Contains(err.Error(), "NO_ROUTE") {
		t.Fatalf("n=%d err=%v", n, err)
	}
	// Not reliable: the broker drops it and nobody knows, as with OpenSIPS.
	tr2 := newTransport(t, fmt.Sprintf("rabbitmq:127.0.0.1/evq-no-such-queue-%d", rand.Uint64()), evq.Options{})
	if n, err := tr2.Send(context.Background(), []*evq.Event{{Seq: 1, Name: "E_X"}}); n != 1 || err != nil {
		t.Fatalf("n=%d err=%v", n, err)
	}
}

// TestReconnect has the broker close every client connection, as a broker
// restart does, between two sends: the same transport reconnects and
// delivers, and nothing sent before is lost.
func TestReconnect(t *testing.T) {
	q := newQueue(t, "")
	tr := newTransport(t, q.Socket(), evq.Options{Reliable: true})
	ev := func(i int) []*evq.Event { return []*evq.Event{{Seq: uint64(i), Name: "E_R"}} }
	if n, err := tr.Send(context.Background(), ev(1)); n != 1 || err != nil {
		t.Fatal(n, err)
	}
	q.wait(1)
	ctl, err := exec.LookPath("rabbitmqctl")
	if err != nil {
		t.Skip("rabbitmqctl not found: cannot make the broker drop connections")
	}
	if out, err := exec.Command(ctl, "close_all_connections", "evq test").CombinedOutput(); err != nil {
		t.Skipf("rabbitmqctl close_all_connections: %v %s", err, out)
	}
	q.wg.Wait() // our consumer's connection was closed too: consume again
	q.ch = broker(t)
	q.Restart()
	failures := 0
	deadline := time.Now().Add(10 * time.Second)
	for {
		// A send on the dead connection fails; the next one reconnects, as
		// the engine's retries would.
		n, err := tr.Send(context.Background(), ev(2))
		if n == 1 && err == nil {
			break
		}
		failures++
		if time.Now().After(deadline) {
			t.Fatalf("no delivery after the broker dropped the connection: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	got := q.wait(2)
	if got[1].MessageId != "2" {
		t.Fatalf("after reconnecting the queue got message %q", got[1].MessageId)
	}
	t.Logf("%d failed sends before the reconnect", failures)
}

func TestConformance(t *testing.T) {
	broker(t)
	for _, reliable := range []bool{false, true} {
		t.Run(map[bool]string{false: "Notify", true: "Reliable"}[reliable], func(t *testing.T) {
			transporttest.Run(t, transporttest.Harness{
				NewPeer: func(t *testing.T) transporttest.Peer { return newQueue(t, "") },
				New: func(t *testing.T, socket string) evq.Transport {
					return newTransport(t, socket, evq.Options{Reliable: reliable})
				},
				DetectsDown: reliable, // mandatory publishing: a deleted queue returns the message
			})
		})
	}
}
