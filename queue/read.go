package queue

import (
	"fmt"
	"sort"
	"time"

	"github.com/evq/evq"
	bolt "go.etcd.io/bbolt"
)

// Read returns up to max events named name with seq > after, in seq order.
// The read transaction is closed before Read returns, so callers may take
// their time with the events.
func (l *Log) Read(name string, after uint64, max int) ([]*evq.Event, error) {
	evs, err := l.ReadInto(nil, name, after, max)
	if err != nil || len(evs) == 0 {
		return nil, err
	}
	out := make([]*evq.Event, len(evs))
	for i := range evs {
		out[i] = &evs[i]
	}
	return out, nil
}

// ReadInto reads like Read into dst's memory, which it reuses: the events
// and their params' arrays, so that a reader that keeps reading (a delivery
// worker, a replay) allocates little more than a copy of the stored bytes.
// It returns dst refilled; what dst held before is overwritten.
//
// Events come from bbolt, then from the tail the applier has not written
// yet. The tail is taken first: whatever leaves it meanwhile is in bbolt by
// the time the read transaction starts. A reader that has everything bbolt
// holds (a delivery worker that keeps up) reads the tail alone, without a
// read transaction. The events' strings point into one
// copy of each bbolt value read (from the first event taken on), and for
// tail events into their encodings, which nothing writes once committed.
func (l *Log) ReadInto(dst []evq.Event, name string, after uint64, max int) ([]evq.Event, error) {
	dst, _, err := l.read(dst, nil, false, name, after, max)
	return dst, err
}

// ReadShared reads like ReadInto and returns a pointer to each event read,
// in ptrs' memory. The events are decoded once and shared by every reader,
// so the caller must not modify them: those still in the in-memory tail by
// the first reader that needs them, stored ones a block at a time into a
// cache of the blocks read last (cache.go). Only what cannot be shared, a
// tail batch read back from the WAL at open, is decoded into dst's memory.
// The subscribers of one event name (a fan-out) thus decode each event once
// instead of once each.
func (l *Log) ReadShared(dst []evq.Event, ptrs []*evq.Event, name string, after uint64, max int) ([]evq.Event, []*evq.Event, error) {
	return l.read(dst, ptrs[:0], true, name, after, max)
}

// read is ReadInto, and with share ReadShared.
func (l *Log) read(dst []evq.Event, ptrs []*evq.Event, share bool, name string, after uint64, max int) ([]evq.Event, []*evq.Event, error) {
	dst = dst[:0]
	l.mu.Lock()
	tail, applied := l.tail, l.applied.Load() // every event after applied is in tail
	l.mu.Unlock()
	ps := &params{hint: min(max, 1024)}
	// n counts the events read. With share, ptrs holds one entry per event:
	// nil for those decoded into dst (set at the end, once dst stops
	// moving), the shared event for the others.
	n := 0
	next := func() *evq.Event {
		n++
		if share {
			ptrs = append(ptrs, nil)
		}
		if len(dst) < cap(dst) {
			dst = dst[:len(dst)+1]
		} else {
			dst = append(dst, evq.Event{})
		}
		return &dst[len(dst)-1]
	}
	var err error
	if after < applied {
		gen := l.cache.generation() // before the transaction: see blockCache
		err = l.db.View(func(tx *bolt.Tx) error {
			applied = u64(tx.Bucket(bucketMeta).Get(keyLastSeq))
			b := tx.Bucket(bucketEvents).Bucket([]byte(name))
			if b == nil {
				return nil
			}
			ec := newEventCursor(b)
			if share {
				return l.readBlocksShared(ec, name, after, max, gen, &n, &ptrs)
			}
			var val string // a copy of ec.Val[base:]
			vals, base := -1, 0
			for ok := ec.Seek(after + 1); ok && n < max; ok = ec.Next() {
				if ec.Vals != vals {
					vals, base, val = ec.Vals, ec.Off, string(ec.Val[ec.Off:])
				}
				str := val[ec.Off-base : ec.Off-base+len(ec.Enc)]
				if err := decodeInto(ps, next(), name, ec.Seq, ec.Enc, str); err != nil {
					return err
				}
			}
			return ec.Err
		})
	}
	if err == nil && n < max {
		from := after
		if applied > from {
			from = applied
		}
		var fresh []evq.Event // this read's share of the decoding, in chunks that never move
		err = scanTail(tail, name, from, func(b *walBatch, i int) (bool, error) {
			seq, enc := b.first+uint64(i), b.enc[i]
			if !share || len(b.shared) == 0 { // a batch read back from the WAL is not shared
				if err := decodeInto(ps, next(), name, seq, enc, frozen(enc)); err != nil {
					return false, err
				}
				return n < max, nil
			}
			ev := b.shared[i].Load()
			if ev == nil {
				if len(fresh) == cap(fresh) {
					fresh = make([]evq.Event, 0, min(max-n, 64))
				}
				fresh = fresh[:len(fresh)+1]
				ev = &fresh[len(fresh)-1]
				if err := decodeInto(ps, ev, name, seq, enc, frozen(enc)); err != nil {
					return false, err
				}
				if !b.shared[i].CompareAndSwap(nil, ev) {
					ev = b.shared[i].Load() // another reader was first
				}
			}
			ptrs = append(ptrs, ev)
			n++
			return n < max, nil
		})
	}
	if err != nil {
		return dst[:0], ptrs[:0], fmt.Errorf("read %s after %d: %w", name, after, err)
	}
	j := 0
	for i := range ptrs {
		if ptrs[i] == nil {
			ptrs[i] = &dst[j]
			j++
		}
	}
	return dst, ptrs, nil
}

// readBlocksShared reads the stored events after after, up to max in all
// with the n already read, as pointers into the decoded blocks of the cache,
// decoding and caching the blocks it misses.
func (l *Log) readBlocksShared(ec *eventCursor, name string, after uint64, max int, gen uint64, n *int, ptrs *[]*evq.Event) error {
	for ok := ec.Seek(after + 1); ok && *n < max; ok = ec.NextValue() {
		ref := blockRef{name: name, key: ec.Key()}
		evs := l.cache.get(ref)
		if evs == nil {
			var err error
			if evs, err = decodeBlock(name, seqKey(ref.key), ec.Val); err != nil {
				return err
			}
			l.cache.put(ref, gen, evs)
		}
		for i := range evs {
			if evs[i].Seq > after && *n < max {
				*ptrs = append(*ptrs, &evs[i])
				*n++
			}
		}
	}
	return ec.Err
}

// scanTail calls fn for each event of name in tail with a seq above after
// (b.enc[i], seq b.first+i), in seq order, until fn returns false or an error.
func scanTail(tail []*walBatch, name string, after uint64, fn func(b *walBatch, i int) (bool, error)) error {
	for _, b := range tail {
		if b.last <= after {
			continue
		}
		for i := range b.enc {
			seq := b.first + uint64(i)
			if seq <= after || b.names[i] != name {
				continue
			}
			more, err := fn(b, i)
			if err != nil || !more {
				return err
			}
		}
	}
	return nil
}

// SeqBefore returns the highest seq of name raised before t, or 0 if none: a
// cursor set to it replays everything raised at or after t.
func (l *Log) SeqBefore(name string, t time.Time) (uint64, error) {
	l.waitApplied(l.LastSeq())
	var seq uint64
	err := l.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents).Bucket([]byte(name))
		if b == nil {
			return nil
		}
		// Raise times never decrease with seq: bisect on the seq space for
		// the first event raised at or after t.
		ec := newEventCursor(b)
		if !ec.First() {
			return ec.Err
		}
		lo := ec.Seq
		last, _, err := lastOf(b)
		if err != nil {
			return err
		}
		hi := last + 1
		want := t.UnixNano()
		for lo < hi {
			mid := lo + (hi-lo)/2
			if !ec.Seek(mid) {
				if ec.Err != nil {
					return ec.Err
				}
				hi = mid
			} else if timeOf(ec.Enc) >= want {
				hi = mid
			} else {
				lo = ec.Seq + 1
			}
		}
		seq, err = lastBefore(b, lo)
		return err
	})
	return seq, err
}

// lastBefore returns the seq of the last event in b below seq, or 0.
func lastBefore(b *bolt.Bucket, seq uint64) (uint64, error) {
	c := b.Cursor()
	k, v := c.Seek(seqKey(seq)) // the value holding seq, or the first after it
	var found uint64
	if k != nil {
		err := eachEvent(k, v, func(s uint64, _ []byte) (bool, error) {
			if s < seq {
				found = s
			}
			return s < seq, nil
		})
		if err != nil {
			return 0, err
		}
		if found != 0 {
			return found, nil
		}
		k, v = c.Prev()
	} else {
		k, v = c.Last()
	}
	if k == nil {
		return 0, nil
	}
	found, _, err := lastEvent(k, v)
	return found, err
}

// NameStats describes the stored events of one name.
type NameStats struct {
	Name     string
	Count    uint64
	FirstSeq uint64
	LastSeq  uint64
}

// Names returns the stored event names with their counts, sorted by name.
func (l *Log) Names() ([]NameStats, error) {
	l.waitApplied(l.LastSeq())
	var out []NameStats
	err := l.db.View(func(tx *bolt.Tx) error {
		events := tx.Bucket(bucketEvents)
		return events.ForEachBucket(func(name []byte) error {
			b := events.Bucket(name)
			ns := NameStats{Name: string(name)}
			if ec := newEventCursor(b); ec.First() {
				last, lv, err := lastOf(b)
				if err != nil {
					return err
				}
				ns.FirstSeq, ns.LastSeq = ec.Seq, last
				ns.Count = ordinalOf(lv) - ordinalOf(ec.Enc) + 1
			} else if ec.Err != nil {
				return ec.Err
			}
			out = append(out, ns)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// Lag returns how many events of name have a seq above cursor.
func (l *Log) Lag(name string, cursor uint64) (uint64, error) {
	l.mu.Lock()
	tail := l.tail
	l.mu.Unlock()
	var first, last []byte // encoded events: the first above cursor, the last
	var applied uint64
	err := l.db.View(func(tx *bolt.Tx) error {
		applied = u64(tx.Bucket(bucketMeta).Get(keyLastSeq))
		b := tx.Bucket(bucketEvents).Bucket([]byte(name))
		if b == nil {
			return nil
		}
		_, lv, err := lastOf(b)
		if err != nil {
			return err
		}
		if lv != nil {
			last = append(last[:0], lv...)
		}
		if ec := newEventCursor(b); ec.Seek(cursor + 1) {
			first = append(first[:0], ec.Enc...)
		} else if ec.Err != nil {
			return ec.Err
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	from := max(cursor, applied)
	scanTail(tail, name, from, func(b *walBatch, i int) (bool, error) {
		enc := b.enc[i]
		if first == nil {
			first = enc
		}
		last = enc
		return true, nil
	})
	if first == nil {
		return 0, nil
	}
	return ordinalOf(last) - ordinalOf(first) + 1, nil
}

// StoredBytes returns the encoded size of all stored events.
func (l *Log) StoredBytes() (uint64, error) {
	l.waitApplied(l.LastSeq())
	var n uint64
	err := l.db.View(func(tx *bolt.Tx) error {
		n = u64(tx.Bucket(bucketMeta).Get(keyBytes))
		return nil
	})
	return n, err
}
