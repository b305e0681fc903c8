package evq

import "time"

// Default subscription settings, as OpenSIPS has them.
const (
	DefaultTimeout         = time.Second      // event_stream timeout
	DefaultMIExpire        = 3600             // seconds; MI event_subscribe default
	DefaultFailoverTimeout = 30 * time.Second // event_virtual failover_timeout
	DefaultBreakerFailures = 1                // consecutive failures that open a member's breaker, as OpenSIPS
	DefaultMaxInflight     = 1
	DefaultDelimiter       = ","
)

// Options are the per-subscription delivery settings. The zero value of each
// field means the default given in its comment.
type Options struct {
	Reliable       bool          // wait for an acknowledgement (OpenSIPS reliable_mode/sync_mode)
	Timeout        time.Duration // reply timeout in reliable mode; 0 means DefaultTimeout
	EventParam     string        // add the event name as this param (OpenSIPS event_param)
	UseStructParam bool          // xmlrpc: send params as structs
	MaxInflight    int           // pipelined requests in reliable mode; 0 means 1
	MaxAttempts    int           // attempts before an event is dead-lettered; 0 means unlimited
	MaxAge         time.Duration // retry an event at most this long; 0 means unlimited

	Delimiter         string // flatstore; "" means ","
	SuppressEventName bool   // flatstore: omit the leading NAME,
	EscapeDelimiter   string // flatstore: replaces the delimiter inside values; "" means a space

	FailoverTimeout time.Duration // virtual: breaker open time; 0 means DefaultFailoverTimeout
	BreakerFailures int           // virtual: consecutive failures that open a member's breaker; 0 means 1
	ParallelSuccess string        // virtual PARALLEL: SuccessAll ("" means it) or SuccessAny
}

// PARALLEL success policies: when an event counts as delivered by the group.
const (
	SuccessAll = "all" // every member acknowledged it
	SuccessAny = "any" // at least one member acknowledged it
)

// Subscription is an (event, socket) pair with its options. Subscribing the
// same pair again refreshes it.
type Subscription struct {
	ID      uint64
	Event   string
	Socket  string
	Options Options
	// Expire is the lifetime in seconds from Refreshed; 0 means never.
	Expire    int
	Created   time.Time
	Refreshed time.Time
	// Parent is set on the member lanes of a virtual:PARALLEL subscription:
	// each member of the group is stored as a subscription of its own, with
	// its own cursor and dead letters, under the group's ID.
	Parent uint64 `json:",omitempty"`
}

// ExpiresAt returns when the subscription expires, or the zero time if never.
func (s *Subscription) ExpiresAt() time.Time {
	if s.Expire <= 0 {
		return time.Time{}
	}
	return s.Refreshed.Add(time.Duration(s.Expire) * time.Second)
}

// Expired reports whether the subscription has expired at now.
func (s *Subscription) Expired(now time.Time) bool {
	at := s.ExpiresAt()
	return !at.IsZero() && !now.Before(at)
}

// TimeoutOrDefault returns the reply timeout, applying the default.
func (o Options) TimeoutOrDefault() time.Duration {
	if o.Timeout <= 0 {
		return DefaultTimeout
	}
	return o.Timeout
}

// BreakerFailuresOrDefault returns how many consecutive failures open a
// virtual group member's breaker, applying the default.
func (o Options) BreakerFailuresOrDefault() int {
	if o.BreakerFailures <= 0 {
		return DefaultBreakerFailures
	}
	return o.BreakerFailures
}

// Inflight returns the pipelining window, applying the default.
func (o Options) Inflight() int {
	if o.MaxInflight <= 0 {
		return DefaultMaxInflight
	}
	return o.MaxInflight
}
