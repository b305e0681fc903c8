// Package delivery is evq's engine: it raises events into the log and runs
// one worker per subscription that sends the subscription's events, in seq
// order, through its evq.Transport.
//
// Guarantees:
//   - At-least-once, in order per subscription. A worker advances its cursor
//     only over events the transport reported delivered (acknowledged, in
//     reliable mode). Cursors reach the disk in batches, so after a crash the
//     events of the last flush window are sent again; the seq travels with
//     every delivery so receivers can de-duplicate.
//   - A failing event is retried with exponential backoff and jitter. It is
//     parked in the subscription's dead-letter store after MaxAttempts
//     attempts, once it is older than MaxAge, or at once for a permanent
//     error; delivery then goes on with the next event. Redriven dead letters
//     are sent again out of the normal order.
//   - Workers only read the log, each at its own pace: a slow or dead
//     subscriber never slows raises or other subscribers, and nothing is
//     buffered per subscriber beyond one read batch.
//
// The engine depends on the small Log interface defined here, not on bbolt,
// so that another log implementation can stand in for package queue.
package delivery
