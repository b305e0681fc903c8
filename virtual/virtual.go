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
//   - ROUND-ROBIN rotates among the members, one batch each (one event each
//     for a reliable subscription with max_inflight 1); a batch a member
//     fails goes on to the next.
//
// PARALLEL, which needs a cursor per member inside the group, is not built
// yet and is refused at subscribe time.
package virtual

import (
	"context"
	"errors"
	"fmt"

	"github.com/sony/gobreaker/v2"

	"github.com/evq/evq"
)

var (
	_ evq.Transport      = (*Group)(nil)
	_ evq.MemberReporter = (*Group)(nil)
)

// ErrUnsupportedPolicy means the group's policy cannot be delivered yet.
var ErrUnsupportedPolicy = errors.New("virtual policy not available in this build")

// Member is one socket of a group with its breaker.
type Member struct {
	Socket string
	tr     evq.Transport
	cb     *gobreaker.CircuitBreaker[int]
}

// State returns the member's breaker state: closed, half-open or open.
func (m *Member) State() string { return m.cb.State().String() }

// Group delivers through its members by policy.
type Group struct {
	policy  string
	members []*Member
	next    int // ROUND-ROBIN: the member to start from
}

// New builds the group for sock (scheme virtual); newMember builds each
// member's transport. It does not connect.
func New(sock evq.Socket, opts evq.Options, newMember func(evq.Socket) (evq.Transport, error)) (*Group, error) {
	if sock.Scheme != "virtual" {
		return nil, fmt.Errorf("virtual transport: %w: scheme %q", evq.ErrInvalidSocket, sock.Scheme)
	}
	if sock.Policy == evq.PolicyParallel {
		return nil, fmt.Errorf("socket %q: %w: PARALLEL (FAILOVER and ROUND-ROBIN work)", sock, ErrUnsupportedPolicy)
	}
	timeout := opts.FailoverTimeout
	if timeout <= 0 {
		timeout = evq.DefaultFailoverTimeout
	}
	g := &Group{policy: sock.Policy}
	for _, ms := range sock.Members {
		tr, err := newMember(ms)
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("member %s: %w", ms, err)
		}
		g.members = append(g.members, &Member{Socket: ms.String(), tr: tr, cb: gobreaker.NewCircuitBreaker[int](gobreaker.Settings{
			Name:        ms.String(),
			MaxRequests: 1, // one probe when half-open
			Timeout:     timeout,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 1 }, // as OpenSIPS: one failure
			IsExcluded:  func(err error) bool { return errors.Is(err, context.Canceled) },
		})})
	}
	return g, nil
}

// Members returns the group's members.
func (g *Group) Members() []*Member { return g.members }

// MemberStates reports every member's breaker state, for status and metrics.
func (g *Group) MemberStates() []evq.MemberState {
	out := make([]evq.MemberState, len(g.members))
	for i, m := range g.members {
		out[i] = evq.MemberState{Socket: m.Socket, State: m.State()}
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
		n, err := m.cb.Execute(func() (int, error) { return m.tr.Send(ctx, events[done:]) })
		done += n
		if err != nil {
			if !errors.Is(err, gobreaker.ErrOpenState) && !errors.Is(err, gobreaker.ErrTooManyRequests) {
				errs = append(errs, fmt.Errorf("%s: %w", m.Socket, err))
			}
			continue
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
