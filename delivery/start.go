package delivery

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Start is where a new subscription begins reading.
type Start struct {
	Kind  StartKind
	Seq   uint64    // StartSeq: the first seq to deliver
	Since time.Time // StartTime: deliver events raised at or after this
}

// StartKind says which field of a Start applies.
type StartKind int

// The start kinds. StartDefault is "now" for a new subscription and "where it
// left off" for one subscribed again.
const (
	StartDefault StartKind = iota
	StartNow
	StartEarliest
	StartSeq
	StartTime
)

// ParseStart parses "now", "earliest", a seq number, or an RFC 3339 time.
// The empty string is StartDefault.
func ParseStart(s string) (Start, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "":
		return Start{}, nil
	case "now":
		return Start{Kind: StartNow}, nil
	case "earliest":
		return Start{Kind: StartEarliest}, nil
	}
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		if n == 0 {
			n = 1
		}
		return Start{Kind: StartSeq, Seq: n}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return Start{Kind: StartTime, Since: t}, nil
	}
	return Start{}, fmt.Errorf("%w %q: want now, earliest, a seq number or an RFC 3339 time such as 2026-11-23T10:00:00Z", ErrBadStart, s)
}

// cursorFor returns the cursor that makes a subscription to name begin at st.
func (e *Engine) cursorFor(name string, st Start) (uint64, error) {
	switch st.Kind {
	case StartEarliest:
		return 0, nil
	case StartSeq:
		return st.Seq - 1, nil
	case StartTime:
		return e.log.SeqBefore(name, st.Since)
	default:
		return e.log.LastSeq(), nil
	}
}
