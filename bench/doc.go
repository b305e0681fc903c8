// Package bench holds evq's end-to-end benchmarks: events raised through the
// engine, stored durably, delivered to real loopback subscribers and
// acknowledged. Micro-benchmarks live beside their code (queue, stream).
//
// Run them all with
//
//	go test -run XXX -bench . -benchtime 3s ./...
//
// and compare runs with benchstat.
package bench
