package stream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"

	"github.com/evq/evq"
)

// JSON-RPC error codes evq answers with.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeInvalidParams  = -32602
	CodeServerError    = -32000 // the event could not be stored
)

// RequestError is a JSON-RPC error to answer a request with.
type RequestError struct {
	Code    int
	Message string
}

func (e *RequestError) Error() string { return e.Message }

// Request is one JSON-RPC object read from OpenSIPS: an event, and the id to
// answer (nil for a notification).
type Request struct {
	Event *evq.Event
	ID    json.RawMessage // the id exactly as sent; nil for a notification
}

// ParseRequest reads an event from one JSON-RPC object. The event name is the
// method, or, if eventParam is set, the value of that param, which is then
// removed from the params. Unnamed params come as an array or as OpenSIPS's
// {"":v,…}. On error the returned Request still carries the id, when one
// could be read, so that the error can be answered.
func ParseRequest(obj []byte, eventParam string) (Request, error) {
	req, err := parseRequest(obj, eventParam)
	var re *RequestError
	if errors.As(err, &re) && re.Code == CodeParseError {
		req.ID = nil // JSON-RPC 2.0: a parse error is answered with id null
	}
	return req, err
}

func parseRequest(obj []byte, eventParam string) (Request, error) {
	if req, ok := parseRequestFast(obj, eventParam); ok {
		return req, nil
	}
	return parseRequestSlow(obj, eventParam)
}

// parseRequestFast parses the common request, a flat one whose strings have
// no escapes, in one pass over obj without encoding/json, whose Token API
// allocates an error for every value it reads. On anything else (escapes,
// nesting, any mistake) it gives up, and parseRequestSlow parses the object
// and words the error.
func parseRequestFast(obj []byte, eventParam string) (Request, bool) {
	var req Request
	// The event's strings are cut from one copy of obj: one allocation
	// instead of one per name and value.
	s := scanner{b: obj, str: string(obj)}
	s.ws()
	if !s.eat('{') {
		return req, false
	}
	var method []byte
	var named, haveParams bool
	var params []evq.Param
	for {
		s.ws()
		key, plain, ok := s.span()
		if !ok || !plain {
			return req, false
		}
		s.ws()
		if !s.eat(':') {
			return req, false
		}
		s.ws()
		switch string(key) {
		case "method":
			if method, ok = s.plainString(); !ok {
				return req, false
			}
		case "id":
			start := s.i
			if !s.value() {
				return req, false
			}
			req.ID = nil
			if id := obj[start:s.i]; string(id) != "null" {
				req.ID = json.RawMessage(bytes.Clone(id))
			}
		case "params":
			haveParams = true
			if named, params, ok = s.flatParams(); !ok {
				return req, false
			}
		default:
			if !s.value() {
				return req, false
			}
		}
		s.ws()
		if s.eat('}') {
			break
		}
		if !s.eat(',') {
			return req, false
		}
	}
	if s.end() != nil || len(method) == 0 {
		return req, false
	}
	ev := &evq.Event{Name: s.text(method), Named: named, Params: params}
	if eventParam != "" && haveParams && takeEventParam(ev, eventParam) != nil {
		return req, false
	}
	if ev.Validate() != nil {
		return req, false
	}
	req.Event = ev
	return req, true
}

// plainString reads a string without escapes and in valid UTF-8.
func (s *scanner) plainString() ([]byte, bool) {
	raw, plain, ok := s.span()
	return raw, ok && plain && utf8.Valid(raw)
}

// flatParams reads params as DecodeParams does, for the cases
// parseRequestFast handles: an object or array of plain strings, numbers,
// booleans and nulls, or null.
func (s *scanner) flatParams() (named bool, params []evq.Param, ok bool) {
	if s.lit("null") {
		return false, nil, true
	}
	var closer byte
	switch {
	case s.eat('{'):
		closer, named = '}', true
	case s.eat('['):
		closer = ']'
	default:
		return false, nil, false
	}
	s.ws()
	if s.eat(closer) {
		return false, nil, true
	}
	allEmpty := true
	params = make([]evq.Param, 0, 16)
	for {
		s.ws()
		var p evq.Param
		if named {
			name, ok := s.plainString()
			if !ok {
				return false, nil, false
			}
			p.Name = s.text(name)
			allEmpty = allEmpty && p.Name == ""
			s.ws()
			if !s.eat(':') {
				return false, nil, false
			}
			s.ws()
		}
		if p.Value, ok = s.flatValue(); !ok {
			return false, nil, false
		}
		params = append(params, p)
		s.ws()
		if s.eat(closer) {
			break
		}
		if !s.eat(',') {
			return false, nil, false
		}
	}
	if named && allEmpty {
		return false, params, true // OpenSIPS's {"":v,…}: unnamed
	}
	if named {
		for _, p := range params {
			if p.Name == "" {
				return false, nil, false
			}
		}
	}
	return named, params, true
}

// flatValue reads a plain string, a number, a boolean or null.
func (s *scanner) flatValue() (evq.Value, bool) {
	if s.i >= len(s.b) {
		return evq.Value{}, false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		str, ok := s.plainString()
		return evq.String(s.text(str)), ok
	case c == 't':
		return evq.Bool(true), s.lit("true")
	case c == 'f':
		return evq.Bool(false), s.lit("false")
	case c == 'n':
		return evq.Null(), s.lit("null")
	case c == '-' || (c >= '0' && c <= '9'):
		start := s.i
		if !s.number() {
			return evq.Value{}, false
		}
		v, err := NumberValue(s.text(s.b[start:s.i]))
		return v, err == nil
	}
	return evq.Value{}, false
}

func parseRequestSlow(obj []byte, eventParam string) (Request, error) {
	var req Request
	dec := json.NewDecoder(bytes.NewReader(obj))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return req, &RequestError{CodeParseError, "Parse error"}
	}
	var method string
	var haveMethod, haveParams bool
	ev := &evq.Event{}
	var badParams error
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return req, &RequestError{CodeParseError, "Parse error"}
		}
		switch key, _ := kt.(string); key {
		case "method":
			tok, err := dec.Token()
			if err != nil {
				return req, &RequestError{CodeParseError, "Parse error"}
			}
			method, haveMethod = tok.(string)
		case "id":
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return req, &RequestError{CodeParseError, "Parse error"}
			}
			if string(raw) != "null" {
				req.ID = raw
			}
		case "params":
			haveParams = true
			ev.Named, ev.Params, badParams = DecodeParams(dec)
			if badParams != nil && !errors.Is(badParams, ErrBadParams) {
				return req, &RequestError{CodeParseError, "Parse error"}
			}
			if badParams != nil {
				// DecodeParams stopped inside the value: the rest of the
				// object cannot be walked, but it is valid JSON (checked
				// below), so answer invalid params.
				if !json.Valid(obj) {
					return req, &RequestError{CodeParseError, "Parse error"}
				}
				req.ID = findID(obj)
				return req, &RequestError{CodeInvalidParams, "Invalid params: " + badParams.Error()}
			}
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return req, &RequestError{CodeParseError, "Parse error"}
			}
		}
	}
	if _, err := dec.Token(); err != nil {
		return req, &RequestError{CodeParseError, "Parse error"}
	}
	if _, err := dec.Token(); err != io.EOF {
		return req, &RequestError{CodeParseError, "Parse error"}
	}
	if !haveMethod || method == "" {
		return req, &RequestError{CodeInvalidRequest, "Invalid Request: no method"}
	}
	ev.Name = method
	if eventParam != "" && haveParams {
		if err := takeEventParam(ev, eventParam); err != nil {
			return req, &RequestError{CodeInvalidParams, "Invalid params: " + err.Error()}
		}
	}
	if err := ev.Validate(); err != nil {
		return req, &RequestError{CodeInvalidParams, "Invalid params: " + err.Error()}
	}
	req.Event = ev
	return req, nil
}

// takeEventParam moves the event name from its param into ev.Name.
func takeEventParam(ev *evq.Event, name string) error {
	if !ev.Named {
		// OpenSIPS puts the name first in an unnamed list.
		if len(ev.Params) == 0 || ev.Params[0].Value.Kind != evq.KindString {
			return fmt.Errorf("event_param %q: the first unnamed param is not the event name", name)
		}
		ev.Name = ev.Params[0].Value.Str
		ev.Params = ev.Params[1:]
		return nil
	}
	for i, p := range ev.Params {
		if p.Name == name {
			if p.Value.Kind != evq.KindString {
				return fmt.Errorf("event_param %q is not a string", name)
			}
			ev.Name = p.Value.Str
			ev.Params = append(ev.Params[:i:i], ev.Params[i+1:]...)
			ev.Named = len(ev.Params) > 0
			return nil
		}
	}
	return fmt.Errorf("event_param %q is missing", name)
}

// findID returns the top-level id of a valid JSON object, or nil.
func findID(obj []byte) json.RawMessage {
	var m struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(obj, &m) != nil || string(m.ID) == "null" {
		return nil
	}
	return m.ID
}

// AppendResult appends {"jsonrpc":"2.0","result":seq,"id":id}.
func AppendResult(b []byte, seq uint64, id json.RawMessage) []byte {
	b = append(b, `{"jsonrpc":"2.0","result":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"id":`...)
	b = append(b, id...)
	return append(b, '}')
}

// AppendError appends a JSON-RPC error reply; a nil id is written as null.
func AppendError(b []byte, code int, message string, id json.RawMessage) []byte {
	b = append(b, `{"jsonrpc":"2.0","error":{"code":`...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, `,"message":`...)
	b = AppendString(b, message)
	b = append(b, `},"id":`...)
	if id == nil {
		id = json.RawMessage("null")
	}
	b = append(b, id...)
	return append(b, '}')
}
