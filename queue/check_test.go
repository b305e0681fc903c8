package queue

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/evq/evq"
	bolt "go.etcd.io/bbolt"
)

// TestCheck_FindsDamage writes records that break evq's invariants behind
// the log's back and checks that Check reports each of them.
func TestCheck_FindsDamage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "evq.db")
	l, err := Open(path, &Options{RetentionInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	sub := &evq.Subscription{Event: "E_C", Socket: "tcp:127.0.0.1:1"}
	if err := l.PutSubscription(sub, 0, true); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(context.Background(), &evq.Event{Name: "E_C"}, &evq.Event{Name: "E_C"}); err != nil {
		t.Fatal(err)
	}
	if r, err := l.Check(); err != nil {
		t.Fatalf("a healthy store: %v %v", err, r.Problems)
	}
	err = l.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents).Bucket([]byte("E_C"))
		if err := b.Put(seqKey(1), []byte{formatVersion, 1, 2}); err != nil { // torn record
			return err
		}
		if err := b.Put(seqKey(99), encodeEvent(nil, &evq.Event{Name: "E_C"})); err != nil { // beyond last seq
			return err
		}
		if err := tx.Bucket(bucketCursors).Put(seqKey(sub.ID), seqKey(50)); err != nil {
			return err
		}
		dl, err := tx.Bucket(bucketDLQ).CreateBucketIfNotExists(seqKey(77))
		if err != nil {
			return err
		}
		return dl.Put(seqKey(1), []byte("junk"))
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := l.Check()
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Check of a damaged store: %v", err)
	}
	all := strings.Join(r.Problems, "\n")
	for _, want := range []string{"event 1 of E_C: bad header", "seq 99 is above the last seq 2", "cursor 50 is above the last seq",
		"dead letters for subscription 77, which does not exist", "dead letter 1", "meta: stored bytes"} {
		if !strings.Contains(all, want) {
			t.Errorf("no problem mentions %q in:\n%s", want, all)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckFile(path); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("CheckFile: %v", err)
	}
}
