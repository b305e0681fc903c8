package delivery

import (
	"context"
	"time"

	"github.com/evq/evq"
)

// Log is the durable store the engine runs on. Package queue implements it.
type Log interface {
	// Append stores events durably, setting their Seq and Time, and returns
	// after they are on disk.
	Append(ctx context.Context, events ...*evq.Event) error
	// Read returns up to max events named name with seq > after, in order.
	Read(name string, after uint64, max int) ([]*evq.Event, error)
	// ReadInto reads like Read into dst's memory, reusing it, and returns
	// dst refilled.
	ReadInto(dst []evq.Event, name string, after uint64, max int) ([]evq.Event, error)
	// ReadShared reads like ReadInto and returns pointers to the events
	// read in ptrs' memory; events it did not decode into dst are shared
	// with other readers (decoded once for all) and must not be modified.
	ReadShared(dst []evq.Event, ptrs []*evq.Event, name string, after uint64, max int) ([]evq.Event, []*evq.Event, error)
	// Notify returns a channel closed at the next commit of events.
	Notify() <-chan struct{}
	// LastSeq returns the last committed seq.
	LastSeq() uint64
	// SeqBefore returns the last seq of name raised before t.
	SeqBefore(name string, t time.Time) (uint64, error)
	// Lag returns how many events of name lie above cursor.
	Lag(name string, cursor uint64) (uint64, error)

	// PutSubscription stores sub, assigning an ID if it has none; a new
	// sub, or setCursor, sets its cursor.
	PutSubscription(sub *evq.Subscription, cursor uint64, setCursor bool) error
	Subscriptions() ([]evq.Subscription, error)
	DeleteSubscription(id uint64) error
	Cursor(id uint64) (uint64, error)
	// SetCursor records a cursor, to be stored with a later commit.
	SetCursor(id, cursor uint64)
	// SetCursorSync stores a cursor and waits for the disk.
	SetCursorSync(ctx context.Context, id, cursor uint64) error

	AddDeadLetter(id uint64, d *evq.DeadLetter) error
	DeadLetters(id, after uint64, max int) ([]*evq.DeadLetter, error)
	DeadLetterCount(id uint64) (int, error)
	DeleteDeadLetters(id uint64, seqs ...uint64) (int, error)
}
