package xmlrpc

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/transports/stream"
)

// ListenerStats count what a listener stored and refused.
type ListenerStats struct {
	Accepted, Rejected, StoreFailed atomic.Uint64
}

// Listener is an HTTP server that takes the requests OpenSIPS's event_xmlrpc
// posts: the first param is the event name, and the others are values with
// a <name> before them, or one-member structs (use_struct_param), or bare
// values (unnamed). The answer, a methodResponse holding the event's seq, is
// written only after the event is fsynced; an event that could not be read
// or stored gets a <fault>.
type Listener struct {
	ln    net.Listener
	srv   *http.Server
	r     evq.Raiser
	stats ListenerStats
	done  chan struct{}
}

// maxRequest bounds one request body.
const maxRequest = 1 << 20

// Listen starts an XML-RPC listener on addr (host:port).
func Listen(addr string, r evq.Raiser, logger *slog.Logger) (*Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen xmlrpc:%s: %w", addr, err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	l := &Listener{ln: ln, r: r, done: make(chan struct{})}
	l.srv = &http.Server{Handler: l, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	go func() { l.srv.Serve(ln); close(l.done) }()
	return l, nil
}

// Addr returns the listening address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Stats returns the listener's counters.
func (l *Listener) Stats() *ListenerStats { return &l.stats }

// Close stops accepting and waits for requests in progress (their events are
// stored and answered).
func (l *Listener) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := l.srv.Shutdown(ctx)
	<-l.done
	return err
}

func (l *Listener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "evq takes XML-RPC events as POST requests", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequest+1))
	if err == nil && len(body) > maxRequest {
		err = fmt.Errorf("request over %d bytes", maxRequest)
	}
	var ev *evq.Event
	if err == nil {
		ev, err = ParseCall(body)
	}
	if err != nil {
		l.stats.Rejected.Add(1)
		writeFault(w, stream.CodeInvalidRequest, "event not read: "+err.Error())
		return
	}
	if err := l.r.RaiseBatch(r.Context(), []*evq.Event{ev}); err != nil {
		l.stats.StoreFailed.Add(1)
		writeFault(w, stream.CodeServerError, "event not stored: "+err.Error())
		return
	}
	l.stats.Accepted.Add(1)
	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, "<?xml version=\"1.0\"?>\n<methodResponse><params><param><value><i8>%d</i8></value></param></params></methodResponse>", ev.Seq)
}

func writeFault(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/xml")
	b := []byte("<?xml version=\"1.0\"?>\n<methodResponse><fault><value><struct><member><name>faultCode</name><value><int>")
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, "</int></value></member><member><name>faultString</name><value><string>"...)
	b = appendEscaped(b, msg)
	b = append(b, "</string></value></member></struct></value></fault></methodResponse>"...)
	w.Write(b)
}

type xmlValue struct {
	String  *string   `xml:"string"`
	Int     *string   `xml:"int"`
	I4      *string   `xml:"i4"`
	I8      *string   `xml:"i8"`
	Double  *string   `xml:"double"`
	Boolean *string   `xml:"boolean"`
	Nil     *struct{} `xml:"nil"`
	Struct  *struct {
		Members []struct {
			Name  string   `xml:"name"`
			Value xmlValue `xml:"value"`
		} `xml:"member"`
	} `xml:"struct"`
	Text string `xml:",chardata"` // a value with no type is a string
}

func (v *xmlValue) value() (evq.Value, error) {
	trim := strings.TrimSpace
	switch {
	case v.String != nil:
		return evq.String(*v.String), nil
	case v.Int != nil || v.I4 != nil || v.I8 != nil:
		s := v.Int
		if s == nil {
			s = v.I4
		}
		if s == nil {
			s = v.I8
		}
		n, err := strconv.ParseInt(trim(*s), 10, 64)
		if err != nil {
			// OpenSIPS writes negative integers as their unsigned 64-bit form.
			u, uerr := strconv.ParseUint(trim(*s), 10, 64)
			if uerr != nil {
				return evq.Value{}, fmt.Errorf("integer %q", *s)
			}
			n = int64(u)
		}
		return evq.Int(n), nil
	case v.Double != nil:
		return evq.Float(trim(*v.Double))
	case v.Boolean != nil:
		return evq.Bool(trim(*v.Boolean) == "1"), nil
	case v.Nil != nil:
		return evq.Null(), nil
	case v.Struct != nil:
		return evq.Value{}, errors.New("a struct where a value should be")
	default:
		return evq.String(v.Text), nil
	}
}

// ParseCall reads an event from an event_xmlrpc methodCall.
func ParseCall(body []byte) (*evq.Event, error) {
	var call struct {
		XMLName xml.Name
		Params  []struct {
			Name  *string  `xml:"name"`
			Value xmlValue `xml:"value"`
		} `xml:"params>param"`
	}
	if err := xml.Unmarshal(body, &call); err != nil {
		return nil, fmt.Errorf("not XML-RPC: %w", err)
	}
	if call.XMLName.Local != "methodCall" {
		return nil, fmt.Errorf("a <%s>, not a <methodCall>", call.XMLName.Local)
	}
	if len(call.Params) == 0 || call.Params[0].Value.String == nil && call.Params[0].Value.Text == "" {
		return nil, errors.New("the first param must be the event name")
	}
	first, _ := call.Params[0].Value.value()
	ev := &evq.Event{Name: first.Str}
	for i, p := range call.Params[1:] {
		name := ""
		var v evq.Value
		var err error
		switch {
		case p.Value.Struct != nil:
			if len(p.Value.Struct.Members) != 1 {
				return nil, fmt.Errorf("param %d: a struct of %d members (use_struct_param sends one)", i+1, len(p.Value.Struct.Members))
			}
			m := p.Value.Struct.Members[0]
			name = m.Name
			v, err = m.Value.value()
		default:
			if p.Name != nil {
				name = *p.Name
			}
			v, err = p.Value.value()
		}
		if err != nil {
			return nil, fmt.Errorf("param %d: %w", i+1, err)
		}
		if i == 0 {
			ev.Named = name != ""
		}
		if (name != "") != ev.Named {
			return nil, fmt.Errorf("param %d: named and unnamed params mixed", i+1)
		}
		ev.Params = append(ev.Params, evq.Param{Name: name, Value: v})
	}
	if err := ev.Validate(); err != nil {
		return nil, err
	}
	return ev, nil
}
