package queue

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/evq/evq"
	bolt "go.etcd.io/bbolt"
)

// Dead letter layout: uvarint attempts, varint unix-nano time, uvarint-length
// error, uvarint-length event name, then the encoded event.
func encodeDeadLetter(d *evq.DeadLetter) []byte {
	b := binary.AppendUvarint(nil, uint64(d.Attempts))
	b = binary.AppendVarint(b, d.Time.UnixNano())
	b = appendString(b, d.Error)
	b = appendString(b, d.Event.Name)
	enc := encodeEvent(b, d.Event)
	putHeader(enc[len(b):], d.Event.Time.UnixNano(), 0)
	return enc
}

func decodeDeadLetter(seq uint64, v []byte) (*evq.DeadLetter, error) {
	d := decoder{b: v, str: string(v)} // one copy for the letter and its event
	dl := &evq.DeadLetter{Attempts: int(d.uvarint())}
	dl.Time = time.Unix(0, d.varint()).UTC()
	dl.Error = d.string()
	name := d.string()
	if d.err != nil {
		return nil, fmt.Errorf("dead letter %d: %w", seq, d.err)
	}
	dl.Event = new(evq.Event)
	if err := decodeInto(nil, dl.Event, name, seq, d.b, d.str[len(d.str)-len(d.b):]); err != nil {
		return nil, fmt.Errorf("dead letter: %w", err)
	}
	return dl, nil
}

// AddDeadLetter parks d for subscription id.
func (l *Log) AddDeadLetter(id uint64, d *evq.DeadLetter) error {
	err := l.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketSubs).Get(seqKey(id)) == nil {
			return ErrNotFound
		}
		b, err := tx.Bucket(bucketDLQ).CreateBucketIfNotExists(seqKey(id))
		if err != nil {
			return err
		}
		return b.Put(seqKey(d.Event.Seq), encodeDeadLetter(d))
	})
	if err != nil {
		return fmt.Errorf("park event %d for subscription %d: %w", d.Event.Seq, id, classify(err))
	}
	return nil
}

// DeadLetters returns up to max dead letters of subscription id with seq >
// after, in seq order.
func (l *Log) DeadLetters(id, after uint64, max int) ([]*evq.DeadLetter, error) {
	var out []*evq.DeadLetter
	err := l.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDLQ).Bucket(seqKey(id))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Seek(seqKey(after + 1)); k != nil && len(out) < max; k, v = c.Next() {
			d, err := decodeDeadLetter(keySeq(k), v)
			if err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list dead letters of subscription %d: %w", id, err)
	}
	return out, nil
}

// DeadLetterCount returns how many events are parked for subscription id.
func (l *Log) DeadLetterCount(id uint64) (int, error) {
	var n int
	err := l.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketDLQ).Bucket(seqKey(id)); b != nil {
			n = b.Stats().KeyN
		}
		return nil
	})
	return n, err
}

// DeleteDeadLetters removes the given seqs from subscription id's dead
// letters; with no seqs it removes them all. It returns how many it removed.
func (l *Log) DeleteDeadLetters(id uint64, seqs ...uint64) (int, error) {
	n := 0
	err := l.db.Update(func(tx *bolt.Tx) error {
		dlq := tx.Bucket(bucketDLQ)
		b := dlq.Bucket(seqKey(id))
		if b == nil {
			return nil
		}
		if len(seqs) == 0 {
			n = b.Stats().KeyN
			return dlq.DeleteBucket(seqKey(id))
		}
		for _, s := range seqs {
			if b.Get(seqKey(s)) != nil {
				n++
				if err := b.Delete(seqKey(s)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("delete dead letters of subscription %d: %w", id, err)
	}
	return n, nil
}
