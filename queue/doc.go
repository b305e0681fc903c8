// Package queue is evq's durable log: events, subscriptions, cursors and dead
// letters in one bbolt file. It is the only package that imports bbolt.
//
// Guarantees:
//   - Append returns only after the events are in a committed, fsynced
//     transaction. Appends from many goroutines are committed together by one
//     committer goroutine (group commit): one transaction and one fsync for
//     every append waiting, with no timer, so batches grow with load.
//   - Sequence numbers are assigned in commit order, strictly increasing across
//     the whole log and never reused, even after events are deleted.
//   - Cursors set with SetCursor are written with the next commit, or at the
//     latest after Options.CursorFlushInterval. After a crash a cursor may be
//     that much behind: delivery is at-least-once.
//   - Crash recovery is bbolt's own: Open on a file left by a killed process
//     sees exactly the last committed transaction.
//
// Layout: bucket "events" holds one child bucket per event name, keyed by
// big-endian seq; "subs" holds subscription records; "cursors" one 8-byte seq
// per subscription; "dlq" one child bucket per subscription; "meta" the
// format version, the last seq and the byte count of stored events.
package queue
