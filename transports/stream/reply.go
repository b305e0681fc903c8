package stream

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// ErrTooLarge means a JSON object exceeded the reader's size limit.
var ErrTooLarge = errors.New("json object too large")

// ErrNotObject means the stream held something other than a JSON object
// where one should start; the stream cannot be resynchronised.
var ErrNotObject = errors.New("not a json object")

// ReadObject reads the next JSON object from r, skipping whitespace before
// it, and returns its bytes appended to buf[:0]. Objects may follow each other
// with no delimiter, as OpenSIPS writes them. It checks only the nesting of
// braces, brackets and strings; the caller parses the object. It scans r's
// buffer in place rather than byte by byte.
func ReadObject(r *bufio.Reader, buf []byte, limit int) ([]byte, error) {
	buf = buf[:0]
	// Skip whitespace up to the opening brace.
	for {
		c, err := r.ReadByte()
		if err != nil {
			return buf, err
		}
		if c == ' ' || c == '\n' || c == '\r' || c == '\t' {
			continue
		}
		if c != '{' {
			return buf, fmt.Errorf("%w: stream has %q where an object should start", ErrNotObject, c)
		}
		buf = append(buf, c)
		break
	}
	depth := 1
	inStr, esc := false, false
	for {
		chunk, err := r.Peek(max(r.Buffered(), 1))
		if len(chunk) == 0 {
			if errors.Is(err, io.EOF) {
				return buf, fmt.Errorf("truncated json object: %w", io.ErrUnexpectedEOF)
			}
			return buf, err
		}
		i := 0
		for i < len(chunk) && depth > 0 {
			if inStr {
				// Jump to the next quote: most bytes of an event are
				// strings. It closes the string unless an odd run of
				// backslashes escapes it.
				if esc {
					esc = false
					i++
					continue
				}
				rest := chunk[i:]
				q := bytes.IndexByte(rest, '"')
				if q < 0 {
					// The string goes on past the chunk: an odd run of
					// backslashes at its end escapes the next byte.
					esc = backslashes(rest, len(rest))%2 == 1
					i = len(chunk)
					continue
				}
				i += q + 1
				inStr = backslashes(rest, q)%2 == 1
				continue
			}
			switch chunk[i] {
			case '"':
				inStr = true
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
			i++
		}
		if len(buf)+i > limit {
			return buf, fmt.Errorf("%w: over %d bytes", ErrTooLarge, limit)
		}
		buf = append(buf, chunk[:i]...)
		r.Discard(i)
		if depth == 0 {
			return buf, nil
		}
	}
}

// backslashes counts the backslashes right before b[end].
func backslashes(b []byte, end int) int {
	n := 0
	for end > n && b[end-n-1] == '\\' {
		n++
	}
	return n
}

// Reply is what evq needs from a JSON-RPC response.
type Reply struct {
	ID        uint64
	HasID     bool   // id is a non-negative integer
	HasError  bool   // an "error" member that is not null
	Error     []byte // the raw error value, for messages
	HasResult bool
}

// ParseReply scans the top level of one JSON-RPC response object for its
// id, error and result members. It returns an error if obj is not a valid
// JSON object.
func ParseReply(obj []byte) (Reply, error) {
	var rep Reply
	s := scanner{b: obj}
	s.ws()
	if !s.eat('{') {
		return rep, s.fail("want '{'")
	}
	s.ws()
	if s.eat('}') {
		return rep, s.end()
	}
	for {
		s.ws()
		raw, plain, ok := s.span()
		if !ok {
			return rep, s.fail("want a member name")
		}
		s.ws()
		if !s.eat(':') {
			return rep, s.fail("want ':'")
		}
		s.ws()
		start := s.i
		if !s.value() {
			return rep, s.fail("bad value")
		}
		val := obj[start:s.i]
		key := raw
		if !plain {
			key = unquote(raw)
		}
		switch string(key) { // compared without a copy
		case "id":
			if n, err := strconv.ParseUint(string(val), 10, 64); err == nil {
				rep.ID, rep.HasID = n, true
			} else {
				rep.ID, rep.HasID = 0, false
			}
		case "error":
			rep.HasError = string(val) != "null"
			rep.Error = val
		case "result":
			rep.HasResult = true
		}
		s.ws()
		if s.eat('}') {
			return rep, s.end()
		}
		if !s.eat(',') {
			return rep, s.fail("want ',' or '}'")
		}
	}
}

// scanner is a minimal JSON syntax walker over a byte slice.
type scanner struct {
	b   []byte
	i   int
	str string // a copy of b, if set: see text
}

// text returns raw, a slice of s.b, as a string: cut from s.str when the
// scanner has one, copied otherwise.
func (s *scanner) text(raw []byte) string {
	if s.str == "" || len(raw) == 0 {
		return string(raw)
	}
	off := cap(s.b) - cap(raw) // raw is s.b[off:off+len(raw)]
	return s.str[off : off+len(raw)]
}

func (s *scanner) fail(what string) error {
	return fmt.Errorf("invalid json reply at byte %d: %s", s.i, what)
}

func (s *scanner) end() error {
	s.ws()
	if s.i != len(s.b) {
		return s.fail("trailing data")
	}
	return nil
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// span scans a string and returns its raw contents, without copying, and
// whether it has no escapes.
func (s *scanner) span() (raw []byte, plain, ok bool) {
	if !s.eat('"') {
		return nil, false, false
	}
	start := s.i
	plain = true
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			raw = s.b[start:s.i]
			s.i++
			return raw, plain, true
		case c == '\\':
			plain = false
			if s.i+1 >= len(s.b) {
				return nil, false, false
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if s.i+6 > len(s.b) {
					return nil, false, false
				}
				for _, h := range s.b[s.i+2 : s.i+6] {
					if !isHex(h) {
						return nil, false, false
					}
				}
				s.i += 6
			default:
				return nil, false, false
			}
		case c < 0x20:
			return nil, false, false
		default:
			s.i++
		}
	}
	return nil, false, false
}

// unquote decodes the escapes of a string's raw contents (span checked
// them); it returns raw itself if they do not decode.
func unquote(raw []byte) []byte {
	u, err := strconv.Unquote(`"` + string(raw) + `"`)
	if err != nil {
		return raw
	}
	return []byte(u)
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func (s *scanner) value() bool {
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		_, _, ok := s.span()
		return ok
	case c == '{':
		s.i++
		s.ws()
		if s.eat('}') {
			return true
		}
		for {
			s.ws()
			if _, _, ok := s.span(); !ok {
				return false
			}
			s.ws()
			if !s.eat(':') {
				return false
			}
			s.ws()
			if !s.value() {
				return false
			}
			s.ws()
			if s.eat('}') {
				return true
			}
			if !s.eat(',') {
				return false
			}
		}
	case c == '[':
		s.i++
		s.ws()
		if s.eat(']') {
			return true
		}
		for {
			s.ws()
			if !s.value() {
				return false
			}
			s.ws()
			if s.eat(']') {
				return true
			}
			if !s.eat(',') {
				return false
			}
		}
	case c == 't':
		return s.lit("true")
	case c == 'f':
		return s.lit("false")
	case c == 'n':
		return s.lit("null")
	default:
		return s.number()
	}
}

func (s *scanner) lit(w string) bool {
	if len(s.b)-s.i >= len(w) && string(s.b[s.i:s.i+len(w)]) == w {
		s.i += len(w)
		return true
	}
	return false
}

func (s *scanner) number() bool {
	start := s.i
	s.eat('-')
	digits := func() int {
		n := 0
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	if s.eat('0') {
	} else if digits() == 0 {
		return false
	}
	if s.eat('.') && digits() == 0 {
		return false
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if !s.eat('+') {
			s.eat('-')
		}
		if digits() == 0 {
			return false
		}
	}
	return s.i > start
}
