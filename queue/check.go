package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/evq/evq"
	bolt "go.etcd.io/bbolt"
)

// CheckReport is the result of a store check.
type CheckReport struct {
	Events        int
	Names         int
	Subscriptions int
	DeadLetters   int
	LastSeq       uint64
	WALEvents     int // durable in the WAL, not yet in bbolt: Open writes them in
	Problems      []string
}

// OK reports whether the check found no problem.
func (r *CheckReport) OK() bool { return len(r.Problems) == 0 }

func (r *CheckReport) addf(format string, args ...any) {
	if len(r.Problems) < 100 {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// Check verifies bbolt's own consistency and evq's invariants: every event
// decodes, seqs are at most the last seq, ordinals and times never decrease
// within a name, cursors are at most the last seq, and dead letters belong to
// existing subscriptions.
func (l *Log) Check() (*CheckReport, error) {
	r := &CheckReport{}
	// In a writable transaction, rolled back: bbolt's page walk reads the
	// freelist, which a concurrent writer (the applier) changes unlocked.
	l.waitApplied(l.LastSeq())
	tx, err := l.db.Begin(true)
	if err != nil {
		return r, fmt.Errorf("check: %w", err)
	}
	err = checkTx(tx, r)
	tx.Rollback()
	if err == nil && !r.OK() {
		err = fmt.Errorf("%w: %d problems, first: %s", ErrCorrupt, len(r.Problems), r.Problems[0])
	}
	return r, err
}

// CheckFile opens the bbolt file at path read-only and checks it, without
// starting a committer. It is what `evq check` runs.
func CheckFile(path string) (*CheckReport, error) {
	r := &CheckReport{}
	// bbolt's page walk runs in its own goroutine, where a page past the end
	// of a cut-short file cannot be recovered from: check the shape first.
	if err := CheckStartup(path); err != nil {
		r.addf("%s", err.Error())
		return r, fmt.Errorf("check %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return r, fmt.Errorf("check %s: the file is locked by a running evq; stop it or check a copy", path)
		}
		return r, fmt.Errorf("check %s: %w: %w", path, ErrCorrupt, err)
	}
	defer db.Close()
	err = safeView(db, func(tx *bolt.Tx) error { return checkTx(tx, r) })
	if err == nil {
		checkWAL(path, r)
	}
	if err == nil && !r.OK() {
		err = fmt.Errorf("check %s: %w: %d problems", path, ErrCorrupt, len(r.Problems))
	}
	return r, err
}

// checkWAL counts the WAL's events that bbolt lacks and checks that they
// continue its last seq.
func checkWAL(path string, r *CheckReport) {
	batches, _, err := readWAL(walDir(path))
	if err != nil {
		r.addf("%s", err.Error())
		return
	}
	for _, b := range batches {
		if b.last <= r.LastSeq {
			continue
		}
		if r.WALEvents == 0 && b.first != r.LastSeq+1 {
			r.addf("the WAL resumes at seq %d but the store ends at %d: events are missing", b.first, r.LastSeq)
		}
		r.WALEvents += len(b.enc)
	}
}

// safeView runs fn and turns a panic from reading a damaged page into an error.
func safeView(db *bolt.DB, fn func(*bolt.Tx) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: reading the file panicked: %v", ErrCorrupt, p)
		}
	}()
	return db.View(fn)
}

func checkTx(tx *bolt.Tx, r *CheckReport) error {
	for err := range tx.Check() {
		r.addf("bbolt: %s", err.Error())
	}
	for _, name := range [][]byte{bucketEvents, bucketSubs, bucketCursors, bucketDLQ, bucketMeta} {
		if tx.Bucket(name) == nil {
			r.addf("bucket %q is missing", name)
		}
	}
	if !r.OK() {
		return nil
	}
	meta := tx.Bucket(bucketMeta)
	r.LastSeq = u64(meta.Get(keyLastSeq))
	var total uint64
	events := tx.Bucket(bucketEvents)
	err := events.ForEachBucket(func(name []byte) error {
		r.Names++
		if err := evq.ValidateName(string(name)); err != nil {
			r.addf("event bucket %q: %s", name, err.Error())
		}
		var prevSeq, prevOrd uint64
		var prevTime int64
		return events.Bucket(name).ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				r.addf("%s: key %x is not a seq", name, k)
				return nil
			}
			err := eachEvent(k, v, func(seq uint64, enc []byte) (bool, error) {
				r.Events++
				total += uint64(len(enc))
				if seq > r.LastSeq {
					r.addf("%s: seq %d is above the last seq %d", name, seq, r.LastSeq)
				}
				if seq <= prevSeq {
					r.addf("%s: seq %d follows seq %d", name, seq, prevSeq)
				}
				if _, err := decodeEvent(string(name), seq, enc); err != nil {
					r.addf("%s", err.Error())
					return true, nil
				}
				if ord := ordinalOf(enc); prevSeq != 0 && ord <= prevOrd {
					r.addf("%s: event %d ordinal %d not above %d", name, seq, ord, prevOrd)
				}
				if t := timeOf(enc); t < prevTime {
					r.addf("%s: event %d raised before event %d", name, seq, prevSeq)
				}
				prevSeq, prevOrd, prevTime = seq, ordinalOf(enc), timeOf(enc)
				return true, nil
			})
			if err != nil {
				r.addf("%s: %s", name, err.Error())
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	if b := u64(meta.Get(keyBytes)); b != total {
		r.addf("meta: stored bytes %d, events hold %d", b, total)
	}
	subs := tx.Bucket(bucketSubs)
	err = subs.ForEach(func(k, v []byte) error {
		r.Subscriptions++
		var s evq.Subscription
		if err := json.Unmarshal(v, &s); err != nil {
			r.addf("subscription %x: %s", k, err.Error())
			return nil
		}
		c := tx.Bucket(bucketCursors).Get(k)
		if c == nil {
			r.addf("subscription %d has no cursor", s.ID)
		} else if u64(c) > r.LastSeq {
			r.addf("subscription %d: cursor %d is above the last seq %d", s.ID, u64(c), r.LastSeq)
		}
		return nil
	})
	if err != nil {
		return err
	}
	dlq := tx.Bucket(bucketDLQ)
	return dlq.ForEachBucket(func(id []byte) error {
		if len(id) != 8 {
			r.addf("dead letter bucket %x is not a subscription id", id)
			return nil
		}
		if subs.Get(id) == nil {
			r.addf("dead letters for subscription %d, which does not exist", keySeq(id))
		}
		return dlq.Bucket(id).ForEach(func(k, v []byte) error {
			r.DeadLetters++
			if _, err := decodeDeadLetter(keySeq(k), v); err != nil {
				r.addf("%s", err.Error())
			}
			return nil
		})
	})
}

// CheckStartup is the check evq serve runs before it opens a store: cheap
// enough for any size, it finds a truncated file (pages past its end would
// crash a reader), damaged meta pages, missing buckets, unreadable first or
// last events, and cursors past the last seq. A full check of every page is
// CheckFile ("evq check"). A store that does not exist yet passes.
func CheckStartup(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return fmt.Errorf("check %s: the file is locked by another evq process", path)
		}
		return fmt.Errorf("%s: %w: %w", path, ErrCorrupt, err)
	}
	defer db.Close()
	err = safeView(db, func(tx *bolt.Tx) error {
		if tx.Size() > fi.Size() {
			return fmt.Errorf("%w: the file is %d bytes but its pages reach %d: it was cut short", ErrCorrupt, fi.Size(), tx.Size())
		}
		for _, name := range [][]byte{bucketEvents, bucketSubs, bucketCursors, bucketDLQ, bucketMeta} {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("%w: bucket %q is missing", ErrCorrupt, name)
			}
		}
		if v := tx.Bucket(bucketMeta).Get(keyVersion); len(v) != 1 || v[0] != formatVersion {
			return fmt.Errorf("%w: format version %v", ErrCorrupt, v)
		}
		last := u64(tx.Bucket(bucketMeta).Get(keyLastSeq))
		events := tx.Bucket(bucketEvents)
		err := events.ForEachBucket(func(name []byte) error {
			c := events.Bucket(name).Cursor()
			for _, kv := range [][2][]byte{kvOf(c.First()), kvOf(c.Last())} {
				if kv[0] == nil {
					continue
				}
				if len(kv[0]) != 8 || keySeq(kv[0]) > last {
					return fmt.Errorf("%w: %s: key %x beyond the last seq %d", ErrCorrupt, name, kv[0], last)
				}
				err := eachEvent(kv[0], kv[1], func(seq uint64, enc []byte) (bool, error) {
					_, err := decodeEvent(string(name), seq, enc)
					return true, err
				})
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketCursors).ForEach(func(k, v []byte) error {
			if u64(v) > last {
				return fmt.Errorf("%w: subscription %d's cursor %d is past the last seq %d", ErrCorrupt, keySeq(k), u64(v), last)
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func kvOf(k, v []byte) [2][]byte { return [2][]byte{k, v} }
