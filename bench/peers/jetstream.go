package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// jet is a JetStream stream with file storage: publishers publish and wait
// for the stream's ack; a durable consumer acknowledges each message.
type jet struct {
	name       string
	durability string
	nc         *nats.Conn
	js         jetstream.JetStream
	stream     string
	cc         jetstream.ConsumeContext
	srv        *server.Server // the embedded server, if any
	dir        string
}

// newJetStream connects to the JetStream server at url.
func newJetStream(url string) (*jet, error) {
	return openJet(url, "jetstream", "file storage on the server at "+url+
		"; its default sync_interval: acknowledged after a write, fsynced every 2 minutes")
}

// newJetStreamSync starts a JetStream server in this process with sync
// always: every write is fsynced before it is acknowledged.
func newJetStreamSync() (*jet, error) {
	dir, err := os.MkdirTemp("", "evq-peers-js-")
	if err != nil {
		return nil, err
	}
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir,
		SyncAlways: true, NoLog: true, NoSigs: true})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		os.RemoveAll(dir)
		return nil, errors.New("embedded nats-server did not start")
	}
	j, err := openJet(srv.ClientURL(), "jetstream-sync", "file storage, sync_interval always: every write fsynced before the ack (embedded nats-server)")
	if err != nil {
		srv.Shutdown()
		os.RemoveAll(dir)
		return nil, err
	}
	j.srv, j.dir = srv, dir
	return j, nil
}

func openJet(url, name, durability string) (*jet, error) {
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second))
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	j := &jet{name: name, durability: durability, nc: nc, js: js, stream: fmt.Sprintf("EVQPEERS%d", time.Now().UnixNano())}
	_, err = js.CreateStream(context.Background(), jetstream.StreamConfig{Name: j.stream, Subjects: []string{j.stream + ".>"},
		Storage: jetstream.FileStorage})
	if err != nil {
		nc.Close()
		return nil, err
	}
	return j, nil
}

func (j *jet) Name() string       { return j.name }
func (j *jet) Durability() string { return j.durability }
func (j *jet) Consumers() int     { return 1 }

func (j *jet) Start(ctx context.Context, deliver func([]byte)) error {
	cons, err := j.js.CreateOrUpdateConsumer(ctx, j.stream, jetstream.ConsumerConfig{Durable: "bench",
		AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 20000})
	if err != nil {
		return err
	}
	j.cc, err = cons.Consume(func(m jetstream.Msg) {
		deliver(m.Data())
		m.Ack()
	}, jetstream.PullMaxMessages(2000))
	return err
}

func (j *jet) Publisher(ctx context.Context) (func([]byte) error, error) {
	subject := j.stream + ".e"
	return func(p []byte) error {
		_, err := j.js.Publish(ctx, subject, p)
		return err
	}, nil
}

func (j *jet) Close() error {
	if j.cc != nil {
		j.cc.Stop()
	}
	err := j.js.DeleteStream(context.Background(), j.stream)
	j.nc.Close()
	if j.srv != nil {
		j.srv.Shutdown()
		j.srv.WaitForShutdown()
		os.RemoveAll(j.dir)
	}
	return err
}
