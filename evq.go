package evq

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// MaxNameLen is the longest event name accepted.
const MaxNameLen = 255

// ValidateName reports whether name is a valid event name: 1 to 255 bytes of
// [A-Za-z0-9_.-].
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty event name", ErrInvalidEvent)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: event name is %d bytes, the limit is %d", ErrInvalidEvent, len(name), MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return fmt.Errorf("%w: event name %q may hold only letters, digits, '_', '.' and '-'", ErrInvalidEvent, name)
		}
	}
	return nil
}

// Kind is the type of a Value.
type Kind uint8

// The kinds of value. OpenSIPS itself only knows strings and integers; the
// HTTP API may also raise floats, booleans and nulls, which are kept exactly as
// they were written.
const (
	KindString Kind = iota
	KindInt
	KindFloat // Str holds the number exactly as the raiser wrote it
	KindBool
	KindNull
)

// Value is one parameter value.
type Value struct {
	Kind Kind
	Str  string // KindString: the string; KindFloat: the JSON number text
	Int  int64  // KindInt: the integer; KindBool: 0 or 1
}

// String returns a Value holding s.
func String(s string) Value { return Value{Kind: KindString, Str: s} }

// Int returns a Value holding n.
func Int(n int64) Value { return Value{Kind: KindInt, Int: n} }

// Bool returns a Value holding b.
func Bool(b bool) Value {
	v := Value{Kind: KindBool}
	if b {
		v.Int = 1
	}
	return v
}

// Null returns the null Value.
func Null() Value { return Value{Kind: KindNull} }

// Float returns a Value holding the JSON number text num exactly. It fails if
// num is not a valid JSON number.
func Float(num string) (Value, error) {
	if !validJSONNumber(num) {
		return Value{}, fmt.Errorf("%w: %q is not a number", ErrInvalidEvent, num)
	}
	return Value{Kind: KindFloat, Str: num}, nil
}

// Text returns the value as plain text, as flatstore and the CLI print it.
func (v Value) Text() string {
	switch v.Kind {
	case KindString, KindFloat:
		return v.Str
	case KindInt:
		return strconv.FormatInt(v.Int, 10)
	case KindBool:
		if v.Int != 0 {
			return "true"
		}
		return "false"
	default:
		return "null"
	}
}

// Param is one event parameter. Name is empty for unnamed parameters.
type Param struct {
	Name  string
	Value Value
}

// Event is one raised event. Seq and Time are assigned by the log on append;
// Seq is the event's identity, strictly increasing and never reused.
type Event struct {
	Seq  uint64
	Time time.Time
	Name string
	// Named tells whether Params are name/value pairs (true) or a list of
	// values (false). An event with no params has Named false.
	Named  bool
	Params []Param
}

// Validate checks the event's name and that its params are consistently
// named or unnamed.
func (e *Event) Validate() error {
	if err := ValidateName(e.Name); err != nil {
		return err
	}
	for i, p := range e.Params {
		if e.Named && p.Name == "" {
			return fmt.Errorf("%w: param %d of %s has no name", ErrInvalidEvent, i, e.Name)
		}
		if !e.Named && p.Name != "" {
			return fmt.Errorf("%w: param %q of %s is named in an unnamed list", ErrInvalidEvent, p.Name, e.Name)
		}
	}
	return nil
}

// Transport delivers events to one destination. Delivery calls Send from a
// single goroutine per subscription, with events in seq order.
type Transport interface {
	// Send delivers events in order. It returns how many leading events were
	// delivered (acknowledged, in reliable mode) and, when n < len(events),
	// the error that stopped delivery of events[n]. A permanent error is
	// marked with Permanent; anything else is retried. The events are
	// the caller's to reuse once Send returns: Send must not keep them.
	Send(ctx context.Context, events []*Event) (n int, err error)
	// Close releases the transport's connections. It is safe to call twice.
	Close() error
}

// validJSONNumber reports whether s is a number in JSON's grammar.
func validJSONNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	if i >= len(s) {
		return false
	}
	switch {
	case s[i] == '0':
		i++
	case s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		j := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == j {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == j {
			return false
		}
	}
	return i == len(s)
}

// DeadLetter is an event parked for one subscription after its delivery
// failed for good; it can be redriven or purged.
type DeadLetter struct {
	Event    *Event
	Attempts int
	Error    string
	Time     time.Time // when it was parked
	Member   string    // virtual:PARALLEL: the member socket that failed it
}

// Raiser stores events durably: what an ingest listener hands the events
// it receives to. delivery.Engine is one.
type Raiser interface {
	// RaiseBatch stores events in one commit and returns after the fsync,
	// with their Seq set.
	RaiseBatch(ctx context.Context, events []*Event) error
}

// MemberState is one member of a virtual group: its circuit breaker's state
// and what it delivered since evq started.
type MemberState struct {
	Socket    string
	State     string // closed, half-open or open
	Delivered uint64 // events it acknowledged
	Failures  uint64 // sends that failed (a send refused by an open breaker is not one)
	// PARALLEL members progress on their own: each has a cursor, a lag and
	// dead letters.
	Cursor      uint64
	Lag         uint64
	DeadLetters int
}

// MemberReporter is a Transport made of members (a virtual group) that
// reports their breaker states. Its method must be safe to call from any
// goroutine.
type MemberReporter interface {
	MemberStates() []MemberState
}
