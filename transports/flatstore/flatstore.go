// Package flatstore is the transport of OpenSIPS's event_flatstore module:
// socket flatstore:/path/to/file. Each event is one line appended to the
// file: NAME,v1,v2 (values only, in order), with a configurable delimiter,
// suppress_event_name to drop "NAME,", and the delimiter or a line break
// inside a value replaced by escape_delimiter (a space by default).
//
// In reliable mode the file is fsynced before the events count as
// delivered; otherwise they count once written. Reopen makes every
// flatstore transport reopen its file before its next write, for log
// rotation: evq calls it on SIGHUP and on "evq flatstore reopen".
package flatstore

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"

	"github.com/evq/evq"
)

var _ evq.Transport = (*Transport)(nil)

// generation counts Reopen calls; a transport whose file was opened in an
// older generation reopens it.
var generation atomic.Uint64

// Reopen makes every flatstore transport reopen its file before its next
// write, so that a rotated file is let go and a new one created.
func Reopen() { generation.Add(1) }

// Transport appends events to one file.
type Transport struct {
	path     string
	delim    string
	escape   string
	noName   bool
	reliable bool

	f   *os.File
	gen uint64
	buf []byte
}

// New returns a Transport for sock (scheme flatstore). It does not open the
// file until the first Send.
func New(sock evq.Socket, opts evq.Options) (*Transport, error) {
	if sock.Scheme != "flatstore" {
		return nil, fmt.Errorf("flatstore transport: %w: scheme %q", evq.ErrInvalidSocket, sock.Scheme)
	}
	t := &Transport{path: sock.Path, delim: opts.Delimiter, escape: opts.EscapeDelimiter,
		noName: opts.SuppressEventName, reliable: opts.Reliable}
	if t.delim == "" {
		t.delim = evq.DefaultDelimiter
	}
	if t.escape == "" {
		t.escape = " "
	}
	if strings.Contains(t.escape, t.delim) || strings.ContainsAny(t.delim+t.escape, "\n\r") {
		return nil, fmt.Errorf("flatstore %s: %w: delimiter %q and escape_delimiter %q: the escape may not contain the delimiter, and neither may hold a line break",
			sock.Path, evq.ErrInvalidOptions, t.delim, t.escape)
	}
	return t, nil
}

// AppendLine appends ev's line, newline included.
func (t *Transport) AppendLine(b []byte, ev *evq.Event) []byte {
	first := true
	if !t.noName {
		b = append(b, ev.Name...)
		first = false
	}
	for _, p := range ev.Params {
		if !first {
			b = append(b, t.delim...)
		}
		first = false
		b = t.appendValue(b, p.Value.Text())
	}
	return append(b, '\n')
}

func (t *Transport) appendValue(b []byte, v string) []byte {
	for len(v) > 0 {
		i := strings.IndexAny(v, "\n\r")
		j := strings.Index(v, t.delim)
		switch {
		case i < 0 && j < 0:
			return append(b, v...)
		case j >= 0 && (i < 0 || j < i):
			b = append(append(b, v[:j]...), t.escape...)
			v = v[j+len(t.delim):]
		default:
			b = append(append(b, v[:i]...), t.escape...)
			v = v[i+1:]
		}
	}
	return b
}

// Send appends one line per event in one write; in reliable mode it
// fsyncs before it reports them delivered.
func (t *Transport) Send(ctx context.Context, events []*evq.Event) (int, error) {
	if len(events) == 0 {
		return 0, nil
	}
	if g := generation.Load(); t.f != nil && g != t.gen {
		t.Close() // rotated: let the old file go
	}
	if t.f == nil {
		gen := generation.Load()
		f, err := os.OpenFile(t.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return 0, fmt.Errorf("open %s: %w", t.path, err)
		}
		t.f, t.gen = f, gen
	}
	t.buf = t.buf[:0]
	for _, ev := range events {
		t.buf = t.AppendLine(t.buf, ev)
	}
	if _, err := t.f.Write(t.buf); err != nil {
		// A short write leaves a partial line; the retry writes the
		// events again, whole. Close so the retry reopens.
		t.Close()
		return 0, fmt.Errorf("append to %s: %w", t.path, err)
	}
	if t.reliable {
		if err := t.f.Sync(); err != nil {
			t.Close()
			return 0, fmt.Errorf("fsync %s: %w", t.path, err)
		}
	}
	return len(events), nil
}

// Close closes the file.
func (t *Transport) Close() error {
	if t.f == nil {
		return nil
	}
	err := t.f.Close()
	t.f = nil
	return err
}
