package flatstore_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/evq/evq"
	"github.com/evq/evq/transports/flatstore"
	"github.com/evq/evq/transports/transporttest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newTransport(t *testing.T, socket string, opts evq.Options) *flatstore.Transport {
	t.Helper()
	sock, err := evq.ParseSocket(socket)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := flatstore.New(sock, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func TestGolden(t *testing.T) {
	strInt := &evq.Event{Name: "E_EVQ_TEST", Named: true, Params: []evq.Param{
		{Name: "str", Value: evq.String("hello")}, {Name: "int", Value: evq.Int(42)}, {Name: "neg", Value: evq.Int(-7)}}}
	named := &evq.Event{Name: "E_EVQ_TEST", Named: true, Params: []evq.Param{
		{Name: "str", Value: evq.String("hello")}, {Name: "int", Value: evq.Int(42)}}}
	for _, tt := range []struct {
		file string
		ev   *evq.Event
		opts evq.Options
	}{
		{"A_named_str_int.flatstore.txt", strInt, evq.Options{}},
		{"C_named.flatstore.txt", named, evq.Options{Delimiter: ";"}},
		{"D_named.flatstore.txt", named, evq.Options{SuppressEventName: true}},
	} {
		want, err := os.ReadFile(filepath.Join("..", "..", "testdata", "opensips", tt.file))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "events.log")
		tr := newTransport(t, "flatstore:"+path, tt.opts)
		if n, err := tr.Send(context.Background(), []*evq.Event{tt.ev}); n != 1 || err != nil {
			t.Fatal(n, err)
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, want) {
			t.Errorf("%s: got %q, want %q", tt.file, got, want)
		}
	}
}

func TestEscape(t *testing.T) {
	ev := &evq.Event{Name: "E_X", Params: []evq.Param{{Value: evq.String("a,b\nc\r\nd")}, {Value: evq.Null()}, {Value: evq.Bool(true)}}}
	for _, tt := range []struct {
		opts evq.Options
		want string
	}{
		{evq.Options{}, "E_X,a b c  d,null,true\n"},
		{evq.Options{EscapeDelimiter: "_"}, "E_X,a_b_c__d,null,true\n"},
		{evq.Options{Delimiter: "||"}, "E_X||a,b c  d||null||true\n"},
	} {
		tr := newTransport(t, "flatstore:/dev/null", tt.opts)
		if got := string(tr.AppendLine(nil, ev)); got != tt.want {
			t.Errorf("%+v: got %q, want %q", tt.opts, got, tt.want)
		}
	}
	if _, err := flatstore.New(evq.Socket{Scheme: "flatstore", Path: "/x"}, evq.Options{Delimiter: ",", EscapeDelimiter: ",,"}); err == nil {
		t.Error("an escape holding the delimiter was accepted")
	}
}

func TestMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "such", "dir", "events.log")
	tr := newTransport(t, "flatstore:"+path, evq.Options{})
	n, err := tr.Send(context.Background(), []*evq.Event{{Name: "E_X"}})
	if n != 0 || err == nil || evq.IsPermanent(err) || !strings.Contains(err.Error(), path) {
		t.Fatalf("n=%d err=%v", n, err)
	}
}

// filePeer is a file read back line by line.
type filePeer struct{ path string }

func (p filePeer) Socket() string { return "flatstore:" + p.path }
func (p filePeer) Stop()          {}
func (p filePeer) Restart()       {}
func (p filePeer) Payloads() [][]byte {
	b, _ := os.ReadFile(p.path)
	lines := bytes.Split(b, []byte("\n"))
	return lines[:len(lines)-1]
}

func TestConformance(t *testing.T) {
	for _, reliable := range []bool{false, true} {
		t.Run(map[bool]string{false: "Notify", true: "Reliable"}[reliable], func(t *testing.T) {
			transporttest.Run(t, transporttest.Harness{
				NewPeer: func(t *testing.T) transporttest.Peer { return filePeer{filepath.Join(t.TempDir(), "e.log")} },
				New: func(t *testing.T, socket string) evq.Transport {
					return newTransport(t, socket, evq.Options{Reliable: reliable})
				},
				Index: func(line []byte) (int, error) {
					f := strings.Split(string(line), ",")
					if len(f) != 3 || f[0] != "E_CONFORM" {
						return 0, fmt.Errorf("line %q", line)
					}
					return strconv.Atoi(f[1])
				},
			})
		})
	}
}

// TestReopen_RotationUnderLoad renames the file and calls Reopen while
// events are being appended, as logrotate does, and finds every line exactly
// once across the rotated files, in order.
func TestReopen_RotationUnderLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.log")
	tr := newTransport(t, "flatstore:"+path, evq.Options{})
	const total = 20000
	var wg sync.WaitGroup
	wg.Add(1)
	stop := make(chan struct{})
	go func() {
		defer wg.Done()
		defer close(stop)
		for i := 0; i < total; i += 10 {
			var evs []*evq.Event
			for k := i; k < i+10; k++ {
				evs = append(evs, &evq.Event{Name: "E_R", Params: []evq.Param{{Value: evq.Int(int64(k))}}})
			}
			if n, err := tr.Send(context.Background(), evs); n != 10 || err != nil {
				t.Error(n, err)
				return
			}
		}
	}()
	rotations := 0
	for done := false; !done; {
		select {
		case <-stop:
			done = true
		default:
			if err := os.Rename(path, fmt.Sprintf("%s.%03d", path, rotations)); err == nil {
				rotations++
				flatstore.Reopen()
			}
		}
	}
	wg.Wait()
	var all []byte
	for r := 0; r < rotations; r++ {
		b, err := os.ReadFile(fmt.Sprintf("%s.%03d", path, r))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	if b, err := os.ReadFile(path); err == nil {
		all = append(all, b...)
	}
	lines := strings.Split(strings.TrimSuffix(string(all), "\n"), "\n")
	if len(lines) != total {
		t.Fatalf("%d lines across %d rotations, want %d", len(lines), rotations, total)
	}
	for k, l := range lines {
		if l != fmt.Sprintf("E_R,%d", k) {
			t.Fatalf("line %d is %q", k, l)
		}
	}
	if rotations < 2 {
		t.Fatalf("only %d rotations happened during the load", rotations)
	}
	t.Logf("%d lines across %d rotations", total, rotations)
}

// FuzzAppendLine checks that every event becomes exactly one line that
// splits on the delimiter back into the name and the values, with the
// delimiter and line breaks inside values replaced by the escape.
func FuzzAppendLine(f *testing.F) {
	f.Add("a,b", "c\nd\r", ",", " ", false)
	f.Add("x;;y", "", ";;", "_", true)
	f.Fuzz(func(t *testing.T, v1, v2, delim, escape string, noName bool) {
		tr, err := flatstore.New(evq.Socket{Scheme: "flatstore", Path: "/dev/null"},
			evq.Options{Delimiter: delim, EscapeDelimiter: escape, SuppressEventName: noName})
		if err != nil {
			return // refused combinations are reported at subscribe time
		}
		if delim == "" {
			delim = ","
		}
		if escape == "" {
			escape = " "
		}
		ev := &evq.Event{Name: "E_F", Params: []evq.Param{{Value: evq.String(v1)}, {Value: evq.String(v2)}, {Value: evq.Int(-3)}}}
		line := string(tr.AppendLine(nil, ev))
		if !strings.HasSuffix(line, "\n") || strings.ContainsAny(line[:len(line)-1], "\n\r") {
			t.Fatalf("not one line: %q", line)
		}
		clean := func(s string) string {
			s = strings.ReplaceAll(s, delim, escape)
			return strings.NewReplacer("\r", escape, "\n", escape).Replace(s)
		}
		want := []string{"E_F", clean(v1), clean(v2), clean("-3")} // a delimiter of "-" escapes the sign too
		if noName {
			want = want[1:]
		}
		if got := line[:len(line)-1]; got != strings.Join(want, delim) {
			t.Fatalf("line %q, want %q", got, strings.Join(want, delim))
		}
	})
}
