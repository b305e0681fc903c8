package recovery_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/evq/evq/internal/evqtest"
)

// TestDiskFull runs evq with its file-size limit lowered to the size of its
// store, as a full disk: raises fail with HTTP 507 and a clear message,
// stored events keep flowing to a subscriber, and once the limit is lifted
// raises succeed again, with nothing lost or damaged.
func TestDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("runs evq as a child process")
	}
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("prlimit (util-linux) is not installed: cannot change the limits of a running evq")
	}
	setLimit := func(pid int, limit string) {
		t.Helper()
		if out, err := exec.Command(prlimit, "--pid", fmt.Sprint(pid), "--fsize="+limit).CombinedOutput(); err != nil {
			t.Skipf("prlimit: %v %s", err, out)
		}
	}
	bin := evqtest.BuildEvq(t, "..")
	data := filepath.Join(t.TempDir(), "data")
	srv := evqtest.StartServer(t, bin, data)
	r := evqtest.NewReceiver(t)
	if err := srv.Call("POST", "/v1/subscriptions", map[string]any{"event": "E_CDR", "socket": r.Socket(), "reliable": true}, nil); err != nil {
		t.Fatal(err)
	}
	r.Stop() // a backlog builds up
	big := `{"event":"E_CDR","params":{"p":"` + strings.Repeat("x", 60000) + `"}}`
	var acked []uint64
	raise := func() error {
		var out struct{ Seq uint64 }
		err := srv.Call("POST", "/v1/events", big, &out)
		if err == nil {
			acked = append(acked, out.Seq)
		}
		return err
	}
	for range 20 {
		if err := raise(); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(filepath.Join(data, "evq.db"))
	if err != nil {
		t.Fatal(err)
	}
	setLimit(srv.PID(), fmt.Sprintf("%d:unlimited", fi.Size())) // the disk is full now
	var full error
	for i := 0; i < 5000 && full == nil; i++ {
		full = raise()
	}
	if full == nil || !strings.Contains(full.Error(), "HTTP 507") || !strings.Contains(full.Error(), "storage full") {
		t.Fatalf("raise on a full disk: %v", full)
	}
	// Delivery of what is stored goes on while the disk is full.
	r.Restart()
	r.WaitFor(len(acked), 30*time.Second)

	setLimit(srv.PID(), "unlimited:unlimited") // space is back
	if err := raise(); err != nil {
		t.Fatalf("raise after space returned: %v", err)
	}
	srv.Stop()
	if out, err := exec.Command(bin, "check", "--data", data).CombinedOutput(); err != nil {
		t.Fatalf("evq check after a full disk: %v\n%s", err, out)
	}
	srv.Restart()
	srv.WaitCaughtUp(30 * time.Second)
	seen := make(map[uint64]bool)
	for _, q := range r.Requests() {
		seen[*q.ID] = true
	}
	for _, s := range acked {
		if !seen[s] {
			t.Fatalf("acknowledged seq %d was not delivered", s)
		}
	}
	t.Logf("%d acknowledged raises, full after %d, all delivered", len(acked), len(acked)-1)
	srv.Stop()
}
