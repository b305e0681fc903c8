package xmlrpc_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/evq/evq"
	"github.com/evq/evq/internal/evqtest"
	"github.com/evq/evq/transports/transporttest"
	"github.com/evq/evq/transports/xmlrpc"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newTransport(t *testing.T, socket string, opts evq.Options) *xmlrpc.Transport {
	t.Helper()
	sock, err := evq.ParseSocket(socket)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := xmlrpc.New(sock, opts)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// pythonServer is Python's standard xmlrpc.server: a receiver not written by
// us. It prints the args of every call as a JSON line, and answers the first
// `faults` calls with a fault.
const pythonServer = `
import sys, json
from xmlrpc.server import SimpleXMLRPCServer, SimpleXMLRPCRequestHandler
class H(SimpleXMLRPCRequestHandler):
    rpc_paths = ('/RPC2',)
srv = SimpleXMLRPCServer(("127.0.0.1", 0), requestHandler=H, allow_none=True, logRequests=False)
state = {"faults": int(sys.argv[2])}
def handle(*args):
    if state["faults"] > 0:
        state["faults"] -= 1
        raise Exception("refused by test")
    print(json.dumps(args), flush=True)
    return True
srv.register_function(handle, sys.argv[1])
print("ready", srv.server_address[1], flush=True)
srv.serve_forever()
`

func startPython(t *testing.T, method string, faults int) (port string, calls <-chan []any) {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed: the test against Python's xmlrpc.server needs it")
	}
	cmd := exec.Command(py, "-c", pythonServer, method, strconv.Itoa(faults))
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := make(chan []any, 100)
	sc := bufio.NewScanner(out)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "ready ") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("python server did not start: %q", sc.Text())
	}
	port = strings.TrimPrefix(sc.Text(), "ready ")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for sc.Scan() {
			var args []any
			if err := json.Unmarshal(sc.Bytes(), &args); err != nil {
				t.Errorf("python printed %q: %v", sc.Text(), err)
				continue
			}
			ch <- args
		}
	}()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); <-done })
	return port, ch
}

func TestPythonServer(t *testing.T) {
	port, calls := startPython(t, "evq.notify", 1)
	tricky := "he said \"hi\" <a href='x'>&amp; & </a>\nline2\ttab\r ünïcødé ✓ 😀 /"
	named := &evq.Event{Seq: 1, Name: "E_ACC_CDR", Named: true, Params: []evq.Param{
		{Name: "s", Value: evq.String(tricky)}, {Name: "neg", Value: evq.Int(-7)}, {Name: "big", Value: evq.Int(1 << 40)}}}
	unnamed := &evq.Event{Seq: 2, Name: "E_U", Params: []evq.Param{{Value: evq.String("a")}, {Value: evq.Int(3)}}}
	none := &evq.Event{Seq: 3, Name: "E_NONE"}

	for _, useStruct := range []bool{false, true} {
		tr := newTransport(t, fmt.Sprintf("xmlrpc:127.0.0.1:%s:evq.notify", port), evq.Options{Reliable: true, UseStructParam: useStruct, Timeout: 5 * time.Second})
		if !useStruct {
			// The first call gets a fault: a reliable failure, to retry.
			n, err := tr.Send(context.Background(), []*evq.Event{named})
			if n != 0 || err == nil || !strings.Contains(err.Error(), "refused by test") {
				t.Fatalf("fault: n=%d err=%v", n, err)
			}
		}
		if n, err := tr.Send(context.Background(), []*evq.Event{named, unnamed, none}); n != 3 || err != nil {
			t.Fatalf("n=%d err=%v", n, err)
		}
		got := []string{}
		for range 3 {
			select {
			case args := <-calls:
				b, _ := json.Marshal(args)
				got = append(got, string(b))
			case <-time.After(10 * time.Second):
				t.Fatal("python server received nothing")
			}
		}
		ts, _ := json.Marshal(tricky)
		wantNamed := fmt.Sprintf(`["E_ACC_CDR","s",%s,"neg",-7,"big",1099511627776]`, ts)
		if useStruct {
			wantNamed = fmt.Sprintf(`["E_ACC_CDR",{"s":%s},{"neg":-7},{"big":1099511627776}]`, ts)
		}
		want := []string{wantNamed, `["E_U","a",3]`, `["E_NONE"]`}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("use_struct_param=%v call %d:\n got %s\nwant %s", useStruct, i, got[i], want[i])
			}
		}
	}
}

var indexRE = regexp.MustCompile(`<name>i</name>\n<value><int>(\d+)</int>`)

func TestConformance(t *testing.T) {
	for _, reliable := range []bool{false, true} {
		t.Run(map[bool]string{false: "Notify", true: "Reliable"}[reliable], func(t *testing.T) {
			transporttest.Run(t, transporttest.Harness{
				NewPeer: func(t *testing.T) transporttest.Peer { return evqtest.NewXMLRPCReceiver(t) },
				New: func(t *testing.T, socket string) evq.Transport {
					return newTransport(t, socket, evq.Options{Reliable: reliable, Timeout: 300 * time.Millisecond})
				},
				DetectsDown: true, // a connection per event: a stopped peer refuses it
				Reliable:    reliable,
				Index: func(payload []byte) (int, error) {
					m := indexRE.FindSubmatch(payload)
					if m == nil {
						return 0, fmt.Errorf("no param i in %s", payload)
					}
					return strconv.Atoi(string(m[1]))
				},
			})
		})
	}
}
