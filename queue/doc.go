// Package queue is evq's durable log: events, subscriptions, cursors and dead
// letters in one bbolt file, with a write-ahead log in front of it for
// events. It is the only package that imports bbolt.
//
// Guarantees:
//   - Append returns only after the events are in the WAL and fdatasynced.
//     Appends from many goroutines are committed together by one committer
//     goroutine (group commit): one WAL record and one fdatasync for every
//     append waiting, with no timer, so batches grow with load. (A bbolt
//     commit needs two fsyncs, pages then meta; the WAL halves the wait.)
//   - Readers see an event as soon as it is durable: from bbolt, or from the
//     in-memory tail of events the applier has not yet written into bbolt.
//     ReadShared decodes each event once for all the readers of its name
//     (a fan-out): the tail's events when first read, and the last 128 stored
//     blocks read (cache.go); what it hands out is never modified.
//   - The applier writes the WAL's events into bbolt in the background, in
//     one transaction per round (every 40 ms, or sooner under load), and the
//     committer deletes WAL segments bbolt holds. Open writes into bbolt
//     whatever the WAL has that bbolt lacks, then starts a new WAL.
//   - Sequence numbers are assigned in commit order, strictly increasing across
//     the whole log and never reused, even after events are deleted.
//   - Cursors set with SetCursor are written with the applier's next round,
//     at the latest after Options.CursorFlushInterval. After a crash a cursor
//     may be that much behind: delivery is at-least-once. A cursor in bbolt
//     never passes bbolt's last seq.
//   - Crash recovery: bbolt sees exactly its last committed transaction; the
//     WAL's intact records (CRC-32C each) are replayed after it, and a record
//     cut short by the crash was never acknowledged.
//
// Layout: bucket "events" holds one child bucket per event name, whose
// values are blocks of that name's events (up to 16 KiB, written by the
// applier) keyed by the big-endian seq of the block's last event (block.go); a
// value that is a single encoded event, as older stores hold, reads as a
// block of one. "subs" holds subscription records; "cursors" one 8-byte seq
// per subscription; "dlq" one child bucket per subscription; "meta" the
// format version, the last seq and the byte count of stored events.
package queue
