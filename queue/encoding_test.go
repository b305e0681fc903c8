package queue

import (
	"math"
	"testing"

	"github.com/evq/evq"
)

func TestEncodedSize(t *testing.T) {
	f, _ := evq.Float("-1.5e300")
	for _, ev := range []*evq.Event{
		{Name: "E"},
		{Name: "E", Named: true, Params: []evq.Param{{Name: "a", Value: evq.String("")}, {Name: string(make([]byte, 300)), Value: evq.Int(math.MinInt64)},
			{Name: "c", Value: evq.Int(math.MaxInt64)}, {Name: "d", Value: evq.Int(-1)}, {Name: "e", Value: evq.Int(64)}, {Name: "f", Value: f},
			{Name: "g", Value: evq.Bool(true)}, {Name: "h", Value: evq.Null()}}},
		{Name: "E", Params: []evq.Param{{Value: evq.String(string(make([]byte, 70000)))}, {Value: evq.Int(-64)}, {Value: evq.Int(-65)}}},
	} {
		if got, want := encodedSize(ev), len(encodeEvent(nil, ev)); got != want {
			t.Errorf("encodedSize %d, encoding is %d bytes", got, want)
		}
	}
}

func FuzzEventEncoding(f *testing.F) {
	f.Add("E_X", "k", "v", int64(-3), true)
	f.Fuzz(func(t *testing.T, name, k, v string, n int64, named bool) {
		ev := &evq.Event{Name: name, Named: named, Params: []evq.Param{{Value: evq.String(v)}, {Value: evq.Int(n)}}}
		if named {
			ev.Params[0].Name, ev.Params[1].Name = k, k+"2"
		}
		enc := encodeEvent(nil, ev)
		if len(enc) != encodedSize(ev) {
			t.Fatalf("size %d, encoded %d", encodedSize(ev), len(enc))
		}
		got, err := decodeEvent(name, 7, enc)
		if err != nil {
			t.Fatal(err)
		}
		if got.Named != named || got.Params[0] != ev.Params[0] || got.Params[1] != ev.Params[1] {
			t.Fatalf("%+v != %+v", got, ev)
		}
		decodeEvent(name, 7, enc[:len(enc)/2]) // must not panic on a torn record
	})
}

// Events whose params come from one arena and whose strings are cut from
// one copy of their records equal those decoded alone, and stay intact while
// the arena grows new chunks under them.
func TestDecodeIntoSharedMemory(t *testing.T) {
	ps := &params{hint: 1000}
	var encs [][]byte
	var all []byte
	var got []*evq.Event
	for i := 0; i < 1000; i++ {
		ev := &evq.Event{Name: "E", Named: true, Params: []evq.Param{
			{Name: "i", Value: evq.Int(int64(i))}, {Name: "s", Value: evq.String(string(make([]byte, i%300)) + "end")}}}
		if i%7 == 0 {
			ev.Params = append(ev.Params, evq.Param{Name: "big", Value: evq.String(string(make([]byte, 70000)))})
		}
		enc := encodeEvent(nil, ev)
		encs = append(encs, enc)
		all = append(all, enc...)
	}
	str, off := string(all), 0
	for i, enc := range encs {
		d := new(evq.Event)
		if err := decodeInto(ps, d, "E", uint64(i+1), enc, str[off:off+len(enc)]); err != nil {
			t.Fatal(err)
		}
		off += len(enc)
		got = append(got, d)
	}
	clear(all)
	for i, enc := range encs {
		want, err := decodeEvent("E", uint64(i+1), enc)
		if err != nil {
			t.Fatal(err)
		}
		if len(got[i].Params) != len(want.Params) || got[i].Seq != want.Seq || !got[i].Time.Equal(want.Time) {
			t.Fatalf("event %d: %+v, want %+v", i, got[i], want)
		}
		for k := range want.Params {
			if got[i].Params[k] != want.Params[k] {
				t.Fatalf("event %d param %d differs", i, k)
			}
		}
	}
	torn := encs[3][:len(encs[3])/2]
	if err := decodeInto(ps, new(evq.Event), "E", 1, torn, string(torn)); err == nil {
		t.Fatal("a torn record decoded")
	}
}
