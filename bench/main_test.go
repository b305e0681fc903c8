package bench

import (
	"log/slog"
	"os"
	"testing"
)

// TestMain keeps benchmark output readable: evq's logs (breaker changes,
// retries) go nowhere.
func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}
