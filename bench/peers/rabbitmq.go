package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// rabbit is a RabbitMQ quorum queue: publishers publish persistent messages
// in confirm mode and wait for each confirm; one consumer acknowledges each
// message.
type rabbit struct {
	url   string
	queue string

	mu       sync.Mutex
	conns    []*amqp.Connection
	pub      *amqp.Connection // the connection new publishers open channels on
	pubChans int
}

func newRabbit(url string) (*rabbit, error) {
	r := &rabbit{url: url, queue: fmt.Sprintf("evq-peers-%d", time.Now().UnixNano())}
	c, err := r.dial()
	if err != nil {
		return nil, err
	}
	ch, err := c.Channel()
	if err != nil {
		return nil, err
	}
	defer ch.Close()
	_, err = ch.QueueDeclare(r.queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"})
	return r, err
}

func (r *rabbit) dial() (*amqp.Connection, error) {
	c, err := amqp.Dial(r.url)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.conns = append(r.conns, c)
	r.mu.Unlock()
	return c, nil
}

func (r *rabbit) Name() string { return "rabbitmq-quorum" }

func (r *rabbit) Durability() string {
	return "quorum queue (Raft log fsynced before the confirm), persistent messages, publisher confirms, manual acks"
}

func (r *rabbit) Consumers() int { return 1 }

func (r *rabbit) Start(ctx context.Context, deliver func([]byte)) error {
	c, err := r.dial()
	if err != nil {
		return err
	}
	ch, err := c.Channel()
	if err != nil {
		return err
	}
	if err := ch.Qos(2000, 0, false); err != nil {
		return err
	}
	msgs, err := ch.ConsumeWithContext(ctx, r.queue, "", false, false, false, false, nil)
	if err != nil {
		return err
	}
	go func() {
		for d := range msgs {
			deliver(d.Body)
			d.Ack(false)
		}
	}()
	return nil
}

// Publisher gives each publisher its own channel; 16 publishers share a
// connection.
func (r *rabbit) Publisher(ctx context.Context) (func([]byte) error, error) {
	r.mu.Lock()
	if r.pub == nil || r.pubChans == 16 {
		c, err := amqp.Dial(r.url)
		if err != nil {
			r.mu.Unlock()
			return nil, err
		}
		r.conns = append(r.conns, c)
		r.pub, r.pubChans = c, 0
	}
	r.pubChans++
	c := r.pub
	r.mu.Unlock()
	ch, err := c.Channel()
	if err != nil {
		return nil, err
	}
	if err := ch.Confirm(false); err != nil {
		return nil, err
	}
	return func(p []byte) error {
		conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", r.queue, true, false,
			amqp.Publishing{DeliveryMode: amqp.Persistent, ContentType: "text/plain", Body: p})
		if err != nil {
			return err
		}
		ok, err := conf.WaitContext(ctx)
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("nacked by the broker")
		}
		return nil
	}, nil
}

func (r *rabbit) Close() error {
	var errs []error
	r.mu.Lock()
	conns := r.conns
	r.mu.Unlock()
	if len(conns) > 0 {
		if ch, err := conns[0].Channel(); err == nil {
			_, err = ch.QueueDelete(r.queue, false, false, false)
			errs = append(errs, err)
		}
	}
	for _, c := range conns {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}
