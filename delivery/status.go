package delivery

import (
	"time"

	"github.com/evq/evq"
)

// Subscription states.
const (
	StateActive   = "active"   // delivering, or waiting for events
	StateRetrying = "retrying" // the last attempt failed; waiting to retry
	StateExpired  = "expired"  // expired; the cursor is kept
	StateStopped  = "stopped"  // not running (engine closing)
)

// Status is a subscription with its delivery progress.
type Status struct {
	evq.Subscription
	Cursor      uint64
	Lag         uint64 // events of the subscription's name above the cursor
	State       string
	DeadLetters int
	Delivered   uint64 // since evq started
	Failures    uint64
	Retries     uint64
	Parked      uint64 // events sent to the dead letters since evq started
	LastError   string
	LastErrorAt time.Time
	ExpiresAt   time.Time
	// Members are the breaker states of a virtual group's members, while
	// the subscription runs.
	Members []evq.MemberState
}

func (e *Engine) countersLocked(id uint64) *counters {
	if e.counters == nil {
		e.counters = make(map[uint64]*counters)
	}
	c := e.counters[id]
	if c == nil {
		c = &counters{}
		e.counters[id] = c
	}
	return c
}

// statusLocked builds sub's status. e.mu is held.
func (e *Engine) statusLocked(sub *evq.Subscription) Status {
	st := Status{Subscription: *sub, ExpiresAt: sub.ExpiresAt()}
	c := e.countersLocked(sub.ID)
	w := e.workers[sub.ID]
	if w != nil {
		st.Cursor = w.cursor.Load()
		if mr, ok := w.tr.(evq.MemberReporter); ok {
			st.Members = mr.MemberStates()
		}
	} else {
		st.Cursor, _ = e.log.Cursor(sub.ID)
	}
	st.Lag, _ = e.log.Lag(sub.Event, st.Cursor)
	st.DeadLetters, _ = e.log.DeadLetterCount(sub.ID)
	st.Delivered = c.delivered.Load()
	st.Failures = c.failures.Load()
	st.Retries = c.retries.Load()
	st.Parked = c.parked.Load()
	c.mu.Lock()
	st.State, st.LastError, st.LastErrorAt = c.state, c.lastErr, c.lastErrAt
	c.mu.Unlock()
	switch {
	case sub.Expired(e.opts.NowFunc()):
		st.State = StateExpired
	case w == nil || e.closed:
		st.State = StateStopped
	}
	return st
}
