package recovery_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/evq/evq/internal/evqtest"
)

// TestDamagedStore damages a stopped evq's store two ways, a cut-short file
// and corrupt meta pages: evq check reports it and exits non-zero, and evq
// serve refuses to start with a message that says what to do, instead of
// crashing or dropping data.
func TestDamagedStore(t *testing.T) {
	if testing.Short() {
		t.Skip("runs evq as a child process")
	}
	bin := evqtest.BuildEvq(t, "..")
	for _, tt := range []struct {
		name   string
		damage func(t *testing.T, path string)
		want   string
	}{
		{"Truncated", func(t *testing.T, path string) {
			// bbolt grows its file in 16 MiB steps, so cutting off the sparse
			// tail loses nothing; cut into the pages in use (about 1.2 MiB).
			if err := os.Truncate(path, 256<<10); err != nil {
				t.Fatal(err)
			}
		}, "it was cut short"},
		{"FlippedMetaBytes", func(t *testing.T, path string) {
			// bbolt keeps two meta pages and falls back to the older one:
			// damage both, at the same byte of each.
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for _, off := range []int64{16 + 40, 4096 + 16 + 40} {
				b := make([]byte, 1)
				f.ReadAt(b, off)
				b[0] ^= 0xff
				f.WriteAt(b, off)
			}
		}, "store is damaged"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			srv := evqtest.StartServer(t, bin, data)
			big := strings.Repeat("x", 4000)
			for i := 0; i < 300; i++ {
				if err := srv.Call("POST", "/v1/events", `{"event":"E_CDR","params":{"p":"`+big+`"}}`, nil); err != nil {
					t.Fatal(err)
				}
			}
			srv.Stop()
			path := filepath.Join(data, "evq.db")
			if out, err := exec.Command(bin, "check", "--data", data).CombinedOutput(); err != nil {
				t.Fatalf("evq check on a healthy store: %v\n%s", err, out)
			}
			tt.damage(t, path)

			out, err := exec.Command(bin, "check", "--data", data).CombinedOutput()
			if err == nil || !strings.Contains(string(out), tt.want) || strings.Contains(string(out), "panic") {
				t.Errorf("evq check on a damaged store: %v\n%s", err, out)
			}
			serve := exec.Command(bin, "serve", "--data", data, "--http", evqtest.FreeAddr(t))
			serve.WaitDelay = time.Second
			timer := time.AfterFunc(20*time.Second, func() { serve.Process.Kill() }) // if it wrongly starts serving
			out, err = serve.CombinedOutput()
			timer.Stop()
			if err == nil || !strings.Contains(string(out), "refusing to start on a damaged store") ||
				!strings.Contains(string(out), "evq check --data") || strings.Contains(string(out), "panic") {
				t.Errorf("evq serve on a damaged store: %v\n%s", err, out)
			}
		})
	}
}
