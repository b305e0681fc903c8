package stream

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/evq/evq"
)

func capture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "opensips", name))
	if err != nil {
		t.Fatalf("capture %s: %v", name, err)
	}
	return b
}

func strIntEvent() *evq.Event {
	return &evq.Event{Name: "E_EVQ_TEST", Named: true, Params: []evq.Param{
		{Name: "str", Value: evq.String("hello")}, {Name: "int", Value: evq.Int(42)}, {Name: "neg", Value: evq.Int(-7)}}}
}

func TestMessage_Golden(t *testing.T) {
	ep := &evq.Event{Seq: 1225711609, Name: "E_EVQ_TEST", Named: true, Params: []evq.Param{
		{Name: "str", Value: evq.String("hello")}, {Name: "int", Value: evq.Int(42)}}}
	tests := []struct {
		file string
		msg  Message
		ev   *evq.Event
	}{
		{"A_named_str_int.stream_rm0.bin", Message{}, strIntEvent()},
		{"A_named_str_int.stream_rm0_method.bin", Message{Method: "evq_method"}, strIntEvent()},
		{"A_noparams.stream_rm0.bin", Message{}, &evq.Event{Name: "E_EVQ_TEST"}},
		{"A_single_named.udp.bin", Message{}, &evq.Event{Name: "E_EVQ_TEST", Named: true, Params: []evq.Param{{Name: "ip", Value: evq.String("192.168.2.11")}}}},
		{"C_named.stream_rm0_event_param.bin", Message{EventParam: "opensips_event"}, ep},
		{"D_named.stream_rm1_event_param.bin", Message{EventParam: "opensips_event", Request: true}, ep},
	}
	for _, tt := range tests {
		want := capture(t, tt.file)
		if got := tt.msg.Append(nil, tt.ev); !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %s\nwant %s", tt.file, got, want)
		}
	}
}

// TestMessage_GoldenConnection re-encodes every object OpenSIPS wrote on one
// connection and compares bytes, except where DESIGN.md deliberately
// differs (unnamed params) or the capture holds invalid UTF-8 that a JSON
// decoder cannot give back.
func TestMessage_GoldenConnection(t *testing.T) {
	data := capture(t, "A_stream_rm0_full_connection_9001.bin")
	br := bufio.NewReader(bytes.NewReader(data))
	compared := 0
	for {
		obj, err := ReadObject(br, nil, 1<<20)
		if err != nil {
			break
		}
		if bytes.Contains(obj, []byte(`"":`)) || !utf8.Valid(obj) {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(obj))
		dec.UseNumber()
		var m struct {
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
		}
		if err := json.Unmarshal(obj, &m); err != nil {
			t.Fatal(err)
		}
		ev := &evq.Event{Name: m.Method}
		if m.Params != nil {
			pd := json.NewDecoder(bytes.NewReader(m.Params))
			pd.UseNumber()
			if ev.Named, ev.Params, err = DecodeParams(pd); err != nil {
				t.Fatal(err)
			}
		}
		if got := (&Message{}).Append(nil, ev); !bytes.Equal(got, obj) {
			t.Errorf("\n got %s\nwant %s", got, obj)
		}
		compared++
	}
	if compared < 5 {
		t.Fatalf("compared only %d objects", compared)
	}
}

func TestMessage_Unnamed(t *testing.T) {
	ev := &evq.Event{Name: "E_U", Params: []evq.Param{{Value: evq.Int(3)}, {Value: evq.String("5")}}}
	if got := string((&Message{}).Append(nil, ev)); got != `{"jsonrpc":"2.0","method":"E_U","params":[3,"5"]}` {
		t.Error(got)
	}
	if got := string((&Message{EventParam: "ev"}).Append(nil, ev)); got != `{"jsonrpc":"2.0","method":"E_U","params":["E_U",3,"5"]}` {
		t.Error(got)
	}
	f, _ := evq.Float("1.50")
	ev = &evq.Event{Name: "E_V", Named: true, Params: []evq.Param{{Name: "f", Value: f}, {Name: "b", Value: evq.Bool(false)}, {Name: "n", Value: evq.Null()}, {Name: "x", Value: evq.String("<a&b>")}}}
	if got := string((&Message{}).Append(nil, ev)); got != `{"jsonrpc":"2.0","method":"E_V","params":{"f":1.50,"b":false,"n":null,"x":"<a&b>"}}` {
		t.Error(got)
	}
}

// FuzzMessage checks that every event encodes to JSON that encoding/json
// reads back to the same method and values, in order.
func FuzzMessage(f *testing.F) {
	f.Add("E_X", "k", "v\"\\\n\t\r\x01</>&", int64(-1), true, true)
	f.Add("E_Y", "", "", int64(1<<62), false, false)
	f.Fuzz(func(t *testing.T, name, key, val string, n int64, named, request bool) {
		if !utf8.ValidString(key) || !utf8.ValidString(val) {
			return // invalid UTF-8 passes through raw, as OpenSIPS sends it; json would replace it
		}
		if evq.ValidateName(name) != nil {
			return
		}
		ev := &evq.Event{Seq: uint64(n) >> 1, Name: name, Named: named}
		if named {
			if key == "" {
				key = "k"
			}
			ev.Params = []evq.Param{{Name: key, Value: evq.String(val)}, {Name: key + "2", Value: evq.Int(n)}}
		} else {
			ev.Params = []evq.Param{{Value: evq.String(val)}, {Value: evq.Int(n)}}
		}
		b := (&Message{Request: request}).Append(nil, ev)
		var m struct {
			ID     *uint64         `json:"id"`
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if m.Method != name || (request && (m.ID == nil || *m.ID != ev.Seq)) || (!request && m.ID != nil) {
			t.Fatalf("%s: method/id", b)
		}
		dec := json.NewDecoder(bytes.NewReader(m.Params))
		dec.UseNumber()
		gotNamed, params, err := DecodeParams(dec)
		if err != nil || gotNamed != named || len(params) != 2 || params[0].Value.Str != val || params[1].Value.Int != n ||
			(named && (params[0].Name != key || params[1].Name != key+"2")) {
			t.Fatalf("%s: decoded %v %+v %v", b, gotNamed, params, err)
		}
		if strings.Contains(string(b), "\\u003c") {
			t.Fatal("escaped <")
		}
	})
}

// FuzzAppendString checks the eight-bytes-at-a-time scan against escaping
// byte by byte, for any bytes, valid UTF-8 or not.
func FuzzAppendString(f *testing.F) {
	f.Add("plain ascii text, long enough for several words")
	f.Add("v\"\\\n\t\r\x01\x1f</>&\x7f\x80\xff héllo")
	f.Add("12345678\"2345678\\234567\x00")
	f.Fuzz(func(t *testing.T, s string) {
		want := []byte{'"'}
		for i := 0; i < len(s); i++ {
			switch c := s[i]; {
			case c == '"':
				want = append(want, '\\', '"')
			case c == '\\':
				want = append(want, '\\', '\\')
			case c == '\n':
				want = append(want, '\\', 'n')
			case c == '\t':
				want = append(want, '\\', 't')
			case c == '\r':
				want = append(want, '\\', 'r')
			case c < 0x20:
				want = append(want, fmt.Sprintf("\\u%04x", c)...)
			default:
				want = append(want, c)
			}
		}
		want = append(want, '"')
		if got := AppendString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("AppendString(%q) = %s, want %s", s, got, want)
		}
	})
}
