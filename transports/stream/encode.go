package stream

import (
	"strconv"

	"github.com/evq/evq"
)

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string the way OpenSIPS writes it: raw
// UTF-8, \" \\ \n \t \r escaped, other control characters as \u00XX, and
// nothing else escaped (not '/', '<', '>' or '&'). Bytes that are not valid
// UTF-8 pass through unchanged, as OpenSIPS sends them.
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"':
			b = append(b, '\\', '"')
		case '\\':
			b = append(b, '\\', '\\')
		case '\n':
			b = append(b, '\\', 'n')
		case '\t':
			b = append(b, '\\', 't')
		case '\r':
			b = append(b, '\\', 'r')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// AppendValue appends v as JSON.
func AppendValue(b []byte, v evq.Value) []byte {
	switch v.Kind {
	case evq.KindString:
		return AppendString(b, v.Str)
	case evq.KindInt:
		return strconv.AppendInt(b, v.Int, 10)
	case evq.KindFloat:
		return append(b, v.Str...)
	case evq.KindBool:
		return strconv.AppendBool(b, v.Int != 0)
	default:
		return append(b, "null"...)
	}
}

// Message describes how an event is framed as JSON-RPC.
type Message struct {
	Method     string // "" means the event name
	EventParam string // if set, the event name is added as this param
	Request    bool   // a request with "id" (reliable mode) rather than a notification
}

// Append appends ev as one JSON-RPC object. In a request the id is ev.Seq.
func (m *Message) Append(b []byte, ev *evq.Event) []byte {
	if m.Request {
		b = append(b, `{"id":`...)
		b = strconv.AppendUint(b, ev.Seq, 10)
		b = append(b, `,"jsonrpc":"2.0","method":`...)
	} else {
		b = append(b, `{"jsonrpc":"2.0","method":`...)
	}
	method := m.Method
	if method == "" {
		method = ev.Name
	}
	b = AppendString(b, method)
	if len(ev.Params) == 0 && m.EventParam == "" {
		return append(b, '}')
	}
	b = append(b, `,"params":`...)
	if ev.Named || len(ev.Params) == 0 {
		b = append(b, '{')
		if m.EventParam != "" {
			b = AppendString(b, m.EventParam)
			b = append(b, ':')
			b = AppendString(b, ev.Name)
		}
		for i, p := range ev.Params {
			if i > 0 || m.EventParam != "" {
				b = append(b, ',')
			}
			b = AppendString(b, p.Name)
			b = append(b, ':')
			b = AppendValue(b, p.Value)
		}
		return append(b, '}', '}')
	}
	b = append(b, '[')
	if m.EventParam != "" {
		b = AppendString(b, ev.Name)
	}
	for i, p := range ev.Params {
		if i > 0 || m.EventParam != "" {
			b = append(b, ',')
		}
		b = AppendValue(b, p.Value)
	}
	return append(b, ']', '}')
}
