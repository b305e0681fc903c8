package queue

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/evq/evq"
	bolt "go.etcd.io/bbolt"
)

var (
	bucketEvents  = []byte("events")
	bucketSubs    = []byte("subs")
	bucketCursors = []byte("cursors")
	bucketDLQ     = []byte("dlq")
	bucketMeta    = []byte("meta")

	keyVersion = []byte("version")
	keyLastSeq = []byte("last_seq")
	keyBytes   = []byte("bytes")
	keyNextSub = []byte("next_sub")
)

// Default option values.
const (
	DefaultMaxEventSize        = 64 << 10
	DefaultCursorFlushInterval = 100 * time.Millisecond
	DefaultMinAge              = 24 * time.Hour
	DefaultMaxAge              = 7 * 24 * time.Hour
	DefaultRetentionInterval   = time.Minute
	maxBatchRequests           = 8192
)

// Options configure a Log. A nil *Options means all defaults.
type Options struct {
	// MaxEventSize is the largest encoded event accepted. 0 means 64 KiB.
	MaxEventSize int
	// CursorFlushInterval bounds how long a cursor set with SetCursor stays
	// only in memory when no append commits it. 0 means 100 ms.
	CursorFlushInterval time.Duration
	// MinAge keeps acknowledged events at least this long, so that replay by
	// time works. 0 means 24 h; negative means delete as soon as acknowledged.
	MinAge time.Duration
	// MaxAge drops events older than this even if unacknowledged. 0 means
	// 7 days; negative means never.
	MaxAge time.Duration
	// MaxBytes drops the oldest events, even if unacknowledged, once stored
	// events exceed this many bytes. 0 means no limit.
	MaxBytes int64
	// RetentionInterval is how often retention runs. 0 means 1 minute;
	// negative disables the background run (call Retain yourself).
	RetentionInterval time.Duration
	// NoSync skips fsync. Only for benchmarks that measure everything else.
	NoSync bool
	// NowFunc returns the current time. nil means time.Now.
	NowFunc func() time.Time
	// Logger receives retention and error reports. nil means slog.Default().
	Logger *slog.Logger
	// CommitFunc, if set, is called after each successful commit with the
	// number of events and the time it took, fsync included (for metrics).
	CommitFunc func(events int, took time.Duration)
}

func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.MaxEventSize <= 0 {
		r.MaxEventSize = DefaultMaxEventSize
	}
	if r.CursorFlushInterval <= 0 {
		r.CursorFlushInterval = DefaultCursorFlushInterval
	}
	if r.MinAge == 0 {
		r.MinAge = DefaultMinAge
	}
	if r.MaxAge == 0 {
		r.MaxAge = DefaultMaxAge
	}
	if r.RetentionInterval == 0 {
		r.RetentionInterval = DefaultRetentionInterval
	}
	if r.NowFunc == nil {
		r.NowFunc = time.Now
	}
	if r.Logger == nil {
		r.Logger = slog.Default()
	}
	return r
}

// Log is the durable event log. All methods are safe for concurrent use.
type Log struct {
	db   *bolt.DB
	opts Options
	path string

	reqs    chan *appendReq
	closeMu sync.RWMutex // held for reading while handing a request to the committer
	closed  bool
	closing chan struct{}
	done    chan struct{}
	wg      sync.WaitGroup

	lastSeq atomic.Uint64

	mu       sync.Mutex
	notify   chan struct{}
	dirty    map[uint64]uint64 // cursors not yet committed
	ordinals map[string]uint64 // last ordinal per event name
	lastTime int64

	stats Stats
}

// Stats are counters of the log's work, for metrics.
type Stats struct {
	Commits       atomic.Uint64
	CommitEvents  atomic.Uint64
	CommitNanos   atomic.Uint64
	CommitErrors  atomic.Uint64
	RetainDeleted atomic.Uint64
	RetainDropped atomic.Uint64 // unacknowledged events dropped by MaxAge/MaxBytes
}

// Stats returns the log's live counters.
func (l *Log) Stats() *Stats { return &l.stats }

type appendReq struct {
	events []*evq.Event
	enc    [][]byte
	seqs   []uint64
	time   int64
	err    error
	done   chan struct{}
}

var reqPool = sync.Pool{New: func() any { return &appendReq{done: make(chan struct{}, 1)} }}

// Open opens or creates the log at path (the bbolt file), recovering from an
// unclean stop, and starts its committer.
func Open(path string, opts *Options) (*Log, error) {
	o := opts.withDefaults()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:         5 * time.Second,
		FreelistType:    bolt.FreelistMapType,
		NoFreelistSync:  true,
		InitialMmapSize: 64 << 20,
		NoSync:          o.NoSync,
	})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open log %s: the file is locked by another evq process", path)
		}
		return nil, fmt.Errorf("open log %s: %w", path, err)
	}
	l := &Log{
		db:       db,
		opts:     o,
		path:     path,
		reqs:     make(chan *appendReq, maxBatchRequests),
		closing:  make(chan struct{}),
		done:     make(chan struct{}),
		notify:   make(chan struct{}),
		dirty:    make(map[uint64]uint64),
		ordinals: make(map[string]uint64),
	}
	if err := l.init(); err != nil {
		db.Close()
		return nil, err
	}
	go l.run()
	if o.RetentionInterval > 0 {
		l.wg.Add(1)
		go l.retainLoop()
	}
	return l, nil
}

func (l *Log) init() error {
	return l.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketEvents, bucketSubs, bucketCursors, bucketDLQ, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("open log: create bucket %s: %w", name, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keyVersion); v == nil {
			if err := meta.Put(keyVersion, []byte{formatVersion}); err != nil {
				return err
			}
		} else if len(v) != 1 || v[0] != formatVersion {
			return fmt.Errorf("open log: %w: unknown format version %v", ErrCorrupt, v)
		}
		l.lastSeq.Store(u64(meta.Get(keyLastSeq)))
		return tx.Bucket(bucketEvents).ForEachBucket(func(name []byte) error {
			_, v := tx.Bucket(bucketEvents).Bucket(name).Cursor().Last()
			if v != nil {
				l.ordinals[string(name)] = ordinalOf(v)
				if t := timeOf(v); t > l.lastTime {
					l.lastTime = t
				}
			}
			return nil
		})
	})
}

// Path returns the bbolt file's path.
func (l *Log) Path() string { return l.path }

// LastSeq returns the seq of the last committed event (0 if none).
func (l *Log) LastSeq() uint64 { return l.lastSeq.Load() }

// Notify returns a channel that is closed at the next commit of events.
func (l *Log) Notify() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.notify
}

// Append stores events durably. It returns after the fsync, with each event's
// Seq and Time set. Events of one call get consecutive seqs. A nil or empty
// events commits pending cursors and waits for that (see Flush).
func (l *Log) Append(ctx context.Context, events ...*evq.Event) error {
	r := reqPool.Get().(*appendReq)
	r.events = events
	r.enc = r.enc[:0]
	for _, ev := range events {
		if err := ev.Validate(); err != nil {
			reqPool.Put(r)
			return err
		}
		enc := encodeEvent(make([]byte, 0, encodedSize(ev)), ev)
		if len(enc) > l.opts.MaxEventSize {
			reqPool.Put(r)
			return fmt.Errorf("append %s: %w: %d bytes encoded, the limit is %d", ev.Name, ErrEventTooLarge, len(enc), l.opts.MaxEventSize)
		}
		r.enc = append(r.enc, enc)
	}
	if cap(r.seqs) < len(events) {
		r.seqs = make([]uint64, len(events))
	}
	r.seqs = r.seqs[:len(events)]

	l.closeMu.RLock()
	if l.closed {
		l.closeMu.RUnlock()
		reqPool.Put(r)
		return ErrClosed
	}
	select {
	case l.reqs <- r:
	case <-ctx.Done():
		l.closeMu.RUnlock()
		reqPool.Put(r)
		return ctx.Err()
	}
	l.closeMu.RUnlock()
	// Once handed over, the request is always answered: wait for it even if
	// ctx ends, so that the caller learns the truth about durability.
	<-r.done
	err := r.err
	if err == nil {
		t := time.Unix(0, r.time).UTC()
		for i, ev := range events {
			ev.Seq = r.seqs[i]
			ev.Time = t
		}
	}
	r.events = nil
	for i := range r.enc {
		r.enc[i] = nil
	}
	reqPool.Put(r)
	return err
}

// Flush commits pending cursors and returns after the fsync.
func (l *Log) Flush(ctx context.Context) error { return l.Append(ctx) }

// run is the committer: it drains every waiting request into one
// transaction and one fsync.
func (l *Log) run() {
	defer close(l.done)
	tick := time.NewTicker(l.opts.CursorFlushInterval)
	defer tick.Stop()
	batch := make([]*appendReq, 0, 64)
	for {
		select {
		case r := <-l.reqs:
			batch = append(batch[:0], r)
			// The raisers answered by the last commit are runnable now; let
			// them queue their next raise before this batch is closed, or
			// commits alternate between two half-size batches. Yield only
			// while the queue keeps growing: an idle log commits at once.
			for i, n := 0, -1; i < 8 && len(l.reqs) != n; i++ {
				n = len(l.reqs)
				runtime.Gosched()
			}
			batch = l.drain(batch)
			l.commit(batch)
		case <-tick.C:
			l.mu.Lock()
			n := len(l.dirty)
			l.mu.Unlock()
			if n > 0 {
				l.commit(nil)
			}
		case <-l.closing:
			for {
				batch = l.drain(batch[:0])
				if len(batch) == 0 {
					break
				}
				l.commit(batch)
			}
			l.commit(nil)
			return
		}
	}
}

func (l *Log) drain(batch []*appendReq) []*appendReq {
	for len(batch) < maxBatchRequests {
		select {
		case r := <-l.reqs:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

func (l *Log) commit(batch []*appendReq) {
	start := time.Now()
	l.mu.Lock()
	var cursors map[uint64]uint64
	if len(l.dirty) > 0 {
		cursors = l.dirty
		l.dirty = make(map[uint64]uint64)
	}
	l.mu.Unlock()

	seq := l.lastSeq.Load()
	now := l.opts.NowFunc().UnixNano()
	if now < l.lastTime {
		now = l.lastTime // raise times never go backwards, so replay by time can bisect
	}
	ords := make(map[string]uint64)
	nevents := 0
	total := 0
	for _, r := range batch {
		total += len(r.events)
	}
	keys := make([]byte, 8*total) // bbolt keeps keys until the commit: one slab for all
	err := l.db.Update(func(tx *bolt.Tx) error {
		events := tx.Bucket(bucketEvents)
		var added uint64
		buckets := make(map[string]*bolt.Bucket)
		for _, r := range batch {
			for i, ev := range r.events {
				b := buckets[ev.Name]
				if b == nil {
					var err error
					if b, err = events.CreateBucketIfNotExists([]byte(ev.Name)); err != nil {
						return fmt.Errorf("append %s: %w", ev.Name, err)
					}
					b.FillPercent = 1.0 // keys only grow: pack pages full
					buckets[ev.Name] = b
				}
				ord, ok := ords[ev.Name]
				if !ok {
					l.mu.Lock()
					ord = l.ordinals[ev.Name]
					l.mu.Unlock()
				}
				ord++
				ords[ev.Name] = ord
				seq++
				r.seqs[i] = seq
				putHeader(r.enc[i], now, ord)
				key := keys[8*nevents : 8*nevents+8 : 8*nevents+8]
				binary.BigEndian.PutUint64(key, seq)
				if err := b.Put(key, r.enc[i]); err != nil {
					return fmt.Errorf("append %s: %w", ev.Name, err)
				}
				added += uint64(len(r.enc[i]))
				nevents++
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
		if nevents == 0 {
			return nil
		}
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(keyBytes, seqKey(u64(meta.Get(keyBytes))+added)); err != nil {
			return err
		}
		return meta.Put(keyLastSeq, seqKey(seq))
	})
	if err != nil {
		err = classify(err)
		l.stats.CommitErrors.Add(1)
		l.opts.Logger.Error("commit failed", "events", nevents, "err", err)
		// Put the cursors back, unless newer ones were set meanwhile.
		l.mu.Lock()
		for id, c := range cursors {
			if _, ok := l.dirty[id]; !ok {
				l.dirty[id] = c
			}
		}
		l.mu.Unlock()
		for _, r := range batch {
			r.err = err
			r.done <- struct{}{}
		}
		return
	}
	l.stats.Commits.Add(1)
	l.stats.CommitEvents.Add(uint64(nevents))
	took := time.Since(start)
	l.stats.CommitNanos.Add(uint64(took))
	if l.opts.CommitFunc != nil {
		l.opts.CommitFunc(nevents, took)
	}
	if nevents > 0 {
		l.lastTime = now
		l.lastSeq.Store(seq)
		l.mu.Lock()
		for name, o := range ords {
			l.ordinals[name] = o
		}
		close(l.notify)
		l.notify = make(chan struct{})
		l.mu.Unlock()
	}
	for _, r := range batch {
		r.err = nil
		r.time = now
		r.done <- struct{}{}
	}
}

// classify marks errors that mean the disk has no room. bbolt reports a
// failed file resize with the errno formatted into its message, so the
// errno's text is matched too.
func classify(err error) error {
	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EFBIG, syscall.EDQUOT} {
		if errors.Is(err, errno) || strings.Contains(err.Error(), errno.Error()) {
			return fmt.Errorf("%w: %w", ErrStorageFull, err)
		}
	}
	return err
}

// Close stops accepting appends, commits those already accepted and pending
// cursors, and closes the file. It is safe to call twice.
func (l *Log) Close() error {
	l.closeMu.Lock()
	if l.closed {
		l.closeMu.Unlock()
		return nil
	}
	l.closed = true
	l.closeMu.Unlock()
	close(l.closing)
	<-l.done
	l.wg.Wait()
	if err := l.db.Close(); err != nil {
		return fmt.Errorf("close log: %w", err)
	}
	return nil
}
