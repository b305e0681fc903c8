// Package virtual is OpenSIPS's event_virtual: one subscription whose
// transport is a group of member sockets, virtual:POLICY sock1 sock2 …
//
// Every member has a circuit breaker (sony/gobreaker): a member that fails
// is skipped until failover_timeout (30 s by default, as OpenSIPS) has
// passed, then one probe event is let through. Unlike OpenSIPS, a group
// never drops an event: when no member takes it, the group returns an
// error and the delivery worker retries it with backoff.
//
//   - FAILOVER sends each batch to the first member whose breaker admits
//     it; what a member fails to deliver goes on to the next member at once.
//
//   - ROUND-ROBIN rotates among the members, one batch each (one event each
//     for a reliable subscription with max_inflight 1); a batch a member
//     fails goes on to the next.
//
//   - PARALLEL sends every event to every member. It is not a Group: the
//     delivery engine runs one lane per member, each a Member with its own
//     cursor, retries and dead letters, so that a dead member neither
//     blocks the others nor misses events when it returns.
package virtual

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/sony/gobreaker/v2"

	"github.com/evq/evq"
)

var (
	_ evq.Transport      = (*Group)(nil)
	_ evq.MemberReporter = (*Group)(nil)
	_ evq.Transport      = (*Member)(nil)
	_ evq.MemberReporter = (*Member)(nil)
)

// ErrParallel means a PARALLEL group was asked for as one transport. The
// delivery engine runs PARALLEL itself, as one lane per member, each with
// its own cursor, so that a dead member holds back nobody.
var ErrParallel = errors.New("a PARALLEL group is delivered by the engine, one lane per member, not as one transport")

// Member is one socket of a group behind its circuit breaker.
type Member struct {
	Socket string
	tr     evq.Transport
	cb     *gobreaker.CircuitBreaker[int]

	delivered, failures atomic.Uint64
}

// NewMember puts tr, the transport of sock, behind a circuit breaker that
// opens after opts.BreakerFailures consecutive failed sends, stays open for
// opts.FailoverTimeout, then lets one probe send through.
func NewMember(sock evq.Socket, opts evq.Options, tr evq.Transport) *Member {
	timeout := opts.FailoverTimeout
	if timeout <= 0 {
		timeout = evq.DefaultFailoverTimeout
	}
	trip := uint32(opts.BreakerFailuresOrDefault())
	return &Member{Socket: sock.String(), tr: tr, cb: gobreaker.NewCircuitBreaker[int](gobreaker.Settings{
		Name:        sock.String(),
		MaxRequests: 1, // one probe when half-open
		Timeout:     timeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= trip },
		IsExcluded:  func(err error) bool { return errors.Is(err, context.Canceled) },
		OnStateChange: func(name string, from, to gobreaker.State) {
			slog.Info("virtual group member breaker", "member", name, "from", from.String(), "to", to.String())
		},
	})}
}

// State returns the member's breaker state: closed, half-open or open.
func (m *Member) State() string { return m.cb.State().String() }

// Send sends events through the breaker. An open breaker refuses at once
// with an error that wraps gobreaker.ErrOpenState (or ErrTooManyRequests
// while its probe is out).
func (m *Member) Send(ctx context.Context, events []*evq.Event) (int, error) {
	n, err := m.cb.Execute(func() (int, error) {
		n, err := m.tr.Send(ctx, events)
		if err != nil && n > 0 {
			// Some went through: the member is alive. Count the success
			// now; the caller sends the rest again, and that try counts.
			m.delivered.Add(uint64(n))
			return n, nil
		}
		return n, err
	})
	if refused(err) {
		return 0, fmt.Errorf("not tried: %w", err)
	}
	if err != nil {
		m.failures.Add(1)
		return n, err
	}
	if n == len(events) {
		m.delivered.Add(uint64(n))
	}
	return n, nil
}

// refused reports whether err is an open breaker refusing a send.
func refused(err error) bool {
	return errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests)
}

// MemberStates reports the member alone, for a PARALLEL lane's status.
func (m *Member) MemberStates() []evq.MemberState {
	return []evq.MemberState{m.memberState()}
}

func (m *Member) memberState() evq.MemberState {
	return evq.MemberState{Socket: m.Socket, State: m.State(), Delivered: m.delivered.Load(), Failures: m.failures.Load()}
}

// Close closes the member's transport.
func (m *Member) Close() error { return m.tr.Close() }

// Group delivers through its members by policy.
type Group struct {
	policy  string
	members []*Member
	next    int // ROUND-ROBIN: the member to start from
}

// New builds the FAILOVER or ROUND-ROBIN group for sock; newMember builds
// each member's transport. It does not connect.
func New(sock evq.Socket, opts evq.Options, newMember func(evq.Socket) (evq.Transport, error)) (*Group, error) {
	if sock.Scheme != "virtual" {
		return nil, fmt.Errorf("virtual transport: %w: scheme %q", evq.ErrInvalidSocket, sock.Scheme)
	}
	if sock.Policy == evq.PolicyParallel {
		return nil, fmt.Errorf("socket %q: %w", sock, ErrParallel)
	}
	g := &Group{policy: sock.Policy}
	for _, ms := range sock.Members {
		tr, err := newMember(ms)
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("member %s: %w", ms, err)
		}
		g.members = append(g.members, NewMember(ms, opts, tr))
	}
	return g, nil
}

// Members returns the group's members.
func (g *Group) Members() []*Member { return g.members }

// MemberStates reports every member's breaker state, for status and metrics.
func (g *Group) MemberStates() []evq.MemberState {
	out := make([]evq.MemberState, len(g.members))
	for i, m := range g.members {
		out[i] = m.memberState()
	}
	return out
}

// Send delivers events through the members by policy. It returns how many
// leading events some member delivered, and an error when no member would
// take the rest.
func (g *Group) Send(ctx context.Context, events []*evq.Event) (int, error) {
	start := 0
	if g.policy == evq.PolicyRoundRobin {
		start = g.next
		g.next = (g.next + 1) % len(g.members)
	}
	done := 0
	var errs []error
	for k := 0; k < len(g.members) && done < len(events); k++ {
		m := g.members[(start+k)%len(g.members)]
		n, err := m.Send(ctx, events[done:])
		done += n
		if err != nil && !refused(err) {
			errs = append(errs, fmt.Errorf("%s: %w", m.Socket, err))
		}
	}
	if done == len(events) {
		return done, nil
	}
	if len(errs) == 0 {
		return done, fmt.Errorf("no member of the %s group is available: every breaker is open", g.policy)
	}
	return done, fmt.Errorf("no member of the %s group took the event: %w", g.policy, errors.Join(errs...))
}

// Close closes every member's transport.
func (g *Group) Close() error {
	var errs []error
	for _, m := range g.members {
		errs = append(errs, m.tr.Close())
	}
	return errors.Join(errs...)
}
