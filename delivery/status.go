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
	// Members are a virtual group's members with their breaker states and
	// counts. A PARALLEL group's members each have their own cursor; the
	// group's Cursor and Delivered are the lowest of theirs (success policy
	// all) or the highest (any), its other counts their sum.
	Members []evq.MemberState
	// Warnings are set by Subscribe: what about the socket may lose events.
	Warnings []string
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
	if e.lanes[sub.ID] != nil {
		e.laneStatus(sub, &st)
		st.Lag, _ = e.log.Lag(sub.Event, st.Cursor)
		e.finalState(sub, &st, e.workers[e.lanes[sub.ID][0].ID])
		return st
	}
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
	e.finalState(sub, &st, w)
	return st
}

// finalState overrides st.State when sub is not running: it expired, or its
// worker w is gone. e.mu is held.
func (e *Engine) finalState(sub *evq.Subscription, st *Status, w *worker) {
	switch {
	case sub.Expired(e.opts.NowFunc()):
		st.State = StateExpired
	case w == nil || e.closed:
		st.State = StateStopped
	}
}
