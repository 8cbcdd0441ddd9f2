package node

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
)

// keepMemoryLimit restores the test process's soft memory limit.
func keepMemoryLimit(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
}

// TestMemoryLimit_appliedFromConfig: --memory-limit-bytes becomes the
// runtime's soft limit, 0 removes it, and GOMEMLIMIT (applied by the
// runtime at start) wins over the flag.
func TestMemoryLimit_appliedFromConfig(t *testing.T) {
	keepMemoryLimit(t)
	noEnv := func(string) string { return "" }
	cfg := DefaultConfig()
	if cfg.MemoryLimitBytes != DefaultMemoryLimit {
		t.Fatalf("default %d", cfg.MemoryLimitBytes)
	}
	debug.SetMemoryLimit(math.MaxInt64)
	if l, src := applyMemoryLimit(cfg, noEnv); l != DefaultMemoryLimit || src != "--memory-limit-bytes" || debug.SetMemoryLimit(-1) != DefaultMemoryLimit {
		t.Fatalf("default: %d from %s; runtime %d", l, src, debug.SetMemoryLimit(-1))
	}
	cfg.MemoryLimitBytes = 0
	if l, _ := applyMemoryLimit(cfg, noEnv); l != math.MaxInt64 || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Fatalf("0: %d; runtime %d", l, debug.SetMemoryLimit(-1))
	}
	debug.SetMemoryLimit(77 << 20) // as the runtime does with GOMEMLIMIT=77MiB
	cfg.MemoryLimitBytes = 200 << 20
	env := func(k string) string {
		if k == "GOMEMLIMIT" {
			return "77MiB"
		}
		return ""
	}
	if l, src := applyMemoryLimit(cfg, env); l != 77<<20 || src != "GOMEMLIMIT" || debug.SetMemoryLimit(-1) != 77<<20 {
		t.Fatalf("GOMEMLIMIT: %d from %s; runtime %d", l, src, debug.SetMemoryLimit(-1))
	}
}

// TestMain_appliesMemoryLimit: the daemon applies the flag before it starts
// the node, and logs the limit in effect.
func TestMain_appliesMemoryLimit(t *testing.T) {
	keepMemoryLimit(t)
	t.Setenv("GOMEMLIMIT", "")
	debug.SetMemoryLimit(math.MaxInt64)
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	// The data dir is a file: the node fails right after the limit is set.
	if code := Main([]string{"serve", "--data-dir", notADir, "--memory-limit-bytes", "123456789"}, &out); code != ExitError {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	if got := debug.SetMemoryLimit(-1); got != 123456789 {
		t.Fatalf("runtime soft limit %d, want 123456789", got)
	}
	if !strings.Contains(out.String(), `"limit_bytes":123456789`) || !strings.Contains(out.String(), `"msg":"MEMORY_LIMIT"`) {
		t.Fatalf("no MEMORY_LIMIT line with the limit:\n%s", out.String())
	}
	if code := Main([]string{"serve", "--data-dir", notADir, "--memory-limit-bytes", "1000"}, &out); code != ExitUsage ||
		!strings.Contains(out.String(), "--memory-limit-bytes=1000") {
		t.Fatalf("a limit below 32 MiB: exit %d\n%s", code, out.String())
	}
}

// A byte bound of the idempotency index that leaves less than the node's
// other needs under the soft limit is logged, once per pair.
func TestMemoryLimit_tightIdempotencyBound(t *testing.T) {
	keepMemoryLimit(t)
	for _, c := range []struct {
		limit, idem int64
		tight       bool
	}{
		{DefaultMemoryLimit, 32 << 20, false}, // the defaults
		{DefaultMemoryLimit, 64 << 20, true},
		{math.MaxInt64, 1 << 30, false}, // no limit
		{1 << 30, 512 << 20, false},
	} {
		if got := memoryTight(c.limit, c.idem); got != c.tight {
			t.Errorf("limit %d, idempotency bytes %d: tight %v, want %v", c.limit, c.idem, got, c.tight)
		}
	}
	var out bytes.Buffer
	log := logrus.New()
	log.SetOutput(&out)
	n := &Node{log: log}
	debug.SetMemoryLimit(DefaultMemoryLimit)
	n.warnMemoryTight(32 << 20)
	n.warnMemoryTight(64 << 20)
	n.warnMemoryTight(64 << 20)
	if c := strings.Count(out.String(), "MEMORY_LIMIT_TIGHT"); c != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", c, out.String())
	}
}
