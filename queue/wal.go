package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/evq/evq"
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
//	payload: segment id (8 bytes: the first seq in the segment's name),
//	         first seq (8 bytes), event count (4 bytes), then per event:
//	         name length (1 byte), name, encoded length (4 bytes), encoded event
//
// A record that is cut short or fails its CRC ends its segment: it was being
// written when the process died and was never acknowledged.
//
// Applied segments are recycled rather than deleted (up to walSpares of
// them, as <dir>/N.spare): fdatasync on blocks a file already has flushes
// only data, while appending also commits the file's new size to the
// filesystem journal, which costs this disk about a third more per commit.
// Records left from a segment's earlier life carry another segment id,
// which ends the segment for a reader as a torn record does.
//
// A new store has no spare, so its first segment grows the file. Once that
// segment has seen prepareAfter commits (a store in use, not a test's), a
// goroutine writes a zero-filled spare and the committer moves to it.

const (
	walSegmentSize = 16 << 20
	walHeaderLen   = 8
	walSpares      = 2
	prepareAfter   = 256 // commits on a growing segment before a spare is made
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// walBatch is one WAL record: consecutive seqs from first to last. It is
// immutable once built, so readers may share it.
type walBatch struct {
	first, last uint64
	names       []string
	enc         [][]byte // encoded events, headers set
	bytes       uint64   // sum of len(enc)
	// shared holds the events decoded once for every reader of the tail
	// (ReadShared), set by the first reader that needs each; nil where
	// nobody has yet. Empty in a batch that is not shared.
	shared []atomic.Pointer[evq.Event]
}

// wal is the segment being written and the older ones still needed. Only
// the committer writes; the applier removes segments through drop.
type wal struct {
	dir    string
	noSync bool
	f      *os.File
	id     uint64 // the current segment's id
	off    int64
	broken bool // a failed write could not be undone: start a new segment
	buf    []byte

	segs   []walSegment // oldest first; the last one is f
	spares []string     // applied segments kept for reuse

	growing   bool // f is smaller than a segment: fdatasyncs also commit its size
	commits   int  // records written to f while growing
	preparing bool // a spare is being made
	prepared  chan string
	stop      chan struct{}
	prepDone  chan struct{}
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
// must be applied, and returns them with the segments. A record whose
// first seq is not above the previous one's last replaces what came before
// from that seq on: it was written after a failed write whose seqs were
// never acknowledged.
func readWAL(dir string) ([]*walBatch, []walSegment, error) {
	paths, err := listSegments(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("read WAL: %w", err)
	}
	var out []*walBatch
	segs := make([]walSegment, len(paths))
	for si, p := range paths {
		segs[si].path = p
		id, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(p), ".wal"), 16, 64)
		if err != nil {
			return nil, nil, fmt.Errorf("read WAL: %w: segment name %s", ErrCorrupt, p)
		}
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
			if len(payload) < 8 || binary.BigEndian.Uint64(payload) != id {
				break // left from the file's life as an earlier segment
			}
			b, err := decodeWALRecord(payload[8:])
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
			segs[si].last = b.last
			data = data[walHeaderLen+int(n):]
		}
	}
	return out, segs, nil
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

// openWAL starts a new segment whose first seq will be next. Spare files
// in dir are reused.
func openWAL(dir string, noSync bool, next uint64) (*wal, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open WAL: %w", err)
	}
	w := &wal{dir: dir, noSync: noSync, prepared: make(chan string, 1), stop: make(chan struct{})}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open WAL: %w", err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") {
			os.Remove(filepath.Join(dir, e.Name())) // a spare cut short
		}
		if p := filepath.Join(dir, e.Name()); strings.HasSuffix(p, ".spare") {
			if len(w.spares) < walSpares && fullSize(p) {
				w.spares = append(w.spares, p)
			} else {
				os.Remove(p)
			}
		}
	}
	if err := w.rotate(next); err != nil {
		return nil, err
	}
	return w, nil
}

// rotate closes the current segment (kept until applied) and starts one
// whose first seq will be next, in a spare file if there is one.
func (w *wal) rotate(next uint64) error {
	p := segmentPath(w.dir, next)
	if w.f != nil {
		w.f.Close()
		w.f = nil
		if w.segs[len(w.segs)-1].path == p {
			w.segs = w.segs[:len(w.segs)-1] // reopened: it held no good record
		}
	}
	flag := os.O_CREATE | os.O_TRUNC | os.O_WRONLY
	if n := len(w.spares); n > 0 {
		if err := os.Rename(w.spares[n-1], p); err == nil {
			flag = os.O_WRONLY
		}
		w.spares = w.spares[:n-1]
	}
	f, err := os.OpenFile(p, flag, 0o600)
	if err != nil {
		return fmt.Errorf("open WAL segment: %w", err)
	}
	if err := w.syncDir(); err != nil {
		f.Close()
		return err
	}
	w.f, w.id, w.off, w.broken = f, next, 0, false
	w.growing, w.commits = true, 0
	if fi, err := f.Stat(); err == nil && fi.Size() >= walSegmentSize {
		w.growing = false
	}
	w.segs = append(w.segs, walSegment{path: p})
	return nil
}

// prepare makes a zero-filled spare segment in the background.
func (w *wal) prepare() {
	w.preparing = true
	w.prepDone = make(chan struct{})
	go func() {
		defer close(w.prepDone)
		tmp := filepath.Join(w.dir, fmt.Sprintf("prepared-%d.tmp", time.Now().UnixNano()))
		if err := writeZeros(tmp, walSegmentSize, w.stop); err != nil {
			os.Remove(tmp)
			return
		}
		spare := strings.TrimSuffix(tmp, ".tmp") + ".spare"
		if os.Rename(tmp, spare) != nil {
			os.Remove(tmp)
			return
		}
		w.prepared <- spare
	}()
}

// writeZeros writes a zero-filled file a little at a time, each piece
// flushed before a pause: one 16 MiB flush would hold the committer's
// fdatasyncs behind it for tens of milliseconds.
func writeZeros(path string, size int, stop <-chan struct{}) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	chunk := make([]byte, 256<<10)
	pause := time.NewTicker(5 * time.Millisecond)
	defer pause.Stop()
	for n := 0; n < size; n += len(chunk) {
		if _, err := f.Write(chunk); err != nil {
			return err
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			return err
		}
		select {
		case <-stop:
			return errors.New("stopped")
		case <-pause.C:
		}
	}
	return f.Sync()
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
	if w.growing && !w.noSync {
		select {
		case p := <-w.prepared:
			w.spares = append(w.spares, p)
			w.preparing = false
		default:
		}
		if w.commits++; w.commits >= prepareAfter && len(w.spares) == 0 && !w.preparing {
			w.prepare()
		}
	}
	if w.broken || w.off >= walSegmentSize || w.growing && len(w.spares) > 0 {
		if err := w.rotate(b.first); err != nil {
			return err
		}
	}
	buf := append(w.buf[:0], make([]byte, walHeaderLen+20)...)
	binary.BigEndian.PutUint64(buf[walHeaderLen:], w.id)
	binary.BigEndian.PutUint64(buf[walHeaderLen+8:], b.first)
	binary.BigEndian.PutUint32(buf[walHeaderLen+16:], uint32(len(b.enc)))
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

// drop retires the segments, other than the one being written, whose events
// are all at or below applied (committed to bbolt): it keeps up to walSpares
// of them for reuse and deletes the rest. Only the committer calls it, as it
// owns the segment list. It returns how many it retired.
func (w *wal) drop(applied uint64) int {
	n := 0
	for len(w.segs) > 1 && w.segs[0].last <= applied {
		old := w.segs[0].path
		w.segs = w.segs[1:]
		n++
		if len(w.spares) < walSpares && fullSize(old) && retire(old) == nil {
			w.spares = append(w.spares, spareName(old))
			continue
		}
		os.Remove(old)
	}
	return n
}

// fullSize reports whether a file is worth keeping as a spare: reusing a
// smaller one would grow it again.
func fullSize(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Size() >= walSegmentSize
}

func spareName(segment string) string { return strings.TrimSuffix(segment, ".wal") + ".spare" }

// retire renames an applied segment to a spare.
func retire(segment string) error { return os.Rename(segment, spareName(segment)) }

func (w *wal) close() error {
	if w.f == nil {
		return nil
	}
	close(w.stop)
	if w.prepDone != nil {
		<-w.prepDone
	}
	err := w.f.Close()
	w.f = nil
	return err
}
