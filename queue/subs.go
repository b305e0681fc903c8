package queue

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/evq/evq"
	bolt "go.etcd.io/bbolt"
)

// PutSubscription stores sub. A sub with ID 0 gets a new ID, written back into
// sub, and its cursor is set to cursor; an existing sub keeps its cursor
// unless setCursor is true.
func (l *Log) PutSubscription(sub *evq.Subscription, cursor uint64, setCursor bool) error {
	if setCursor || sub.ID == 0 {
		// A stored cursor never passes bbolt's last seq (evq check and the
		// start-up check hold it to that).
		l.waitApplied(cursor)
		if a := l.applied.Load(); a < cursor {
			l.mu.Lock()
			err := l.applyErr
			l.mu.Unlock()
			if err == nil {
				err = ErrClosed
			}
			return fmt.Errorf("store subscription %s %s: the store is behind the WAL (at seq %d of %d): %w", sub.Event, sub.Socket, a, cursor, err)
		}
	}
	err := l.db.Update(func(tx *bolt.Tx) error {
		subs := tx.Bucket(bucketSubs)
		if sub.ID == 0 {
			meta := tx.Bucket(bucketMeta)
			id := u64(meta.Get(keyNextSub)) + 1
			if err := meta.Put(keyNextSub, seqKey(id)); err != nil {
				return err
			}
			sub.ID = id
			setCursor = true
		}
		rec, err := json.Marshal(sub)
		if err != nil {
			return err
		}
		if err := subs.Put(seqKey(sub.ID), rec); err != nil {
			return err
		}
		if setCursor {
			return tx.Bucket(bucketCursors).Put(seqKey(sub.ID), seqKey(cursor))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store subscription %s %s: %w", sub.Event, sub.Socket, classify(err))
	}
	if setCursor {
		l.mu.Lock()
		delete(l.dirty, sub.ID)
		l.mu.Unlock()
	}
	return nil
}

// Subscriptions returns every stored subscription, in ID order.
func (l *Log) Subscriptions() ([]evq.Subscription, error) {
	var out []evq.Subscription
	err := l.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSubs).ForEach(func(k, v []byte) error {
			var s evq.Subscription
			if err := json.Unmarshal(v, &s); err != nil {
				return fmt.Errorf("%w: subscription %d: %w", ErrCorrupt, keySeq(k), err)
			}
			out = append(out, s)
			return nil
		})
	})
	return out, err
}

// DeleteSubscription removes a subscription with its cursor and dead letters.
func (l *Log) DeleteSubscription(id uint64) error {
	l.mu.Lock()
	delete(l.dirty, id)
	l.mu.Unlock()
	err := l.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketSubs).Get(seqKey(id)) == nil {
			return ErrNotFound
		}
		if err := tx.Bucket(bucketSubs).Delete(seqKey(id)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketCursors).Delete(seqKey(id)); err != nil {
			return err
		}
		if tx.Bucket(bucketDLQ).Bucket(seqKey(id)) != nil {
			return tx.Bucket(bucketDLQ).DeleteBucket(seqKey(id))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete subscription %d: %w", id, err)
	}
	return nil
}

// Cursor returns a subscription's cursor: every event of its name with a seq
// at or below it is acknowledged.
func (l *Log) Cursor(id uint64) (uint64, error) {
	l.mu.Lock()
	c, ok := l.dirty[id]
	l.mu.Unlock()
	if ok {
		return c, nil
	}
	err := l.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketCursors).Get(seqKey(id))
		if v == nil {
			return ErrNotFound
		}
		c = u64(v)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("cursor of subscription %d: %w", id, err)
	}
	return c, nil
}

// SetCursor records a subscription's cursor in memory; it is written with
// the next commit or within Options.CursorFlushInterval.
func (l *Log) SetCursor(id, cursor uint64) {
	l.mu.Lock()
	l.dirty[id] = cursor
	l.mu.Unlock()
}

// SetCursorSync sets a cursor and waits until it is on disk.
func (l *Log) SetCursorSync(ctx context.Context, id, cursor uint64) error {
	l.SetCursor(id, cursor)
	return l.Flush(ctx)
}
