package queue

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Events are stored in blocks: the applier writes each name's events of one
// round as bbolt values of up to blockMax bytes, under the seq of each
// block's last event. One Put and one key per block rather than per event is
// what keeps the applier's CPU per event low.
//
// Why 16 KiB and not more: a bbolt leaf holds at least two values, so values
// larger than a page sit two to four to a leaf, and each transaction rewrites
// the last leaf, older blocks included, reading them back through the mmap.
// With 256 KiB blocks that cost up to 768 KiB per round and, over a 10M-event
// backlog, 178 MB of file-backed RSS; with 16 KiB, 21 MB.
//
// Block layout:
//
//	[0]  blockVersion
//	then per event: uvarint seq (the first absolute, then the distance from
//	the previous), uvarint length, the encoded event
//
// A value that starts with formatVersion instead is one encoded event stored
// under its own seq, as stores written before blocks hold them; it reads as a
// block of one.
const (
	blockVersion = 2
	blockMax     = 16 << 10
)

// appendBlockEvent appends an event to block b (started with blockVersion),
// whose last event has seq prev (0 if none).
func appendBlockEvent(b []byte, prev, seq uint64, enc []byte) []byte {
	b = binary.AppendUvarint(b, seq-prev)
	b = binary.AppendUvarint(b, uint64(len(enc)))
	return append(b, enc...)
}

// blockIter walks the events of one stored value in seq order.
type blockIter struct {
	key  uint64 // the value's key: the seq of its last event
	v    []byte // the value
	rest []byte // what is left to read; nil when done
	off  int    // where in v the event last returned starts
	prev uint64
	one  bool // the value is a single event
}

func newBlockIter(k, v []byte) blockIter {
	if len(k) != 8 {
		return blockIter{one: true} // past the end, or a damaged key: no events
	}
	it := blockIter{key: keySeq(k), v: v, rest: v}
	if len(v) > 0 && v[0] == blockVersion {
		it.rest = v[1:]
	} else {
		it.one = true
	}
	return it
}

// next returns the next event, or ok false at the end of the value.
func (it *blockIter) next() (seq uint64, enc []byte, ok bool, err error) {
	if it.one {
		if it.rest == nil {
			return 0, nil, false, nil
		}
		enc, it.rest, it.off = it.rest, nil, 0
		return it.key, enc, true, nil
	}
	if len(it.rest) == 0 {
		return 0, nil, false, nil
	}
	d, n := binary.Uvarint(it.rest)
	if n <= 0 || d == 0 {
		return 0, nil, false, fmt.Errorf("%w: block %d: bad seq", ErrCorrupt, it.key)
	}
	l, m := binary.Uvarint(it.rest[n:])
	if m <= 0 || uint64(len(it.rest)-n-m) < l {
		return 0, nil, false, fmt.Errorf("%w: block %d: event cut short", ErrCorrupt, it.key)
	}
	seq = it.prev + d
	it.off = len(it.v) - len(it.rest) + n + m
	enc = it.rest[n+m : n+m+int(l)]
	it.rest = it.rest[n+m+int(l):]
	if seq > it.key || len(it.rest) == 0 && seq != it.key {
		return 0, nil, false, fmt.Errorf("%w: block %d holds seq %d", ErrCorrupt, it.key, seq)
	}
	it.prev = seq
	return seq, enc, true, nil
}

// eventCursor walks a name's stored events in seq order across its values.
// Enc is Val[Off:Off+len(Enc)]; Vals counts the values moved to, so that a
// reader can tell when Val changes.
type eventCursor struct {
	c    *bolt.Cursor
	it   blockIter
	k    []byte // the current value's key, nil past the end
	Seq  uint64
	Enc  []byte
	Val  []byte
	Off  int
	Vals int
	Err  error
}

func newEventCursor(b *bolt.Bucket) *eventCursor { return &eventCursor{c: b.Cursor()} }

// Seek moves to the first event with a seq of seq or more and reports
// whether there is one.
func (ec *eventCursor) Seek(seq uint64) bool {
	k, v := ec.c.Seek(seqKey(seq))
	ec.k, ec.it = k, newBlockIter(k, v)
	ec.Vals++
	for ec.step() {
		if ec.Seq >= seq {
			return true
		}
	}
	return false
}

// First moves to the first event.
func (ec *eventCursor) First() bool {
	k, v := ec.c.First()
	ec.k, ec.it = k, newBlockIter(k, v)
	ec.Vals++
	return ec.step()
}

// Next moves to the next event.
func (ec *eventCursor) Next() bool { return ec.step() }

// Key returns the key of the value holding the current event: the seq of
// its last event.
func (ec *eventCursor) Key() uint64 { return ec.it.key }

// NextValue moves to the first event of the next value.
func (ec *eventCursor) NextValue() bool {
	if ec.k == nil || ec.Err != nil {
		return false
	}
	k, v := ec.c.Next()
	ec.k, ec.it = k, newBlockIter(k, v)
	ec.Vals++
	return ec.step()
}

// step reads the next event, moving to the next value when this one is
// done.
func (ec *eventCursor) step() bool {
	for ec.k != nil && ec.Err == nil {
		seq, enc, ok, err := ec.it.next()
		if err != nil {
			ec.Err = err
			return false
		}
		if ok {
			ec.Seq, ec.Enc, ec.Val, ec.Off = seq, enc, ec.it.v, ec.it.off
			return true
		}
		k, v := ec.c.Next()
		ec.k, ec.it = k, newBlockIter(k, v)
		ec.Vals++
	}
	return false
}

// eachEvent calls fn with each event of value v stored under k, in seq
// order, until fn returns false or an error.
func eachEvent(k, v []byte, fn func(seq uint64, enc []byte) (bool, error)) error {
	it := newBlockIter(k, v)
	for {
		seq, enc, ok, err := it.next()
		if err != nil || !ok {
			return err
		}
		if more, err := fn(seq, enc); err != nil || !more {
			return err
		}
	}
}

// lastEvent returns the last event of value v stored under k.
func lastEvent(k, v []byte) (seq uint64, enc []byte, err error) {
	err = eachEvent(k, v, func(s uint64, e []byte) (bool, error) {
		seq, enc = s, e
		return true, nil
	})
	return seq, enc, err
}

// lastOf returns the last event stored in b, or seq 0 if b is empty.
func lastOf(b *bolt.Bucket) (seq uint64, enc []byte, err error) {
	k, v := b.Cursor().Last()
	if k == nil {
		return 0, nil, nil
	}
	return lastEvent(k, v)
}
