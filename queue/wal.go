package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// The write-ahead log makes a raise durable with one fdatasync: bbolt's
// commit needs two (pages, then meta), and on this class of disk each costs
// 0.4–0.7 ms. The committer appends every group commit to the WAL as one
// record, fdatasyncs, answers the raisers and hands the events to the
// applier, which writes them into bbolt in the background, in batches as
// large as the backlog. Once bbolt has committed a segment's events, the
// segment is deleted. Open replays the WAL's events that bbolt lacks.
//
// The WAL lives in the directory <db path>-wal, as segments named by the seq
// of their first event in hex, so that names sort in seq order:
//
//	evq.db-wal/0000000000000001.wal
//
// A record is one group commit:
//
//	[0:4]   payload length, big-endian
//	[4:8]   CRC-32C of the payload
//	payload: first seq (8 bytes), event count (4 bytes), then per event:
//	         name length (1 byte), name, encoded length (4 bytes), encoded event
//
// A record that is cut short or fails its CRC ends its segment: it was being
// written when the process died and was never acknowledged.

const (
	walSegmentSize = 64 << 20
	walHeaderLen   = 8
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// walBatch is one WAL record: consecutive seqs from first to last. It is
// immutable once built, so readers may share it.
type walBatch struct {
	first, last uint64
	names       []string
	enc         [][]byte // encoded events, headers set
	bytes       uint64   // sum of len(enc)
}

// wal is the segment being written and the older ones still needed. Only
// the committer writes; the applier removes segments through drop.
type wal struct {
	dir    string
	noSync bool
	f      *os.File
	off    int64
	broken bool // a failed write could not be undone: start a new segment
	buf    []byte

	segs []walSegment // oldest first; the last one is f
}

type walSegment struct {
	path string
	last uint64 // last seq written to it; 0 if none
}

func walDir(dbPath string) string { return dbPath + "-wal" }

func segmentPath(dir string, first uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%016x.wal", first))
}

// listSegments returns the WAL segment files in seq order.
func listSegments(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".wal") {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(out)
	return out, nil
}

// readWAL reads every intact record of every segment, in the order they
// must be applied, and returns them with the segments' paths. A record whose
// first seq is not above the previous one's last replaces what came before
// from that seq on: it was written after a failed write whose seqs were
// never acknowledged.
func readWAL(dir string) ([]*walBatch, []string, error) {
	paths, err := listSegments(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("read WAL: %w", err)
	}
	var out []*walBatch
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, nil, fmt.Errorf("read WAL: %w", err)
		}
		for len(data) >= walHeaderLen {
			n := binary.BigEndian.Uint32(data)
			if uint64(n) > uint64(len(data)-walHeaderLen) {
				break // cut short
			}
			payload := data[walHeaderLen : walHeaderLen+int(n)]
			if crc32.Checksum(payload, crcTable) != binary.BigEndian.Uint32(data[4:]) {
				break // torn
			}
			b, err := decodeWALRecord(payload)
			if err != nil {
				return nil, nil, fmt.Errorf("read WAL %s: %w: %w", p, ErrCorrupt, err)
			}
			for len(out) > 0 && out[len(out)-1].first >= b.first {
				out = out[:len(out)-1]
			}
			if len(out) > 0 && out[len(out)-1].last >= b.first {
				return nil, nil, fmt.Errorf("read WAL %s: %w: record at seq %d overlaps one ending at %d", p, ErrCorrupt, b.first, out[len(out)-1].last)
			}
			out = append(out, b)
			data = data[walHeaderLen+int(n):]
		}
	}
	return out, paths, nil
}

func decodeWALRecord(p []byte) (*walBatch, error) {
	if len(p) < 12 {
		return nil, errors.New("record too short")
	}
	b := &walBatch{first: binary.BigEndian.Uint64(p)}
	n := int(binary.BigEndian.Uint32(p[8:]))
	p = p[12:]
	if n == 0 || n > len(p) {
		return nil, fmt.Errorf("record claims %d events", n)
	}
	b.names = make([]string, 0, n)
	b.enc = make([][]byte, 0, n)
	for i := 0; i < n; i++ {
		if len(p) < 1 || len(p) < 1+int(p[0])+4 {
			return nil, errors.New("event cut short")
		}
		name := string(p[1 : 1+int(p[0])])
		p = p[1+int(p[0]):]
		m := binary.BigEndian.Uint32(p)
		p = p[4:]
		if uint64(m) > uint64(len(p)) || m < headerLen {
			return nil, errors.New("event cut short")
		}
		b.names = append(b.names, name)
		b.enc = append(b.enc, p[:m:m])
		b.bytes += uint64(m)
		p = p[m:]
	}
	if len(p) != 0 {
		return nil, errors.New("trailing bytes")
	}
	b.last = b.first + uint64(n) - 1
	return b, nil
}

// openWAL starts a new segment whose first seq will be next.
func openWAL(dir string, noSync bool, next uint64) (*wal, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open WAL: %w", err)
	}
	w := &wal{dir: dir, noSync: noSync}
	if err := w.rotate(next); err != nil {
		return nil, err
	}
	return w, nil
}

// rotate closes the current segment (kept until applied) and starts one
// whose first seq will be next.
func (w *wal) rotate(next uint64) error {
	p := segmentPath(w.dir, next)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("open WAL segment: %w", err)
	}
	if err := w.syncDir(); err != nil {
		f.Close()
		return err
	}
	if w.f != nil {
		w.f.Close()
		if w.segs[len(w.segs)-1].path == p {
			w.segs = w.segs[:len(w.segs)-1] // reopened: it held no good record
		}
	}
	w.f, w.off, w.broken = f, 0, false
	w.segs = append(w.segs, walSegment{path: p})
	return nil
}

func (w *wal) syncDir() error {
	if w.noSync {
		return nil
	}
	d, err := os.Open(w.dir)
	if err != nil {
		return fmt.Errorf("sync WAL directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync WAL directory: %w", err)
	}
	return nil
}

// write appends b as one record and makes it durable. On failure the
// segment is cut back to before the record, so that records written later
// are not hidden behind a torn one.
func (w *wal) write(b *walBatch) error {
	if w.broken || w.off >= walSegmentSize {
		if err := w.rotate(b.first); err != nil {
			return err
		}
	}
	buf := append(w.buf[:0], make([]byte, walHeaderLen+12)...)
	binary.BigEndian.PutUint64(buf[walHeaderLen:], b.first)
	binary.BigEndian.PutUint32(buf[walHeaderLen+8:], uint32(len(b.enc)))
	for i, enc := range b.enc {
		buf = append(buf, byte(len(b.names[i])))
		buf = append(buf, b.names[i]...)
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(enc)))
		buf = append(buf, enc...)
	}
	binary.BigEndian.PutUint32(buf, uint32(len(buf)-walHeaderLen))
	binary.BigEndian.PutUint32(buf[4:], crc32.Checksum(buf[walHeaderLen:], crcTable))
	w.buf = buf

	_, err := w.f.WriteAt(buf, w.off)
	if err == nil && !w.noSync {
		err = unix.Fdatasync(int(w.f.Fd()))
	}
	if err != nil {
		if terr := w.f.Truncate(w.off); terr != nil {
			w.broken = true
		}
		return fmt.Errorf("write WAL: %w", err)
	}
	w.off += int64(len(buf))
	w.segs[len(w.segs)-1].last = b.last
	return nil
}

// drop deletes the segments, other than the one being written, whose events
// are all at or below applied (committed to bbolt). Only the committer
// calls it, as it owns the segment list.
func (w *wal) drop(applied uint64) int {
	n := 0
	for len(w.segs) > 1 && w.segs[0].last <= applied {
		os.Remove(w.segs[0].path)
		w.segs = w.segs[1:]
		n++
	}
	return n
}

func (w *wal) close() error {
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}
