// Package recovery is where evq proves what happens after a crash. Crash
// recovery of the store itself is bbolt's and happens in queue.Open; the
// offline store check behind "evq check" is queue.CheckFile. This package's
// tests run evq as a child process, kill it with SIGKILL at random moments
// under load, restart it, and count that every event whose raise was
// acknowledged is delivered, in order, to every subscriber.
package recovery
