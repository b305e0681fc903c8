package evqtest

import (
	"os/signal"
	"syscall"
	"testing"
)

// LimitFileSize makes this process's writes past n bytes of any file fail
// with EFBIG, as a full disk would, until the returned func restores the
// limit. Tests using it must not run in parallel with others.
func LimitFileSize(tb testing.TB, n uint64) (restore func()) {
	tb.Helper()
	signal.Ignore(syscall.SIGXFSZ)
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		tb.Skipf("getrlimit: %v", err)
	}
	lim := old
	lim.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		tb.Skipf("setrlimit: %v", err)
	}
	return func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
			tb.Fatal(err)
		}
		signal.Reset(syscall.SIGXFSZ)
	}
}
