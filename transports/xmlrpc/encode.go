// Package xmlrpc is the transport of OpenSIPS's event_xmlrpc module:
// sockets xmlrpc:host:port:method.
//
// Each event is one HTTP/1.1 POST /RPC2 on its own connection, with
// OpenSIPS's headers and body layout: the first param is the event name,
// then one param per event param, with a <name> before its value, or, with
// use_struct_param, a one-member struct. Unlike OpenSIPS, values are
// XML-escaped and negative integers stay negative, so that standard XML-RPC
// servers read every event. In reliable mode the HTTP response is read: a
// 2xx methodResponse without a fault is success (OpenSIPS never reads it).
// In non-reliable mode an event counts as delivered once written, but evq
// still waits for the response (up to the timeout) before the next event, so
// that servers handling connections concurrently receive events in order.
package xmlrpc

import (
	"strconv"
	"unicode/utf8"

	"github.com/evq/evq"
)

// appendEscaped appends s with the XML special characters escaped. What XML
// 1.0 cannot carry (control characters, invalid UTF-8, U+FFFE and U+FFFF)
// is written as U+FFFD.
func appendEscaped(b []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		var rep string
		switch c := s[i]; {
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRuneInString(s[i:])
			if (r != utf8.RuneError || size > 1) && r != 0xFFFE && r != 0xFFFF {
				i += size - 1
				continue
			}
			b = append(b, s[start:i]...)
			b = append(b, "\uFFFD"...)
			i += size - 1
			start = i + 1
			continue
		case c == '<':
			rep = "&lt;"
		case c == '>':
			rep = "&gt;"
		case c == '&':
			rep = "&amp;"
		case c == '"':
			rep = "&quot;"
		case c == '\'':
			rep = "&apos;"
		case c == '\r':
			rep = "&#13;" // a literal CR would reach the reader as LF
		case c < 0x20 && c != '\n' && c != '\t':
			rep = "\uFFFD"
		default:
			continue
		}
		b = append(b, s[start:i]...)
		b = append(b, rep...)
		start = i + 1
	}
	return append(b, s[start:]...)
}

func appendValue(b []byte, v evq.Value) []byte {
	b = append(b, "<value>"...)
	switch v.Kind {
	case evq.KindString:
		b = append(b, "<string>"...)
		b = appendEscaped(b, v.Str)
		b = append(b, "</string>"...)
	case evq.KindInt:
		if v.Int >= -1<<31 && v.Int < 1<<31 {
			b = append(b, "<int>"...)
			b = strconv.AppendInt(b, v.Int, 10)
			b = append(b, "</int>"...)
		} else {
			b = append(b, "<i8>"...)
			b = strconv.AppendInt(b, v.Int, 10)
			b = append(b, "</i8>"...)
		}
	case evq.KindFloat:
		b = append(b, "<double>"...)
		b = append(b, v.Str...)
		b = append(b, "</double>"...)
	case evq.KindBool:
		b = append(b, "<boolean>"...)
		b = strconv.AppendInt(b, v.Int, 10)
		b = append(b, "</boolean>"...)
	default:
		b = append(b, "<nil/>"...)
	}
	return append(b, "</value>"...)
}

// AppendBody appends the XML-RPC methodCall for ev, as OpenSIPS lays it out.
func AppendBody(b []byte, ev *evq.Event, method string, useStruct bool) []byte {
	b = append(b, "<?xml version=\"1.0\"?>\n<methodCall>\n<methodName>"...)
	b = appendEscaped(b, method)
	b = append(b, "</methodName>\n<params>\n<param>\n"...)
	b = appendValue(b, evq.String(ev.Name))
	b = append(b, "\n</param>\n"...)
	for _, p := range ev.Params {
		b = append(b, "<param>\n"...)
		switch {
		case ev.Named && useStruct:
			b = append(b, "<value><struct><member>\n<name>"...)
			b = appendEscaped(b, p.Name)
			b = append(b, "</name>\n"...)
			b = appendValue(b, p.Value)
			b = append(b, "\n</member></struct></value>\n"...)
		case ev.Named:
			b = append(b, "<name>"...)
			b = appendEscaped(b, p.Name)
			b = append(b, "</name>\n"...)
			b = appendValue(b, p.Value)
			b = append(b, '\n')
		default:
			b = appendValue(b, p.Value)
			b = append(b, '\n')
		}
		b = append(b, "</param>\n"...)
	}
	return append(b, "</params>\n</methodCall>"...)
}

// AppendRequest appends the whole HTTP request for ev to host (host:port).
func AppendRequest(b []byte, ev *evq.Event, host, method string, useStruct bool, body []byte) ([]byte, []byte) {
	body = AppendBody(body[:0], ev, method, useStruct)
	b = append(b, "POST /RPC2 HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\nConnection: close\r\nUser-Agent: OpenSIPS XMLRPC Notifier\r\nContent-type: text/xml\r\nContent-length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	return append(b, body...), body
}
