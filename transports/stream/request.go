package stream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

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
