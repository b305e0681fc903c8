package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "evq.json")
	os.WriteFile(path, []byte(`{"data":"/var/lib/evq","retention":{"min_age":"1h","max_age":86400},
		"defaults":{"reliable":true,"timeout_ms":2500,"delimiter":";","failover_timeout":"10s"}}`), 0o600)
	c := defaultConfig()
	if err := loadConfig(path, &c); err != nil {
		t.Fatal(err)
	}
	o := c.Defaults.options()
	if c.Data != "/var/lib/evq" || c.HTTP != "127.0.0.1:8055" || time.Duration(c.Retention.MinAge) != time.Hour ||
		time.Duration(c.Retention.MaxAge) != 24*time.Hour || !o.Reliable || o.Timeout != 2500*time.Millisecond ||
		o.Delimiter != ";" || o.FailoverTimeout != 10*time.Second {
		t.Fatalf("%+v %+v", c, o)
	}
	os.WriteFile(path, []byte(`{"dta":"x"}`), 0o600)
	if err := loadConfig(path, &c); err == nil || !strings.Contains(err.Error(), `unknown field "dta"`) {
		t.Fatalf("unknown field: %v", err)
	}
	os.WriteFile(path, []byte(`{"retention":{"min_age":"soon"}}`), 0o600)
	if err := loadConfig(path, &c); err == nil || !strings.Contains(err.Error(), "duration") {
		t.Fatalf("bad duration: %v", err)
	}
}
