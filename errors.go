package evq

import "errors"

// ErrInvalidEvent means an event's name or params are not acceptable.
var ErrInvalidEvent = errors.New("invalid event")

// ErrInvalidSocket means a socket string could not be parsed.
var ErrInvalidSocket = errors.New("invalid socket")

// PermanentError marks an error that retrying cannot fix, such as an event
// too large for a datagram. Delivery parks such events in the dead-letter
// store at once.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent marks err as permanent. It returns nil for nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err, or an error it wraps, was marked with
// Permanent.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// ErrNotFound means a subscription or dead letter does not exist.
var ErrNotFound = errors.New("not found")

// ErrStorageFull means the store has no room for a write (disk full, file
// size limit); already stored events are unharmed and raises can be retried
// when space returns.
var ErrStorageFull = errors.New("storage full")

// ErrInvalidOptions means a subscription's options do not fit together or
// its transport.
var ErrInvalidOptions = errors.New("invalid subscription options")
