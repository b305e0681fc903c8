package queue

import (
	"encoding/binary"
	"fmt"
	"time"
	"unsafe"

	"github.com/evq/evq"
)

// formatVersion is the leading byte of every encoded event.
const formatVersion = 1

// Encoded event layout:
//
//	[0]     format version
//	[1:9]   raise time, unix nanoseconds, big-endian (set by the committer)
//	[9:17]  ordinal of the event within its name, big-endian (set by the committer)
//	[17]    flags: bit 0 = named params
//	uvarint param count, then per param:
//	        named only: uvarint length + name
//	        kind byte, then string/float: uvarint length + bytes; int: varint;
//	        bool: one byte; null: nothing
const (
	offTime    = 1
	offOrdinal = 9
	headerLen  = 18
)

func appendUvarint(b []byte, n uint64) []byte { return binary.AppendUvarint(b, n) }

func appendString(b []byte, s string) []byte {
	b = appendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func uvarintLen(n uint64) int {
	l := 1
	for n >= 0x80 {
		n >>= 7
		l++
	}
	return l
}

// encodedSize returns the exact length of ev's encoding, so that it can be
// encoded into one allocation.
func encodedSize(ev *evq.Event) int {
	n := headerLen + uvarintLen(uint64(len(ev.Params)))
	for _, p := range ev.Params {
		if ev.Named {
			n += uvarintLen(uint64(len(p.Name))) + len(p.Name)
		}
		n++
		switch p.Value.Kind {
		case evq.KindString, evq.KindFloat:
			n += uvarintLen(uint64(len(p.Value.Str))) + len(p.Value.Str)
		case evq.KindInt:
			n += uvarintLen(uint64(p.Value.Int<<1) ^ uint64(p.Value.Int>>63))
		case evq.KindBool:
			n++
		}
	}
	return n
}

// encodeEvent appends ev's encoding (time and ordinal left zero) to b.
func encodeEvent(b []byte, ev *evq.Event) []byte {
	b = append(b, formatVersion)
	b = append(b, make([]byte, 16)...)
	var flags byte
	if ev.Named {
		flags |= 1
	}
	b = append(b, flags)
	b = appendUvarint(b, uint64(len(ev.Params)))
	for _, p := range ev.Params {
		if ev.Named {
			b = appendString(b, p.Name)
		}
		b = append(b, byte(p.Value.Kind))
		switch p.Value.Kind {
		case evq.KindString, evq.KindFloat:
			b = appendString(b, p.Value.Str)
		case evq.KindInt:
			b = binary.AppendVarint(b, p.Value.Int)
		case evq.KindBool:
			b = append(b, byte(p.Value.Int))
		}
	}
	return b
}

func putHeader(enc []byte, t int64, ordinal uint64) {
	binary.BigEndian.PutUint64(enc[offTime:], uint64(t))
	binary.BigEndian.PutUint64(enc[offOrdinal:], ordinal)
}

func ordinalOf(enc []byte) uint64 {
	if len(enc) < headerLen {
		return 0
	}
	return binary.BigEndian.Uint64(enc[offOrdinal:])
}

func timeOf(enc []byte) int64 {
	if len(enc) < headerLen {
		return 0
	}
	return int64(binary.BigEndian.Uint64(enc[offTime:]))
}

// decoder reads an encoded record. Strings are cut from str, which holds
// the same bytes as b and never changes, so that decoding an event allocates
// nothing for its strings.
type decoder struct {
	b   []byte
	str string // the record's bytes as a string; b is a suffix of it
	err error
}

// frozen returns b's bytes as a string without copying them. The caller
// promises that b is never written again.
func frozen(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// params hands out the params arrays of a batch of decoded events from a few
// large allocations rather than one per event: a replay scan is bound by the
// garbage collector otherwise.
type params struct {
	hint int // at most this many events expected
	size int // events the current chunk is sized for: 16, doubling up to hint
	buf  []evq.Param
}

// slice returns an array of n params. Chunks start small and double while a
// read goes on, so that reading a few events does not allocate for a
// thousand.
func (ps *params) slice(n int) []evq.Param {
	if cap(ps.buf)-len(ps.buf) < n {
		ps.size = min(max(2*ps.size, 16), max(ps.hint, 16))
		ps.buf = make([]evq.Param, 0, max(12*ps.size, n))
	}
	p := ps.buf[len(ps.buf) : len(ps.buf)+n : len(ps.buf)+n]
	ps.buf = ps.buf[:len(ps.buf)+n]
	return p
}

func (d *decoder) uvarint() uint64 {
	if len(d.b) > 0 && d.b[0] < 0x80 { // a length or count below 128: most of them
		n := uint64(d.b[0])
		d.b = d.b[1:]
		return n
	}
	if d.err != nil {
		return 0
	}
	n, k := binary.Uvarint(d.b)
	if k <= 0 {
		d.err = fmt.Errorf("%w: bad varint", ErrCorrupt)
		return 0
	}
	d.b = d.b[k:]
	return n
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	n, k := binary.Varint(d.b)
	if k <= 0 {
		d.err = fmt.Errorf("%w: bad varint", ErrCorrupt)
		return 0
	}
	d.b = d.b[k:]
	return n
}

func (d *decoder) byte1() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.err = fmt.Errorf("%w: short record", ErrCorrupt)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if uint64(len(d.b)) < n {
		d.err = fmt.Errorf("%w: short string", ErrCorrupt)
		return ""
	}
	off := len(d.str) - len(d.b)
	s := d.str[off : off+int(n)]
	d.b = d.b[n:]
	return s
}

// decodeEvent decodes an encoded event of the given name and seq. It copies
// everything it keeps, so enc may be bbolt memory.
func decodeEvent(name string, seq uint64, enc []byte) (*evq.Event, error) {
	ev := new(evq.Event)
	if err := decodeInto(nil, ev, name, seq, enc, string(enc)); err != nil {
		return nil, err
	}
	return ev, nil
}

// decodeInto decodes enc into *ev, reusing ev.Params' array when it is large
// enough and taking one from ps (if not nil) otherwise. str must hold enc's
// bytes and never change: the event's strings are cut from it, not copied.
func decodeInto(ps *params, ev *evq.Event, name string, seq uint64, enc []byte, str string) error {
	if len(enc) < headerLen || enc[0] != formatVersion {
		return fmt.Errorf("%w: event %d of %s: bad header", ErrCorrupt, seq, name)
	}
	if len(str) != len(enc) {
		panic("queue: decodeInto: str does not hold enc")
	}
	d := decoder{b: enc, str: str}
	*ev = evq.Event{Seq: seq, Name: name, Time: time.Unix(0, timeOf(enc)).UTC(), Named: enc[17]&1 != 0, Params: ev.Params[:0]}
	d.b = d.b[headerLen:]
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		return fmt.Errorf("%w: event %d of %s: param count %d", ErrCorrupt, seq, name, n)
	}
	switch {
	case n == 0:
		ev.Params = nil
	case uint64(cap(ev.Params)) >= n:
		ev.Params = ev.Params[:n]
		clear(ev.Params)
	case ps != nil:
		ev.Params = ps.slice(int(n))
	default:
		ev.Params = make([]evq.Param, n)
	}
	for i := range ev.Params {
		p := &ev.Params[i]
		if ev.Named {
			p.Name = d.string()
		}
		p.Value.Kind = evq.Kind(d.byte1())
		switch p.Value.Kind {
		case evq.KindString, evq.KindFloat:
			p.Value.Str = d.string()
		case evq.KindInt:
			p.Value.Int = d.varint()
		case evq.KindBool:
			p.Value.Int = int64(d.byte1())
		case evq.KindNull:
		default:
			d.err = fmt.Errorf("%w: unknown value kind %d", ErrCorrupt, p.Value.Kind)
		}
	}
	if d.err != nil {
		return fmt.Errorf("event %d of %s: %w", seq, name, d.err)
	}
	return nil
}

func seqKey(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}

func keySeq(k []byte) uint64 { return binary.BigEndian.Uint64(k) }

func u64(v []byte) uint64 {
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}
