package delivery

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/evq/evq"
)

// A virtual:PARALLEL subscription is delivered as one lane per member. Each
// lane is a subscription of its own in the log, with Parent set to the
// group's ID: its own cursor, worker, retries, breaker and dead letters. So a
// dead member neither blocks the others nor misses anything when it comes
// back; it catches up from its cursor.
//
// The group's own cursor is what its success policy makes of the lanes':
// the lowest (all: every member has the event) or the highest (any: some
// member has it). It is stored, so retention and `evq subscribers` see it.

// parallelMembers returns the member sockets of sub if it is a PARALLEL
// group, and nil otherwise.
func parallelMembers(sub *evq.Subscription) []string {
	sock, err := evq.ParseSocket(sub.Socket)
	if err != nil || sock.Scheme != "virtual" || sock.Policy != evq.PolicyParallel {
		return nil
	}
	out := make([]string, len(sock.Members))
	for i, m := range sock.Members {
		out[i] = m.String()
	}
	return out
}

// laneSubscription is the lane of member socket in group parent.
func laneSubscription(parent *evq.Subscription, socket string) evq.Subscription {
	return evq.Subscription{ID: 0, Event: parent.Event, Socket: socket, Options: parent.Options,
		Expire: parent.Expire, Created: parent.Created, Refreshed: parent.Refreshed, Parent: parent.ID}
}

// group ties a PARALLEL subscription's running lanes together.
type group struct {
	id      uint64
	any     bool             // success policy any
	cursors []*atomic.Uint64 // each lane worker's cursor

	mu     sync.Mutex // serializes storing the group's cursor
	stored uint64
}

// cursor is the group's cursor under its success policy.
func (g *group) cursor() uint64 {
	c := g.cursors[0].Load()
	for _, lc := range g.cursors[1:] {
		v := lc.Load()
		if g.any == (v > c) {
			c = v
		}
	}
	return c
}

// advanced stores the group's cursor after a lane moved.
func (g *group) advanced(log Log) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c := g.cursor(); c != g.stored {
		g.stored = c
		log.SetCursor(g.id, c)
	}
}

// deliveredElsewhere reports whether a lane other than lane has delivered
// seq (or dead-lettered it, which moves a cursor past it too).
func (g *group) deliveredElsewhere(lane int, seq uint64) bool {
	for i, lc := range g.cursors {
		if i != lane && lc.Load() >= seq {
			return true
		}
	}
	return false
}

// ensureLanesLocked makes the stored lanes of PARALLEL subscription sub
// match its members: it creates the missing ones at the group's cursor
// (a crash between storing a group and its lanes leaves some missing) and
// updates the rest to sub's options and expiry; setCursor moves every lane to
// cursor. e.mu is held.
func (e *Engine) ensureLanesLocked(sub *evq.Subscription, members []string, cursor uint64, setCursor bool) error {
	have := make(map[string]*evq.Subscription)
	for _, l := range e.lanes[sub.ID] {
		have[l.Socket] = l
	}
	if !setCursor {
		c, err := e.log.Cursor(sub.ID)
		if err != nil {
			return err
		}
		cursor = c
	}
	lanes := make([]*evq.Subscription, 0, len(members))
	for _, m := range members {
		lane := laneSubscription(sub, m)
		set := true
		if old := have[m]; old != nil {
			lane.ID, set = old.ID, setCursor
		}
		if err := e.log.PutSubscription(&lane, cursor, set); err != nil {
			return err
		}
		lanes = append(lanes, &lane)
	}
	e.lanes[sub.ID] = lanes
	return nil
}

// startLanes starts a worker for every lane of group sub. e.mu is held.
func (e *Engine) startLanes(sub *evq.Subscription) error {
	lanes := e.lanes[sub.ID]
	if len(lanes) == 0 {
		return fmt.Errorf("subscription %d: a PARALLEL group without member lanes", sub.ID)
	}
	g := &group{id: sub.ID, any: sub.Options.ParallelSuccess == evq.SuccessAny}
	workers := make([]*worker, 0, len(lanes))
	for i, lane := range lanes {
		cursor, err := e.log.Cursor(lane.ID)
		if err == nil {
			var tr evq.Transport
			if tr, err = e.opts.NewTransportFunc(*lane); err == nil {
				w := newWorker(e, *lane, tr, cursor)
				w.group, w.lane = g, i
				g.cursors = append(g.cursors, &w.cursor)
				workers = append(workers, w)
				continue
			}
		}
		for _, w := range workers {
			w.tr.Close()
		}
		return fmt.Errorf("member %s: %w", lane.Socket, err)
	}
	g.stored, _ = e.log.Cursor(sub.ID)
	for _, w := range workers {
		e.workers[w.sub.ID] = w
		e.wg.Add(1)
		go w.run()
	}
	return nil
}

// laneStatus adds the lanes of group sub to its status st: the group's
// cursor by its policy, the members with their own progress, and the sum of
// their counts. e.mu is held.
func (e *Engine) laneStatus(sub *evq.Subscription, st *Status) {
	lanes := e.lanes[sub.ID]
	anyOK := sub.Options.ParallelSuccess == evq.SuccessAny
	st.Members = make([]evq.MemberState, 0, len(lanes))
	var lastErrLane string
	for i, lane := range lanes {
		ls := e.statusLocked(lane)
		m := evq.MemberState{Socket: lane.Socket, State: "closed"}
		if len(ls.Members) == 1 {
			m = ls.Members[0]
		}
		m.Cursor, m.Lag, m.DeadLetters = ls.Cursor, ls.Lag, ls.DeadLetters
		st.Members = append(st.Members, m)
		if i == 0 || anyOK == (ls.Cursor > st.Cursor) {
			st.Cursor = ls.Cursor
		}
		if i == 0 || anyOK == (ls.Delivered > st.Delivered) {
			st.Delivered = ls.Delivered
		}
		st.DeadLetters += ls.DeadLetters
		st.Failures += ls.Failures
		st.Retries += ls.Retries
		st.Parked += ls.Parked
		if ls.State == StateRetrying {
			st.State = StateRetrying
		} else if st.State == "" {
			st.State = ls.State
		}
		if ls.LastErrorAt.After(st.LastErrorAt) {
			st.LastError, st.LastErrorAt, lastErrLane = ls.LastError, ls.LastErrorAt, lane.Socket
		}
	}
	if lastErrLane != "" {
		st.LastError = lastErrLane + ": " + st.LastError
	}
}

// laneDeadLetters lists up to max dead letters of group id's lanes after
// seq, in seq order, each naming its member.
func (e *Engine) laneDeadLetters(lanes []*evq.Subscription, after uint64, max int) ([]*evq.DeadLetter, error) {
	var out []*evq.DeadLetter
	for _, lane := range lanes {
		ds, err := e.log.DeadLetters(lane.ID, after, max)
		if err != nil {
			return nil, err
		}
		for _, d := range ds {
			d.Member = lane.Socket
		}
		out = append(out, ds...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Event.Seq < out[j].Event.Seq })
	if max > 0 && len(out) > max {
		out = out[:max]
	}
	return out, nil
}
