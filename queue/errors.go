package queue

import (
	"errors"

	"github.com/evq/evq"
)

// ErrClosed is returned by calls on a closed Log.
var ErrClosed = errors.New("log is closed")

// ErrNotFound means the subscription or dead letter does not exist. It is
// evq.ErrNotFound.
var ErrNotFound = evq.ErrNotFound

// ErrEventTooLarge means an encoded event exceeds Options.MaxEventSize.
var ErrEventTooLarge = errors.New("event too large")

// ErrStorageFull means the disk (or the file size limit) has no room for the
// write; the raise can be retried when space returns. It is
// evq.ErrStorageFull.
var ErrStorageFull = evq.ErrStorageFull

// ErrCorrupt means the store failed a consistency check.
var ErrCorrupt = errors.New("store is damaged")
