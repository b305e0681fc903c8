package queue

import (
	"bytes"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// retainChunk bounds the deletes of one transaction, so that retention never
// holds the writer lock long enough to stall appends.
const retainChunk = 5000

func (l *Log) retainLoop() {
	defer l.wg.Done()
	t := time.NewTicker(l.opts.RetentionInterval)
	defer t.Stop()
	for {
		select {
		case <-l.closing:
			return
		case <-t.C:
			if _, err := l.Retain(); err != nil {
				l.opts.Logger.Error("retention failed", "err", err)
			}
		}
	}
}

// RetainResult counts what one retention pass removed.
type RetainResult struct {
	Deleted int            // events removed
	Dropped map[uint64]int // per subscription: events removed before it acknowledged them
}

// Retain deletes events that every subscription to their name has
// acknowledged and that are older than MinAge, and, to protect the disk,
// events older than MaxAge or beyond MaxBytes even if unacknowledged.
// Expired subscriptions count like the others while they exist (the delivery
// engine removes them after a while), so that a subscriber that comes back
// finds what it missed.
func (l *Log) Retain() (RetainResult, error) {
	res := RetainResult{Dropped: make(map[uint64]int)}
	l.waitApplied(l.LastSeq()) // retention works on bbolt: let it hold every event
	now := l.opts.NowFunc()
	subs, err := l.Subscriptions()
	if err != nil {
		return res, err
	}
	type subCursor struct {
		id     uint64
		cursor uint64
	}
	byName := make(map[string][]subCursor)
	for _, s := range subs {
		c, err := l.Cursor(s.ID)
		if err != nil {
			return res, err
		}
		byName[s.Event] = append(byName[s.Event], subCursor{s.ID, c})
	}
	minAck := now.Add(-l.opts.MinAge).UnixNano()
	if l.opts.MinAge < 0 {
		minAck = now.UnixNano() + 1
	}
	hardLimit := int64(-1 << 63)
	if l.opts.MaxAge > 0 {
		hardLimit = now.Add(-l.opts.MaxAge).UnixNano()
	}

	// drop decides whether the oldest remaining event of name goes, and why.
	drop := func(name string, seq uint64, t int64, overBytes bool) (del, unacked bool) {
		acked := true
		for _, sc := range byName[name] {
			if sc.cursor < seq {
				acked = false
				break
			}
		}
		if acked && t < minAck {
			return true, false
		}
		if t < hardLimit || overBytes {
			return true, !acked
		}
		return false, false
	}
	countDrop := func(name string, seq uint64) {
		for _, sc := range byName[name] {
			if sc.cursor < seq {
				res.Dropped[sc.id]++
			}
		}
		l.stats.RetainDropped.Add(1)
	}

	for {
		n := 0
		err := l.db.Update(func(tx *bolt.Tx) error {
			events := tx.Bucket(bucketEvents)
			meta := tx.Bucket(bucketMeta)
			stored := int64(u64(meta.Get(keyBytes)))
			var freed int64
			over := func() bool { return l.opts.MaxBytes > 0 && stored-freed > l.opts.MaxBytes }

			// Every name's oldest event; delete from the fronts in global seq
			// order, oldest first.
			var fronts []*front
			err := events.ForEachBucket(func(name []byte) error {
				f := &front{name: string(name), b: events.Bucket(name)}
				if err := f.load(0); err != nil {
					return err
				}
				if f.k != nil {
					fronts = append(fronts, f)
				}
				return nil
			})
			if err != nil {
				return err
			}
			for n < retainChunk && len(fronts) > 0 {
				oi := 0
				for i, f := range fronts {
					if f.seq < fronts[oi].seq {
						oi = i
					}
				}
				f := fronts[oi]
				del, unacked := drop(f.name, f.seq, timeOf(f.enc), over())
				if !del {
					// This name's front stays; other names may still go.
					if err := f.settle(); err != nil {
						return err
					}
					fronts = append(fronts[:oi], fronts[oi+1:]...)
					continue
				}
				if unacked {
					countDrop(f.name, f.seq)
				}
				freed += int64(len(f.enc))
				n++
				if err := f.drop(); err != nil {
					return err
				}
				if f.k == nil {
					fronts = append(fronts[:oi], fronts[oi+1:]...)
				}
			}
			for _, f := range fronts {
				if err := f.settle(); err != nil {
					return err
				}
			}
			if n == 0 {
				return nil
			}
			return meta.Put(keyBytes, seqKey(uint64(stored-freed)))
		})
		if n > 0 {
			l.cache.invalidate() // even after a failed commit: bbolt may have written some of it
		}
		if err != nil {
			return res, err
		}
		res.Deleted += n
		l.stats.RetainDeleted.Add(uint64(n))
		if n < retainChunk {
			break
		}
	}
	for id, n := range res.Dropped {
		l.opts.Logger.Warn("retention dropped events the subscriber had not acknowledged",
			"subscription", id, "events", n, "max_age", l.opts.MaxAge, "max_bytes", l.opts.MaxBytes)
	}
	return res, nil
}

// front is the oldest remaining event of one name during a retention pass.
// Events are dropped from the front of a stored block one at a time; the
// block is deleted once all its events are gone, or written back with the
// ones that remain (settle).
type front struct {
	name    string
	b       *bolt.Bucket
	k       []byte    // the key of the block holding the front event; nil when none is left
	it      blockIter // the events after the front one in that block
	seq     uint64    // the front event
	enc     []byte
	dropped int // events dropped from the front of the block
}

// load moves to the first event of the first block keyed above after.
func (f *front) load(after uint64) error {
	k, v := f.b.Cursor().Seek(seqKey(after + 1))
	f.k, f.dropped = nil, 0
	if k == nil {
		return nil
	}
	f.k, f.it = bytes.Clone(k), newBlockIter(k, v)
	return f.next()
}

// next moves to the next event of the block; past its end it deletes the
// block (all its events were dropped) and loads the next one.
func (f *front) next() error {
	seq, enc, ok, err := f.it.next()
	if err != nil {
		return err
	}
	if ok {
		f.seq, f.enc = seq, enc
		return nil
	}
	if f.dropped == 0 {
		return fmt.Errorf("%w: %s: block %d holds no event", ErrCorrupt, f.name, keySeq(f.k))
	}
	if err := f.b.Delete(f.k); err != nil {
		return err
	}
	return f.load(keySeq(f.k))
}

// drop drops the front event.
func (f *front) drop() error {
	f.dropped++
	return f.next()
}

// settle writes the front event's block back without the events dropped
// from it.
func (f *front) settle() error {
	if f.k == nil || f.dropped == 0 {
		return nil
	}
	blk := appendBlockEvent([]byte{blockVersion}, 0, f.seq, f.enc)
	prev := f.seq
	for {
		seq, enc, ok, err := f.it.next()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		blk = appendBlockEvent(blk, prev, seq, enc)
		prev = seq
	}
	f.dropped = 0
	return f.b.Put(f.k, blk)
}
