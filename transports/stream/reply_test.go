package stream

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestParseReply(t *testing.T) {
	tests := []struct {
		in              string
		id              uint64
		hasID, hasError bool
	}{
		{`{"jsonrpc":"2.0","result":"OK","id":884109633}`, 884109633, true, false},
		{`{"jsonrpc":"2.0","error":{"code":-32000,"message":"rejected by test"},"id":554182782}`, 554182782, true, true},
		{` { "id" : 7 , "result" : {"a":[1,2,{"b":null}]}, "error": null } `, 7, true, false},
		{`{"id":"7","result":1}`, 0, false, false},
		{`{"id":-1,"result":1}`, 0, false, false},
		{`{"\u0069d":9,"result":"a\"b","err\u006fr":{"x":"\u00e9"}}`, 9, true, true},
	}
	for _, tt := range tests {
		r, err := ParseReply([]byte(tt.in))
		if err != nil || r.ID != tt.id || r.HasID != tt.hasID || r.HasError != tt.hasError {
			t.Errorf("ParseReply(%s) = %+v, %v", tt.in, r, err)
		}
	}
	// Replies are parsed for every event acknowledged: no allocation.
	obj := []byte(`{"jsonrpc":"2.0","result":"OK","id":884109633}`)
	if n := testing.AllocsPerRun(100, func() { ParseReply(obj) }); n != 0 {
		t.Errorf("ParseReply allocates %.0f times per reply", n)
	}
	for _, bad := range []string{`{`, `{"id":1,}`, `{"id":01}`, `{"id":1} x`, `[]`, `{"a":tru}`} {
		if _, err := ParseReply([]byte(bad)); err == nil {
			t.Errorf("ParseReply(%s): no error", bad)
		}
	}
}

func TestReadObject(t *testing.T) {
	in := `{"a":"}{\"","b":[{}]}` + "\n" + `{"id":2}{"x":"\\"}`
	br := bufio.NewReader(strings.NewReader(in))
	var got []string
	for {
		obj, err := ReadObject(br, nil, 100)
		if err != nil {
			break
		}
		got = append(got, string(obj))
	}
	if len(got) != 3 || got[0] != `{"a":"}{\"","b":[{}]}` || got[2] != `{"x":"\\"}` {
		t.Fatalf("%q", got)
	}
	_, err := ReadObject(bufio.NewReader(strings.NewReader(`{"a":"`+strings.Repeat("x", 200)+`"}`)), nil, 100)
	if err == nil || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("oversize: %v", err)
	}
	_, err = ReadObject(bufio.NewReader(strings.NewReader(`[1]`)), nil, 100)
	if err == nil {
		t.Fatal("array accepted as object")
	}
}

// FuzzParseReply checks the reply scanner against encoding/json.
func FuzzParseReply(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","result":"OK","id":1}`))
	f.Add([]byte(`{"jsonrpc":"2.0","error":{"code":1},"id":2}`))
	f.Add([]byte(`{"id":1.5,"error":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseReply(b)
		var m map[string]json.RawMessage
		jerr := json.Unmarshal(b, &m)
		if (err == nil) != (jerr == nil) {
			// encoding/json accepts duplicate keys and validates UTF-8 loosely, as we do.
			t.Fatalf("ParseReply err %v, json err %v for %q", err, jerr, b)
		}
		if err != nil {
			return
		}
		if _, ok := m["result"]; ok != r.HasResult {
			t.Fatalf("result %v for %q", r.HasResult, b)
		}
		e, ok := m["error"]
		if hasErr := ok && string(bytes.TrimSpace(e)) != "null"; hasErr != r.HasError {
			t.Fatalf("error %v for %q", r.HasError, b)
		}
		var id uint64
		if raw, ok := m["id"]; ok && string(raw) != "null" && json.Unmarshal(raw, &id) == nil && !bytes.ContainsAny(raw, ".eE") {
			if !r.HasID || r.ID != id {
				t.Fatalf("id %d/%v, json %d for %q", r.ID, r.HasID, id, b)
			}
		}
	})
}

// FuzzReadObject checks the stream splitter on objects that encoding/json
// wrote back to back, with small reader buffers so objects span refills.
func FuzzReadObject(f *testing.F) {
	f.Add("plain", 16)
	f.Add(`}{"\\`, 17)
	f.Fuzz(func(t *testing.T, s string, size int) {
		a, _ := json.Marshal(map[string]any{"a": s, "n": []any{s, 1, map[string]string{s: s}}})
		b, _ := json.Marshal(map[string]string{s: "}"})
		stream := append(append(append([]byte{}, a...), ' ', '\n'), b...)
		br := bufio.NewReaderSize(bytes.NewReader(stream), 16+abs(size)%64)
		got1, err := ReadObject(br, nil, 1<<20)
		if err != nil || !bytes.Equal(got1, a) {
			t.Fatalf("first: %q %v, want %q", got1, err, a)
		}
		got2, err := ReadObject(br, nil, 1<<20)
		if err != nil || !bytes.Equal(got2, b) {
			t.Fatalf("second: %q %v, want %q", got2, err, b)
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// FuzzParseRequest feeds the ingest decoder anything: it must not panic, and
// an event it accepts must survive evq's own encoder and be parsed back the
// same.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(`{"id":1225711609,"jsonrpc":"2.0","method":"E_EVQ_TEST","params":{"opensips_event":"E_EVQ_TEST","str":"hello","int":42}}`), "opensips_event")
	f.Add([]byte(`{"jsonrpc":"2.0","method":"E_EVQ_TEST","params":{"":"a","":"b","":"3"}}`), "")
	f.Add([]byte(`{"jsonrpc":"2.0","method":"E_X","params":[1,2.5,true,null,"s"]}`), "")
	f.Add([]byte(`{"id":"x","method":"E_X",}`), "")
	f.Add([]byte(`{"method":"E_X","params":{"a":"\u00e9","b":{"c":1}},"id":[1]}`), "")
	f.Add([]byte(`{"method":"E_X","params":{},"id":null,"method":"E_Y"}`), "")
	f.Fuzz(func(t *testing.T, obj []byte, eventParam string) {
		// The fast path, where it answers, agrees with encoding/json.
		if fast, ok := parseRequestFast(obj, eventParam); ok {
			slow, err := parseRequestSlow(obj, eventParam)
			if err != nil || !reflect.DeepEqual(fast, slow) {
				t.Fatalf("fast path %+v %+v, encoding/json %+v %+v %v", fast, fast.Event, slow, slow.Event, err)
			}
		}
		req, err := ParseRequest(obj, eventParam)
		if err != nil {
			var re *RequestError
			if !errors.As(err, &re) {
				t.Fatalf("error %v is not a RequestError", err)
			}
			return
		}
		if err := req.Event.Validate(); err != nil {
			t.Fatalf("accepted an invalid event: %v", err)
		}
		// The event owns its strings: the listener reuses obj's memory.
		was := fmt.Sprintf("%+v", *req.Event)
		for i := range obj {
			obj[i] = 'x'
		}
		if now := fmt.Sprintf("%+v", *req.Event); now != was {
			t.Fatalf("the event changed with the request's buffer: %s, was %s", now, was)
		}
		req.Event.Seq = 1
		again, err := ParseRequest((&Message{Request: true}).Append(nil, req.Event), "")
		if err != nil {
			t.Fatalf("re-encoded event does not parse: %v", err)
		}
		if again.Event.Name != req.Event.Name || fmt.Sprint(again.Event.Params) != fmt.Sprint(req.Event.Params) {
			t.Fatalf("round trip: %+v != %+v", again.Event, req.Event)
		}
	})
}
