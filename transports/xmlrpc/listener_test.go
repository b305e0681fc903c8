package xmlrpc_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/internal/evqtest"
	"github.com/evq/evq/queue"
	"github.com/evq/evq/transports/xmlrpc"
)

type logRaiser struct{ l *queue.Log }

func (r logRaiser) RaiseBatch(ctx context.Context, evs []*evq.Event) error {
	return r.l.Append(ctx, evs...)
}

// post writes a raw HTTP request and returns the response body.
func post(t *testing.T, addr string, raw []byte) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write(raw)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestListener_Captures(t *testing.T) {
	l := evqtest.MustOpenLog(t, nil)
	ln, err := xmlrpc.Listen("127.0.0.1:0", evqtest.LogRaiser{Log: l}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for i, file := range []string{"A_named_str_int.xmlrpc_struct0.http", "B_named_str_int.xmlrpc_struct1.http", "A_noparams.xmlrpc_struct0.http"} {
		raw, err := os.ReadFile(filepath.Join("..", "..", "testdata", "opensips", file))
		if err != nil {
			t.Fatal(err)
		}
		code, body := post(t, ln.Addr().String(), raw)
		if want := fmt.Sprintf("<value><i8>%d</i8></value>", i+1); code != 200 || !strings.Contains(body, want) {
			t.Fatalf("%s: %d %s", file, code, body)
		}
	}
	evs, _ := l.Read("E_EVQ_TEST", 0, 10)
	want := fmt.Sprint([]evq.Param{{Name: "str", Value: evq.String("hello")}, {Name: "int", Value: evq.Int(42)}, {Name: "neg", Value: evq.Int(-7)}})
	if len(evs) != 3 || fmt.Sprint(evs[0].Params) != want || fmt.Sprint(evs[1].Params) != want || evs[2].Params != nil {
		t.Fatalf("stored %+v", evs)
	}
}

func TestListener_Faults(t *testing.T) {
	l := evqtest.MustOpenLog(t, nil)
	ln, err := xmlrpc.Listen("127.0.0.1:0", evqtest.LogRaiser{Log: l}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	url := "http://" + ln.Addr().String() + "/RPC2"
	for _, tt := range []struct{ body, want string }{
		{`<methodCall><params><param><value><string>bad name</string></value></param></params></methodCall>`, "event name"},
		{`<methodCall><params></params></methodCall>`, "the first param must be the event name"},
		{`<methodCall><params><param><value><string>E_X</string></value></param>`, "not XML-RPC"},
		{`<methodResponse/>`, "not a &lt;methodCall&gt;"},
		{`<methodCall><params><param><value><string>E_X</string></value></param><param><name>a</name><value>1</value></param><param><value>2</value></param></params></methodCall>`, "mixed"},
	} {
		resp, err := http.Post(url, "text/xml", strings.NewReader(tt.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err := xmlrpc.ParseResponse(b); err == nil || !strings.Contains(string(b), tt.want) {
			t.Errorf("%s: %s", tt.body, b)
		}
	}
	// A well-formed call through evq's own xmlrpc transport is stored.
	sock, _ := evq.ParseSocket("xmlrpc:" + ln.Addr().String() + ":m")
	tr, _ := xmlrpc.New(sock, evq.Options{Reliable: true, UseStructParam: true})
	ev := &evq.Event{Seq: 1, Name: "E_T", Named: true, Params: []evq.Param{{Name: "s", Value: evq.String("<&>")}, {Name: "n", Value: evq.Int(-1 << 40)}}}
	if n, err := tr.Send(context.Background(), []*evq.Event{ev}); n != 1 || err != nil {
		t.Fatal(n, err)
	}
	evs, _ := l.Read("E_T", 0, 10)
	if len(evs) != 1 || fmt.Sprint(evs[0].Params) != fmt.Sprint(ev.Params) {
		t.Fatalf("%+v", evs)
	}
}
