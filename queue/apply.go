package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The applier: what the committer made durable in the WAL is written into
// bbolt here, in the background, together with the cursors set meanwhile.

// recoverWAL writes into bbolt the WAL's events that it lacks (the process
// stopped before the applier wrote them), then retires the WAL's segments.
// If the disk has no room for them, they stay in the WAL and become the
// applier's first work, so that evq still starts and delivers.
func (l *Log) recoverWAL() error {
	batches, segs, err := readWAL(walDir(l.path))
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	var last uint64
	if err := l.db.View(func(tx *bolt.Tx) error { last = u64(tx.Bucket(bucketMeta).Get(keyLastSeq)); return nil }); err != nil {
		return err
	}
	for len(batches) > 0 && batches[0].last <= last {
		batches = batches[1:]
	}
	if len(batches) > 0 && batches[0].first != last+1 {
		return fmt.Errorf("open log: %w: the WAL resumes at seq %d but the store ends at %d", ErrCorrupt, batches[0].first, last)
	}
	for len(batches) > 0 {
		n, size := 0, uint64(0)
		for n < len(batches) && size < maxUnapplied {
			size += batches[n].bytes
			n++
		}
		if err := l.db.Update(func(tx *bolt.Tx) error { return applyTx(tx, batches[:n], nil, &l.blocks) }); err != nil {
			err = classify(err)
			if !errors.Is(err, ErrStorageFull) {
				return fmt.Errorf("open log: replay the WAL: %w", err)
			}
			l.opts.Logger.Error("the disk has no room to write the WAL's events into the store; they stay in the WAL until it has",
				"first", batches[0].first, "last", batches[len(batches)-1].last, "err", err)
			l.tail, l.pending, l.applyErr = batches, batches, err
			for _, b := range batches {
				l.pendingBytes += b.bytes
			}
			l.keptSegs = segs
			return nil
		}
		l.opts.Logger.Info("replayed WAL events into the store", "first", batches[0].first, "last", batches[n-1].last)
		batches = batches[n:]
	}
	for _, s := range segs {
		if err := retire(s.path); err != nil { // openWAL keeps what it reuses
			return fmt.Errorf("open log: %w", err)
		}
	}
	return nil
}

// waitUnapplied holds the committer while more than maxUnapplied bytes wait
// for the applier. While the applier fails (a full disk), it asks for one
// more round and fails the commit if that fails too: the raiser learns why,
// and the WAL does not fill with events bbolt cannot take. Only a round
// that started after the request counts: one already under way may have
// begun before the disk had room again.
func (l *Log) waitUnapplied() error {
	retried := false
	var kicked uint64 // rounds the applier had started when this commit asked it to retry
	for {
		l.mu.Lock()
		over, err, ch, from := l.pendingBytes > maxUnapplied, l.applyErr, l.appliedCh, l.errRound
		if err != nil {
			l.applyNow = true
			if !retried {
				kicked = l.rounds
			}
		}
		l.mu.Unlock()
		switch {
		case err != nil && retried && from > kicked:
			return err // a retry that started after the request failed too
		case err != nil:
			retried = true
			l.kickApplier()
		case err == nil && !over:
			return nil
		}
		<-ch
	}
}

func (l *Log) kickApplier() {
	select {
	case l.applyKick <- struct{}{}:
	default:
	}
}

// applyLoop is the applier: it writes what the committer published into
// bbolt, with the cursors set meanwhile, in one transaction per round. Raises
// do not wait for it (the WAL made them durable), so it runs rounds only as
// often as applyDelay, or sooner when applyBytes are waiting or someone needs
// bbolt current (Flush, waitApplied): every bbolt commit costs two fsyncs
// that the WAL's fdatasync would otherwise queue behind. A failed round is
// retried after retryDelay; the WAL keeps the events meanwhile.
func (l *Log) applyLoop() {
	defer close(l.applyDone)
	tick := time.NewTicker(min(applyDelay, l.opts.CursorFlushInterval))
	defer tick.Stop()
	for {
		select {
		case <-l.applyKick:
		case <-tick.C:
		case <-l.walDone:
			for l.apply() {
			}
			return
		}
		if l.applyDue() {
			l.apply()
		}
	}
}

const (
	applyDelay = 40 * time.Millisecond
	applyBytes = 4 << 20
	retryDelay = 100 * time.Millisecond
)

func (l *Log) applyDue() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.applyNow || len(l.flushWaiters) > 0:
		return true
	case l.applyErr != nil && time.Since(l.lastApply) < retryDelay:
		return false
	case len(l.pending) > 0:
		return l.pendingBytes >= applyBytes || time.Since(l.pendingSince) >= applyDelay
	case len(l.dirty) > 0:
		return time.Since(l.lastApply) >= l.opts.CursorFlushInterval
	}
	return false
}

// apply commits everything published and every dirty cursor to bbolt. It
// reports whether it committed anything.
func (l *Log) apply() bool {
	l.mu.Lock()
	l.rounds++
	round := l.rounds
	batches, cursors, waiters := l.pending, l.dirty, l.flushWaiters
	l.pending, l.flushWaiters, l.applyNow = nil, nil, false
	if len(cursors) > 0 {
		l.dirty = make(map[uint64]uint64)
	} else {
		cursors = nil
	}
	l.mu.Unlock()
	if len(batches) == 0 && len(cursors) == 0 && len(waiters) == 0 {
		// Nothing failed to be written: wake whoever waits on a round.
		l.mu.Lock()
		l.applyErr, l.errRound = nil, round
		close(l.appliedCh)
		l.appliedCh = make(chan struct{})
		l.mu.Unlock()
		return false
	}

	start := time.Now()
	err := l.db.Update(func(tx *bolt.Tx) error { return applyTx(tx, batches, cursors, &l.blocks) })
	l.mu.Lock()
	l.lastApply = time.Now()
	if err != nil {
		err = classify(err)
		l.stats.ApplyErrors.Add(1)
		if l.applyErr == nil {
			l.opts.Logger.Error("writing events into the store failed; they are safe in the WAL and the write is retried", "err", err)
		}
		l.pending = append(batches, l.pending...)
		for id, c := range cursors {
			if _, ok := l.dirty[id]; !ok {
				l.dirty[id] = c
			}
		}
	} else if l.applyErr != nil {
		l.opts.Logger.Info("writing events into the store works again")
	}
	if err == nil && len(batches) > 0 {
		last := batches[len(batches)-1].last
		l.applied.Store(last)
		for len(l.tail) > 0 && l.tail[0].last <= last {
			// Readers share the array: reslice, never clear an element.
			l.pendingBytes -= l.tail[0].bytes
			l.tail = l.tail[1:]
		}
	}
	l.applyErr, l.errRound = err, round
	close(l.appliedCh)
	l.appliedCh = make(chan struct{})
	l.mu.Unlock()
	if err == nil {
		l.stats.Applies.Add(1)
		l.stats.ApplyNanos.Add(uint64(time.Since(start)))
	}
	for _, r := range waiters {
		r.err = err
		r.done <- struct{}{}
	}
	return err == nil
}

// blockArena is the memory the applier builds blocks in. bbolt keeps a
// Put's value until the transaction ends and copies it into its pages on
// commit, so the memory is free again once Update returns: one array,
// reused from round to round, instead of allocating every round's blocks
// anew for the garbage collector.
type blockArena struct{ buf []byte }

// reset empties the arena, making room for at least n bytes. An arena
// grown by one large round (the WAL replayed at start-up) is let go once
// rounds are small again.
func (a *blockArena) reset(n int) {
	if cap(a.buf) < n || cap(a.buf) > 8<<20 && cap(a.buf) > 4*n {
		a.buf = make([]byte, 0, n)
	}
	a.buf = a.buf[:0]
}

// take returns an empty block with room for n bytes, from the arena while it
// has room (a block cannot grow into its neighbour's bytes: its capacity is
// n), or else from the heap.
func (a *blockArena) take(n int) []byte {
	if cap(a.buf)-len(a.buf) < n {
		return make([]byte, 0, n)
	}
	b := a.buf[len(a.buf) : len(a.buf) : len(a.buf)+n]
	a.buf = a.buf[:len(a.buf)+n]
	return b
}

// applyTx writes batches and cursors into bbolt and moves the last seq on.
// Each name's events go in blocks of up to blockMax bytes, built in mem.
func applyTx(tx *bolt.Tx, batches []*walBatch, cursors map[uint64]uint64, mem *blockArena) error {
	events := tx.Bucket(bucketEvents)
	type open struct {
		b    *bolt.Bucket
		blk  []byte // the block being filled
		last uint64 // the seq of its last event
		left int    // bytes the name's blocks still need at most
	}
	// Size each name's blocks up front, so that filling one never copies
	// it to a larger array.
	blocks := make(map[string]*open)
	need := 0
	for _, wb := range batches {
		for i, enc := range wb.enc {
			o := blocks[wb.names[i]]
			if o == nil {
				o = &open{}
				blocks[wb.names[i]] = o
			}
			o.left += len(enc) + 2*binary.MaxVarintLen64
			need += len(enc) + 2*binary.MaxVarintLen64
		}
	}
	// A block's room is what its name still needs, up to blockMax, and the
	// room a block was cut short of goes unused: a quarter more than the need
	// covers that unless events are large, and take falls back to the heap.
	mem.reset(need + need/4 + len(blocks))
	put := func(name string, o *open) error {
		if err := o.b.Put(seqKey(o.last), o.blk); err != nil { // bbolt keeps blk until the commit
			return fmt.Errorf("append %s: %w", name, err)
		}
		o.blk = nil
		return nil
	}
	var added uint64
	total := 0
	for _, wb := range batches {
		total += len(wb.enc)
		for i, enc := range wb.enc {
			name := wb.names[i]
			o := blocks[name]
			if o.b == nil {
				b, err := events.CreateBucketIfNotExists([]byte(name))
				if err != nil {
					return fmt.Errorf("append %s: %w", name, err)
				}
				b.FillPercent = 1.0 // keys only grow: pack pages full
				o.b = b
			}
			if o.blk != nil && len(o.blk)+len(enc)+2*binary.MaxVarintLen64 > blockMax {
				if err := put(name, o); err != nil {
					return err
				}
			}
			prev := o.last
			if o.blk == nil {
				o.blk = append(mem.take(1+min(o.left, blockMax)), blockVersion)
				prev = 0
			}
			o.left -= len(enc) + 2*binary.MaxVarintLen64
			o.last = wb.first + uint64(i)
			o.blk = appendBlockEvent(o.blk, prev, o.last, enc)
			added += uint64(len(enc))
		}
	}
	for name, o := range blocks {
		if o.blk != nil {
			if err := put(name, o); err != nil {
				return err
			}
		}
	}
	cb := tx.Bucket(bucketCursors)
	for id, c := range cursors {
		if tx.Bucket(bucketSubs).Get(seqKey(id)) == nil {
			continue // unsubscribed meanwhile
		}
		if err := cb.Put(seqKey(id), seqKey(c)); err != nil {
			return fmt.Errorf("store cursor %d: %w", id, err)
		}
	}
	if total == 0 {
		return nil
	}
	meta := tx.Bucket(bucketMeta)
	if err := meta.Put(keyBytes, seqKey(u64(meta.Get(keyBytes))+added)); err != nil {
		return err
	}
	return meta.Put(keyLastSeq, seqKey(batches[len(batches)-1].last))
}

// waitApplied waits until bbolt holds every event up to seq, or the applier
// fails or stops; readers that work on bbolt alone call it first.
func (l *Log) waitApplied(seq uint64) {
	for {
		l.mu.Lock()
		ch, err := l.appliedCh, l.applyErr
		l.mu.Unlock()
		if l.applied.Load() >= seq || err != nil {
			return
		}
		l.mu.Lock()
		l.applyNow = true
		l.mu.Unlock()
		l.kickApplier()
		select {
		case <-ch:
		case <-l.applyDone:
			return
		}
	}
}
