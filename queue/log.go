package queue

import (
	"context"
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
	maxUnapplied               = 16 << 20 // bytes in the WAL not yet in bbolt
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

	w         *wal              // owned by the committer
	keptSegs  []walSegment      // segments Open could not write into bbolt
	ords      map[string]uint64 // the committer's scratch
	raises    []*appendReq      // the committer's scratch
	flushes   []*appendReq      // the committer's scratch
	walDone   chan struct{}     // closed when the committer has stopped
	applyDone chan struct{}     // closed when the applier has stopped
	applyKick chan struct{}
	blocks    blockArena  // the applier's memory for blocks, reused round to round
	cache     *blockCache // stored blocks decoded for ReadShared

	lastSeq atomic.Uint64 // last durable (WAL) seq
	applied atomic.Uint64 // last seq committed to bbolt

	mu           sync.Mutex
	notify       chan struct{}
	dirty        map[uint64]uint64 // cursors not yet committed
	ordinals     map[string]uint64 // last ordinal per event name
	lastTime     int64
	tail         []*walBatch   // durable, not yet in bbolt: readers see them here
	pending      []*walBatch   // for the applier's next round
	pendingBytes uint64        // bytes in tail
	flushWaiters []*appendReq  // Flush calls waiting for the applier
	applyErr     error         // the applier's last error, nil once it succeeds
	rounds       uint64        // apply rounds started
	errRound     uint64        // the round applyErr comes from
	appliedCh    chan struct{} // closed after every apply round
	applyNow     bool          // someone waits for bbolt to be current
	pendingSince time.Time     // when pending became non-empty
	lastApply    time.Time     // the applier's last round

	stats Stats
}

// Stats are counters of the log's work, for metrics.
type Stats struct {
	Commits       atomic.Uint64
	CommitEvents  atomic.Uint64
	CommitNanos   atomic.Uint64
	CommitErrors  atomic.Uint64
	WALNanos      atomic.Uint64 // of CommitNanos, writing and syncing the WAL
	Applies       atomic.Uint64 // bbolt transactions of the applier
	ApplyNanos    atomic.Uint64
	ApplyErrors   atomic.Uint64
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
		db:        db,
		opts:      o,
		path:      path,
		reqs:      make(chan *appendReq, maxBatchRequests),
		cache:     newBlockCache(),
		closing:   make(chan struct{}),
		done:      make(chan struct{}),
		notify:    make(chan struct{}),
		dirty:     make(map[uint64]uint64),
		ordinals:  make(map[string]uint64),
		ords:      make(map[string]uint64),
		walDone:   make(chan struct{}),
		applyDone: make(chan struct{}),
		applyKick: make(chan struct{}, 1),
		appliedCh: make(chan struct{}),
	}
	if err := l.init(); err != nil {
		db.Close()
		return nil, err
	}
	if l.w, err = openWAL(walDir(path), o.NoSync, l.lastSeq.Load()+1); err != nil {
		db.Close()
		return nil, err
	}
	l.w.segs = append(l.keptSegs, l.w.segs...)
	go l.run()
	go l.applyLoop()
	if o.RetentionInterval > 0 {
		l.wg.Add(1)
		go l.retainLoop()
	}
	return l, nil
}

func (l *Log) init() error {
	if err := l.db.Update(l.initTx); err != nil {
		return err
	}
	if err := l.recoverWAL(); err != nil {
		return err
	}
	if err := l.db.View(l.loadTx); err != nil {
		return err
	}
	for _, b := range l.pending { // left in the WAL: bbolt had no room
		for i, enc := range b.enc {
			l.ordinals[b.names[i]] = ordinalOf(enc)
			l.lastTime = max(l.lastTime, timeOf(enc))
		}
		l.lastSeq.Store(b.last)
	}
	return nil
}

func (l *Log) initTx(tx *bolt.Tx) error {
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
	return nil
}

// loadTx reads the state the committer continues from.
func (l *Log) loadTx(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	l.lastSeq.Store(u64(meta.Get(keyLastSeq)))
	l.applied.Store(l.lastSeq.Load())
	return tx.Bucket(bucketEvents).ForEachBucket(func(name []byte) error {
		_, v, err := lastOf(tx.Bucket(bucketEvents).Bucket(name))
		if err != nil {
			return fmt.Errorf("open log: %s: %w", name, err)
		}
		if v != nil {
			l.ordinals[string(name)] = ordinalOf(v)
			if t := timeOf(v); t > l.lastTime {
				l.lastTime = t
			}
		}
		return nil
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

// run is the committer: it drains every waiting request into one WAL
// record and one fdatasync, answers the raisers and hands the events to the
// applier.
func (l *Log) run() {
	defer close(l.done)
	defer close(l.walDone)
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
		case <-l.closing:
			for {
				batch = l.drain(batch[:0])
				if len(batch) == 0 {
					return
				}
				l.commit(batch)
			}
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

// commit makes batch's events durable in the WAL and publishes them: they
// get their seqs, readers see them, and the applier writes them to bbolt.
// Requests without events (Flush) are answered by the applier's next commit.
// A request may be reused as soon as it is answered, so batch is split into
// raises and flushes before anything is answered.
func (l *Log) commit(batch []*appendReq) {
	start := time.Now()
	raises, flushes := l.raises[:0], l.flushes[:0]
	total := 0
	for _, r := range batch {
		if len(r.events) == 0 {
			flushes = append(flushes, r)
		} else {
			raises = append(raises, r)
			total += len(r.events)
		}
	}
	l.raises, l.flushes = raises, flushes
	if total == 0 {
		l.forwardFlushes(flushes)
		return
	}
	if err := l.waitUnapplied(); err != nil {
		l.fail(raises, flushes, err)
		return
	}

	seq := l.lastSeq.Load()
	now := l.opts.NowFunc().UnixNano()
	if now < l.lastTime {
		now = l.lastTime // raise times never go backwards, so replay by time can bisect
	}
	clear(l.ords)
	wb := &walBatch{first: seq + 1, names: make([]string, 0, total), enc: make([][]byte, 0, total),
		shared: make([]atomic.Pointer[evq.Event], total)}
	for _, r := range raises {
		for i, ev := range r.events {
			ord, ok := l.ords[ev.Name]
			if !ok {
				l.mu.Lock()
				ord = l.ordinals[ev.Name]
				l.mu.Unlock()
			}
			ord++
			l.ords[ev.Name] = ord
			seq++
			r.seqs[i] = seq
			putHeader(r.enc[i], now, ord)
			wb.names = append(wb.names, ev.Name)
			wb.enc = append(wb.enc, r.enc[i])
			wb.bytes += uint64(len(r.enc[i]))
		}
	}
	wb.last = seq
	t0 := time.Now()
	err := l.w.write(wb)
	l.stats.WALNanos.Add(uint64(time.Since(t0)))
	if err != nil {
		l.fail(raises, flushes, classify(err))
		return
	}
	l.stats.Commits.Add(1)
	l.stats.CommitEvents.Add(uint64(total))
	took := time.Since(start)
	l.stats.CommitNanos.Add(uint64(took))
	if l.opts.CommitFunc != nil {
		l.opts.CommitFunc(total, took)
	}

	l.lastTime = now
	l.lastSeq.Store(seq)
	l.mu.Lock()
	for name, o := range l.ords {
		l.ordinals[name] = o
	}
	l.tail = append(l.tail, wb)
	if len(l.pending) == 0 {
		l.pendingSince = start
	}
	l.pending = append(l.pending, wb)
	l.pendingBytes += wb.bytes
	l.flushWaiters = append(l.flushWaiters, flushes...)
	close(l.notify)
	l.notify = make(chan struct{})
	l.mu.Unlock()
	l.kickApplier()
	l.w.drop(l.applied.Load())

	for _, r := range raises {
		r.err = nil
		r.time = now
		r.done <- struct{}{}
	}
}

// fail answers raises with err; flushes still go to the applier.
func (l *Log) fail(raises, flushes []*appendReq, err error) {
	l.stats.CommitErrors.Add(1)
	l.opts.Logger.Error("commit failed", "err", err)
	l.forwardFlushes(flushes)
	for _, r := range raises {
		r.err = err
		r.done <- struct{}{}
	}
}

func (l *Log) forwardFlushes(flushes []*appendReq) {
	if len(flushes) == 0 {
		return
	}
	l.mu.Lock()
	l.flushWaiters = append(l.flushWaiters, flushes...)
	l.mu.Unlock()
	l.kickApplier()
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
	<-l.applyDone
	l.wg.Wait()
	l.w.close()
	if err := l.db.Close(); err != nil {
		return fmt.Errorf("close log: %w", err)
	}
	return nil
}
