package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/evq/evq"
	"github.com/evq/evq/delivery"
	"github.com/evq/evq/transports/stream"
)

// The MI endpoint speaks JSON-RPC 2.0 with OpenSIPS's command names and reply
// shapes, so that tools written for OpenSIPS's MI (opensips-cli, scripts)
// can subscribe and raise through evq.

type miError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    string `json:"data,omitempty"`
}

func (e *miError) Error() string { return e.Message }

type miReply struct {
	JSONRPC string          `json:"jsonrpc"`
	Result  any             `json:"result,omitempty"`
	Error   *miError        `json:"error,omitempty"`
	ID      json.RawMessage `json:"id"`
}

var (
	miParseError     = &miError{Code: -32700, Message: "Parse error"}
	miInvalidRequest = &miError{Code: -32600, Message: "Invalid Request"}
	miNoMethod       = &miError{Code: -32601, Message: "Method not found"}
	miBadValue       = &miError{Code: 400, Message: "Bad parameter value"}
	miBadParams      = &miError{Code: 400, Message: "Bad Params"}
	miNotRegistered  = &miError{Code: 404, Message: "Event not registered"}
	miNotPublished   = &miError{Code: 404, Message: "Event not published"}
	miNoSubscriber   = &miError{Code: 404, Message: "Subscriber does not exist"}
)

func miInvalidParams(data string) *miError {
	return &miError{Code: -32602, Message: "Invalid params", Data: data}
}

// miParams gives access to named or positional params.
type miParams struct {
	named map[string]json.RawMessage
	pos   []json.RawMessage
}

func (p miParams) get(name string, index int) (json.RawMessage, bool) {
	if p.named != nil {
		v, ok := p.named[name]
		return v, ok
	}
	if index < len(p.pos) {
		return p.pos[index], true
	}
	return nil, false
}

func (p miParams) str(name string, index int) (string, bool, *miError) {
	raw, ok := p.get(name, index)
	if !ok {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", true, miInvalidParams(name + " must be a string")
	}
	return s, true, nil
}

func (s *Server) mi(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var req struct {
		JSONRPC string          `json:"jsonrpc"`
		Method  string          `json:"method"`
		Params  json.RawMessage `json:"params"`
		ID      json.RawMessage `json:"id"`
	}
	rep := miReply{JSONRPC: "2.0", ID: json.RawMessage("null")}
	if err := json.Unmarshal(body, &req); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) || !json.Valid(body) {
			rep.Error = miParseError
		} else {
			rep.Error = miInvalidRequest
		}
		writeJSON(w, http.StatusOK, rep)
		return
	}
	if req.ID != nil {
		rep.ID = req.ID
	}
	if req.JSONRPC != "2.0" || req.Method == "" {
		rep.Error = miInvalidRequest
		writeJSON(w, http.StatusOK, rep)
		return
	}
	var p miParams
	switch trimmed := bytes.TrimSpace(req.Params); {
	case len(trimmed) == 0 || string(trimmed) == "null":
		p.pos = nil
	case trimmed[0] == '{':
		err = json.Unmarshal(trimmed, &p.named)
	case trimmed[0] == '[':
		err = json.Unmarshal(trimmed, &p.pos)
	default:
		err = errors.New("params must be an object or an array")
	}
	if err != nil {
		rep.Error = miInvalidParams(err.Error())
		writeJSON(w, http.StatusOK, rep)
		return
	}
	var result any
	var merr *miError
	switch req.Method {
	case "event_subscribe":
		result, merr = s.miSubscribe(r, p)
	case "events_list":
		result, merr = s.miEventsList()
	case "subscribers_list":
		result, merr = s.miSubscribersList(p)
	case "raise_event":
		result, merr = s.miRaise(r, p)
	default:
		merr = miNoMethod
	}
	if merr != nil {
		rep.Error = merr
	} else {
		rep.Result = result
	}
	writeJSON(w, http.StatusOK, rep)
}

func (s *Server) miSubscribe(r *http.Request, p miParams) (any, *miError) {
	event, ok, merr := p.str("event", 0)
	if merr != nil || !ok {
		return nil, miInvalidParams("missing event")
	}
	socket, ok, merr := p.str("socket", 1)
	if merr != nil || !ok {
		return nil, miInvalidParams("missing socket")
	}
	expire := evq.DefaultMIExpire
	if raw, ok := p.get("expire", 2); ok {
		if err := json.Unmarshal(raw, &expire); err != nil {
			var str string
			if json.Unmarshal(raw, &str) != nil || json.Unmarshal([]byte(str), &expire) != nil {
				return nil, miInvalidParams("expire must be a number")
			}
		}
		if expire < 0 {
			return nil, miInvalidParams("Negative expire value")
		}
	}
	if evq.ValidateName(event) != nil {
		return nil, miBadValue
	}
	sock, err := evq.ParseSocket(socket)
	if err != nil {
		return nil, miBadValue
	}
	if expire == 0 {
		// OpenSIPS: subscribing with expire 0 unsubscribes.
		if st, err := s.engine.Find(event, sock.String()); err == nil {
			if err := s.engine.Unsubscribe(r.Context(), st.ID); err != nil {
				return nil, &miError{Code: 500, Message: "Internal error"}
			}
		}
		return "OK", nil
	}
	req := delivery.SubscribeRequest{Event: event, Socket: sock.String(), Expire: expire, Options: s.opts.Defaults}
	if _, err := s.engine.Subscribe(r.Context(), req); err != nil {
		s.opts.Logger.Warn("MI event_subscribe refused", "event", event, "socket", socket, "err", err)
		return nil, miErrorOf(err)
	}
	return "OK", nil
}

func miErrorOf(err error) *miError {
	switch statusOf(err) {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return miBadValue
	case http.StatusInsufficientStorage:
		return &miError{Code: 507, Message: "Insufficient Storage", Data: err.Error()}
	case http.StatusServiceUnavailable:
		return &miError{Code: 503, Message: "Service Unavailable"}
	default:
		return &miError{Code: 500, Message: "Internal error", Data: err.Error()}
	}
}

type miEvent struct {
	Name        string         `json:"name"`
	ID          int            `json:"id"`
	Subscribers []miSubscriber `json:"Subscribers,omitempty"`
}

type miSubscriber struct {
	Socket string `json:"socket"`
	Expire int    `json:"expire"`
	TTL    *int   `json:"ttl,omitempty"`
}

// miEvents lists events as OpenSIPS does, each with an id, with the
// subscribers that have not expired.
func (s *Server) miEvents() ([]miEvent, error) {
	infos, err := s.eventInfos()
	if err != nil {
		return nil, err
	}
	out := make([]miEvent, len(infos))
	index := make(map[string]int)
	for i, info := range infos {
		out[i] = miEvent{Name: info.Name, ID: i}
		index[info.Name] = i
	}
	for _, st := range s.engine.Subscriptions() {
		if st.State == delivery.StateExpired {
			continue
		}
		sub := miSubscriber{Socket: st.Socket, Expire: st.Expire}
		if !st.ExpiresAt.IsZero() {
			ttl := int(st.ExpiresAt.Sub(s.now()).Seconds() + 0.5)
			sub.TTL = &ttl
		}
		i := index[st.Event]
		out[i].Subscribers = append(out[i].Subscribers, sub)
	}
	for _, e := range out {
		slices.Reverse(e.Subscribers) // newest first, as OpenSIPS lists them
	}
	return out, nil
}

func (s *Server) miEventsList() (any, *miError) {
	events, err := s.miEvents()
	if err != nil {
		return nil, miErrorOf(err)
	}
	list := make([]miEvent, len(events))
	for i, e := range events {
		list[i] = miEvent{Name: e.Name, ID: e.ID}
	}
	return map[string]any{"Events": list}, nil
}

func (s *Server) miSubscribersList(p miParams) (any, *miError) {
	events, err := s.miEvents()
	if err != nil {
		return nil, miErrorOf(err)
	}
	event, haveEvent, merr := p.str("event", 0)
	if merr != nil {
		return nil, merr
	}
	if !haveEvent {
		with := []miEvent{}
		for _, e := range events {
			if len(e.Subscribers) > 0 {
				with = append(with, e)
			}
		}
		return map[string]any{"Events": with}, nil
	}
	for _, e := range events {
		if e.Name != event {
			continue
		}
		socket, haveSocket, merr := p.str("socket", 1)
		if merr != nil {
			return nil, merr
		}
		if haveSocket {
			var one []miSubscriber
			for _, sub := range e.Subscribers {
				if sub.Socket == strings.TrimSpace(socket) {
					one = append(one, sub)
				}
			}
			if one == nil {
				return nil, miNoSubscriber
			}
			e.Subscribers = one
		}
		return map[string]any{"Event": e}, nil
	}
	return nil, miNotPublished
}

// miRaise raises an event. As in OpenSIPS, params is a string holding a JSON
// object; evq also takes the object itself.
func (s *Server) miRaise(r *http.Request, p miParams) (any, *miError) {
	event, ok, merr := p.str("event", 0)
	if merr != nil || !ok {
		return nil, miInvalidParams("missing event")
	}
	if evq.ValidateName(event) != nil {
		return nil, miNotRegistered
	}
	ev := &evq.Event{Name: event}
	if raw, ok := p.get("params", 1); ok {
		var text string
		if json.Unmarshal(raw, &text) == nil {
			raw = json.RawMessage(text)
		}
		if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '{' {
			return nil, miBadParams
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		named, params, err := stream.DecodeParams(dec)
		if err != nil || (len(params) > 0 && !named) {
			return nil, miBadParams
		}
		ev.Named, ev.Params = named, params
	}
	if err := s.engine.Raise(r.Context(), ev); err != nil {
		return nil, miErrorOf(err)
	}
	return "OK", nil
}
