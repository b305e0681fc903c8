package evqtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildBin  string
	buildErr  error
)

// BuildEvq builds cmd/evq once per test binary and returns its path. root is
// the module root relative to the calling package (such as "../..").
func BuildEvq(tb testing.TB, root string) string {
	tb.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "evq-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildBin = filepath.Join(dir, "evq")
		cmd := exec.Command("go", "build", "-o", buildBin, "./cmd/evq")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/evq: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return buildBin
}

// Server is evq serve running as a child process.
type Server struct {
	tb   testing.TB
	bin  string
	Data string
	URL  string
	addr string
	args []string
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{}
}

// syncBuffer is a bytes.Buffer that exec's copier writes while a test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// FreeAddr returns a 127.0.0.1 address that was free a moment ago.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// StartServer runs "evq serve" on data with a free HTTP port and waits until
// it answers /healthz. It is killed at cleanup if still running.
func StartServer(tb testing.TB, bin, data string, args ...string) *Server {
	tb.Helper()
	addr := FreeAddr(tb)
	s := &Server{tb: tb, bin: bin, Data: data, URL: "http://" + addr, addr: addr, args: args}
	s.start()
	tb.Cleanup(func() {
		if s.cmd != nil {
			s.Kill()
		}
	})
	return s
}

func (s *Server) start() {
	s.tb.Helper()
	args := append([]string{"serve", "--data", s.Data, "--http", s.addr}, s.args...)
	s.cmd = exec.Command(s.bin, args...)
	s.logs = &syncBuffer{}
	s.cmd.Stdout = s.logs
	s.cmd.Stderr = s.logs
	if err := s.cmd.Start(); err != nil {
		s.tb.Fatal(err)
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(s.cmd, s.done)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(s.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case <-s.done:
			s.tb.Fatalf("evq serve exited at start:\n%s", s.logs)
		default:
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("evq serve did not answer /healthz within 20s:\n%s", s.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// PID returns the server's process id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Signal sends sig to the server process.
func (s *Server) Signal(sig os.Signal) {
	s.tb.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.tb.Fatal(err)
	}
}

// Kill sends SIGKILL and waits for the process to die.
func (s *Server) Kill() {
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
	s.cmd = nil
}

// Stop sends SIGTERM and waits for a graceful exit, which must be clean.
func (s *Server) Stop() {
	s.tb.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.tb.Fatalf("evq serve did not stop within 30s of SIGTERM:\n%s", s.logs)
	}
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		s.tb.Fatalf("evq serve exited %d after SIGTERM:\n%s", code, s.logs)
	}
	s.cmd = nil
}

// Restart starts the server again on the same data and address.
func (s *Server) Restart() { s.tb.Helper(); s.start() }

// Logs returns what the server printed so far.
func (s *Server) Logs() string { return s.logs.String() }

// Call sends a JSON body to the API and decodes the reply into out (if not
// nil). A status of 300 or more is an error carrying the body.
func (s *Server) Call(method, path string, body any, out any) error {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, s.URL+path, rd)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// WaitCaughtUp waits until every subscription's lag is 0: everything stored
// was delivered.
func (s *Server) WaitCaughtUp(timeout time.Duration) {
	s.tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var out struct {
			Subscriptions []struct {
				ID  uint64
				Lag uint64
			}
		}
		if err := s.Call("GET", "/v1/subscriptions", nil, &out); err != nil {
			s.tb.Fatal(err)
		}
		behind := 0
		for _, st := range out.Subscriptions {
			if st.Lag > 0 {
				behind++
			}
		}
		if behind == 0 {
			return
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("subscriptions still behind after %s: %+v", timeout, out.Subscriptions)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
