package load

import "testing"

func TestRequestID(t *testing.T) {
	for _, tc := range []struct {
		obj string
		id  uint64
		ok  bool
	}{
		{`{"jsonrpc":"2.0","method":"E_X","params":{"a":"b"},"id":42}`, 42, true},
		{`{"id":1225711609,"jsonrpc":"2.0","method":"E_X","params":{"id":"x"}}`, 1225711609, true}, // as OpenSIPS and evq write it
		{`{"id":5}`, 5, true},
		{`{"id":5x,"method":"E_X"}`, 0, false},
		{`{"id":"5","method":"E_X"}`, 0, false},                                   // a string id: left to ParseReply
		{`{"id":123456789012345678901,"method":"E_X"}`, 0, false},                 // over uint64
		{`{"jsonrpc":"2.0","method":"E_X","params":{"id":7}}`, 0, false},          // nested: not the request's id
		{`{"jsonrpc":"2.0","method":"E_X","params":{"a":"x\"id\":9"}}`, 0, false}, // inside a string
		{`{"method":"E_X","id": 42}`, 0, false},                                   // spaced: left to ParseReply
		{`{"method":"E_X","id":123456789012345678901}`, 0, false},                 // over uint64
		{`{"method":"E_X"}`, 0, false},
		{``, 0, false},
	} {
		id, ok := RequestID([]byte(tc.obj))
		if id != tc.id || ok != tc.ok {
			t.Errorf("RequestID(%s) = %d, %v; want %d, %v", tc.obj, id, ok, tc.id, tc.ok)
		}
	}
}
