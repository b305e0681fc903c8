package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/delivery"
)

// subscribeBody is the POST /v1/subscriptions body. Names follow OpenSIPS's
// modparams. An option left out takes the server's default (Options.Defaults,
// from the configuration file), so option fields are pointers.
type subscribeBody struct {
	Event             string  `json:"event"`
	Socket            string  `json:"socket"`
	Expire            int     `json:"expire"`
	Start             string  `json:"start"`
	Reliable          *bool   `json:"reliable"`
	TimeoutMS         *int    `json:"timeout_ms"`
	EventParam        *string `json:"event_param"`
	UseStructParam    *bool   `json:"use_struct_param"`
	MaxInflight       *int    `json:"max_inflight"`
	MaxAttempts       *int    `json:"max_attempts"`
	MaxAge            *int    `json:"max_age"`
	Delimiter         *string `json:"delimiter"`
	SuppressEventName *bool   `json:"suppress_event_name"`
	EscapeDelimiter   *string `json:"escape_delimiter"`
	FailoverTimeout   *int    `json:"failover_timeout"`
	BreakerFailures   *int    `json:"breaker_failures"`
	ParallelSuccess   *string `json:"parallel_success"`
}

func (b *subscribeBody) request(defaults evq.Options) (delivery.SubscribeRequest, error) {
	req := delivery.SubscribeRequest{Event: b.Event, Socket: b.Socket, Expire: b.Expire, Options: defaults}
	switch {
	case b.Event == "":
		return req, badRequest(`missing field "event"`)
	case b.Socket == "":
		return req, badRequest(`missing field "socket" (such as "tcp:127.0.0.1:9000"); accepted sockets: %s`, evq.SocketSyntax())
	case b.Expire < 0:
		return req, badRequest(`"expire" cannot be negative: give 0 (never) or a number of seconds`)
	}
	st, err := delivery.ParseStart(b.Start)
	if err != nil {
		return req, fmt.Errorf("field \"start\": %w", err)
	}
	req.Start = st
	o := &req.Options
	for _, f := range []struct {
		name string
		v    *int
		set  func(int)
	}{
		{"timeout_ms", b.TimeoutMS, func(n int) { o.Timeout = time.Duration(n) * time.Millisecond }},
		{"max_inflight", b.MaxInflight, func(n int) { o.MaxInflight = n }},
		{"max_attempts", b.MaxAttempts, func(n int) { o.MaxAttempts = n }},
		{"max_age", b.MaxAge, func(n int) { o.MaxAge = time.Duration(n) * time.Second }},
		{"failover_timeout", b.FailoverTimeout, func(n int) { o.FailoverTimeout = time.Duration(n) * time.Second }},
		{"breaker_failures", b.BreakerFailures, func(n int) { o.BreakerFailures = n }},
	} {
		if f.v == nil {
			continue
		}
		if *f.v < 0 {
			return req, badRequest("%q cannot be negative", f.name)
		}
		f.set(*f.v)
	}
	for _, f := range []struct {
		v   *bool
		dst *bool
	}{{b.Reliable, &o.Reliable}, {b.UseStructParam, &o.UseStructParam}, {b.SuppressEventName, &o.SuppressEventName}} {
		if f.v != nil {
			*f.dst = *f.v
		}
	}
	for _, f := range []struct {
		v   *string
		dst *string
	}{{b.EventParam, &o.EventParam}, {b.Delimiter, &o.Delimiter}, {b.EscapeDelimiter, &o.EscapeDelimiter}, {b.ParallelSuccess, &o.ParallelSuccess}} {
		if f.v != nil {
			*f.dst = *f.v
		}
	}
	return req, nil
}

// subscriptionJSON is a subscription as the API shows it.
type subscriptionJSON struct {
	ID                uint64     `json:"id"`
	Event             string     `json:"event"`
	Socket            string     `json:"socket"`
	Reliable          bool       `json:"reliable"`
	TimeoutMS         int64      `json:"timeout_ms"`
	Expire            int        `json:"expire"`
	ExpiresAt         *time.Time `json:"expires_at,omitempty"`
	EventParam        string     `json:"event_param,omitempty"`
	UseStructParam    bool       `json:"use_struct_param,omitempty"`
	MaxInflight       int        `json:"max_inflight"`
	MaxAttempts       int        `json:"max_attempts"`
	MaxAge            int64      `json:"max_age"`
	Delimiter         string     `json:"delimiter,omitempty"`
	SuppressEventName bool       `json:"suppress_event_name,omitempty"`
	EscapeDelimiter   string     `json:"escape_delimiter,omitempty"`
	FailoverTimeout   int64      `json:"failover_timeout,omitempty"`
	BreakerFailures   int        `json:"breaker_failures,omitempty"`
	ParallelSuccess   string     `json:"parallel_success,omitempty"`
	Created           time.Time  `json:"created"`
	Refreshed         time.Time  `json:"refreshed"`
	State             string     `json:"state"`
	Cursor            uint64     `json:"cursor"`
	Lag               uint64     `json:"lag"`
	DeadLetters       int        `json:"dead_letters"`
	Delivered         uint64     `json:"delivered"`
	Failures          uint64     `json:"failures"`
	Retries           uint64     `json:"retries"`
	Parked            uint64     `json:"parked"`
	LastError         string     `json:"last_error,omitempty"`
	LastErrorAt       *time.Time `json:"last_error_at,omitempty"`
	Members           []member   `json:"members,omitempty"`
	Warnings          []string   `json:"warnings,omitempty"`
}

// member is a virtual group member with its circuit breaker's state and
// counts; a PARALLEL group's members also have their own progress.
type member struct {
	Socket      string  `json:"socket"`
	Breaker     string  `json:"breaker"`
	Delivered   uint64  `json:"delivered"`
	Failures    uint64  `json:"failures"`
	Cursor      *uint64 `json:"cursor,omitempty"`
	Lag         *uint64 `json:"lag,omitempty"`
	DeadLetters *int    `json:"dead_letters,omitempty"`
}

func toJSON(st delivery.Status) subscriptionJSON {
	o := st.Options
	j := subscriptionJSON{
		ID: st.ID, Event: st.Event, Socket: st.Socket, Reliable: o.Reliable,
		TimeoutMS: o.TimeoutOrDefault().Milliseconds(), Expire: st.Expire,
		EventParam: o.EventParam, UseStructParam: o.UseStructParam, MaxInflight: o.Inflight(),
		MaxAttempts: o.MaxAttempts, MaxAge: int64(o.MaxAge / time.Second), Delimiter: o.Delimiter,
		SuppressEventName: o.SuppressEventName, EscapeDelimiter: o.EscapeDelimiter,
		FailoverTimeout: int64(o.FailoverTimeout / time.Second), BreakerFailures: o.BreakerFailures,
		ParallelSuccess: o.ParallelSuccess, Created: st.Created, Refreshed: st.Refreshed,
		State: st.State, Cursor: st.Cursor, Lag: st.Lag, DeadLetters: st.DeadLetters, Delivered: st.Delivered,
		Failures: st.Failures, Retries: st.Retries, Parked: st.Parked, LastError: st.LastError,
	}
	if !st.ExpiresAt.IsZero() {
		j.ExpiresAt = &st.ExpiresAt
	}
	if !st.LastErrorAt.IsZero() {
		j.LastErrorAt = &st.LastErrorAt
	}
	sock, _ := evq.ParseSocket(st.Socket)
	for _, m := range st.Members {
		jm := member{Socket: m.Socket, Breaker: m.State, Delivered: m.Delivered, Failures: m.Failures}
		if sock.Policy == evq.PolicyParallel {
			jm.Cursor, jm.Lag, jm.DeadLetters = &m.Cursor, &m.Lag, &m.DeadLetters
		}
		j.Members = append(j.Members, jm)
	}
	j.Warnings = st.Warnings
	return j
}

// decodeStrict decodes one JSON object into v, refusing unknown fields with
// an error that names them.
func decodeStrict(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		var maxErr *http.MaxBytesError
		switch {
		case errors.As(err, &maxErr):
			return err
		case errors.As(err, &typeErr):
			return badRequest("field %q must be a %s", typeErr.Field, typeErr.Type)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return badRequest("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
		case errors.Is(err, io.EOF):
			return badRequest("the body is empty: want a JSON object")
		}
		return badRequest("the body is not valid JSON: %s", err.Error())
	}
	return nil
}

func (s *Server) subscribe(w http.ResponseWriter, r *http.Request) {
	var body subscribeBody
	if err := decodeStrict(r.Body, &body); err != nil {
		s.fail(w, r, err)
		return
	}
	req, err := body.request(s.opts.Defaults)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	st, err := s.engine.Subscribe(r.Context(), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, toJSON(st))
}

func (s *Server) listSubscriptions(w http.ResponseWriter, r *http.Request) {
	all := s.engine.Subscriptions()
	out := make([]subscriptionJSON, 0, len(all))
	event := r.URL.Query().Get("event")
	for _, st := range all {
		if event == "" || st.Event == event {
			out = append(out, toJSON(st))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"subscriptions": out})
}

func (s *Server) getSubscription(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err == nil {
		var st delivery.Status
		if st, err = s.engine.Subscription(id); err == nil {
			writeJSON(w, http.StatusOK, toJSON(st))
			return
		}
	}
	s.fail(w, r, err)
}

func (s *Server) unsubscribe(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err == nil {
		if err = s.engine.Unsubscribe(r.Context(), id); err == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	s.fail(w, r, err)
}

func (s *Server) replay(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var body struct {
		FromSeq uint64 `json:"from_seq"`
		Since   string `json:"since"`
	}
	if err := decodeStrict(r.Body, &body); err != nil {
		s.fail(w, r, err)
		return
	}
	var from delivery.Start
	switch {
	case body.FromSeq > 0 && body.Since != "":
		err = badRequest(`give either "from_seq" or "since", not both`)
	case body.FromSeq > 0:
		from = delivery.Start{Kind: delivery.StartSeq, Seq: body.FromSeq}
	case body.Since != "":
		t, perr := time.Parse(time.RFC3339Nano, body.Since)
		if perr != nil {
			err = badRequest(`"since" %q is not an RFC 3339 time such as 2026-11-23T10:00:00Z`, body.Since)
		}
		from = delivery.Start{Kind: delivery.StartTime, Since: t}
	default:
		err = badRequest(`give "from_seq" (a seq number from 1) or "since" (an RFC 3339 time)`)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	st, err := s.engine.Replay(r.Context(), id, from)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toJSON(st))
}

func (s *Server) listDLQ(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	limit, after := 100, uint64(0)
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 {
			s.fail(w, r, badRequest("limit=%q: want a number from 1", v))
			return
		}
	}
	if v := q.Get("after"); v != "" {
		if after, err = strconv.ParseUint(v, 10, 64); err != nil {
			s.fail(w, r, badRequest("after=%q: want a seq number", v))
			return
		}
	}
	letters, err := s.engine.DeadLetters(id, after, limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	b := []byte(`{"dead_letters":[`)
	for i, d := range letters {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, `{"attempts":%d,"error":%s,"parked_at":"%s",`, d.Attempts,
			mustJSON(d.Error), d.Time.UTC().Format(time.RFC3339Nano))
		if d.Member != "" {
			b = fmt.Appendf(b, `"member":%s,`, mustJSON(d.Member))
		}
		b = append(b, `"event":`...)
		b = appendEventJSON(b, d.Event)
		b = append(b, '}')
	}
	b = append(b, "]}\n"...)
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

func mustJSON(s string) []byte {
	b, _ := json.Marshal(s)
	return b
}

func (s *Server) purgeDLQ(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err == nil {
		var n int
		if n, err = s.engine.PurgeDeadLetters(id); err == nil {
			writeJSON(w, http.StatusOK, map[string]int{"purged": n})
			return
		}
	}
	s.fail(w, r, err)
}

func (s *Server) redrive(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err == nil {
		var n int
		if n, err = s.engine.Redrive(id); err == nil {
			writeJSON(w, http.StatusAccepted, map[string]int{"redriving": n})
			return
		}
	}
	s.fail(w, r, err)
}
