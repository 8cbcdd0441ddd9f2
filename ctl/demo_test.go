package ctl_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/autonomyops/orchestrator/ctl"
)

// The runbook's --local promise: the in-process demo runs to completion with
// no service, narrates every step and finds nothing lost.
func TestDemo_localRunsToCompletion(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir()) // the demo's data directory goes here
	tc := newTestCLI(t)
	code, out, _ := tc.run(t, "demo", "--local", "--events", "40")
	if code != ctl.ExitOK {
		t.Fatalf("exit %d", code)
	}
	mustContain(t, "narration", out,
		"elect ", "node-a leads epoch 1",
		"ingest ", "40 events acknowledged",
		"crash ", "node-a killed while",
		"failover ", "node-b leads epoch 2", "after the kill",
		"zero loss ", "are on node-b and node-c",
		"restart ", "node-a restarts on its WAL",
		"planned failover ", "node-c leads epoch 3",
		"wal reset ", "telemetry.corrupt-", "as a learner",
		"log: WARNING WAL_RESET_BY_OPERATOR node-a/telemetry",
		"re-replicate ", "node-a re-replicated", "votes again", "are on node-a, node-b and node-c",
		"0 lost")
	if !regexp.MustCompile(`Failover after a crash [0-9.]+(µs|ms|s), planned failover [0-9.]+(µs|ms|s)`).MatchString(out) {
		t.Fatalf("no failover times in the result line:\n%s", out)
	}
	// The temporary data directory is removed at the end.
	left, _ := filepath.Glob(filepath.Join(os.Getenv("TMPDIR"), "autonomy-demo-*"))
	if len(left) != 0 {
		t.Fatalf("demo data left behind: %v", left)
	}
}

func TestDemo_gazeboAliasAndKeepData(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	tc := newTestCLI(t)
	code, out, _ := tc.run(t, "demo", "gazebo", "--local", "--events", "20", "--keep-data")
	if code != ctl.ExitOK || !strings.Contains(out, "0 lost") {
		t.Fatalf("exit %d", code)
	}
	m := regexp.MustCompile(`data kept in (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no data directory named:\n%s", out)
	}
	for _, n := range []string{"node-a", "node-b", "node-c"} {
		if _, err := os.Stat(filepath.Join(m[1], n, "telemetry", "telemetry.wal")); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
}

// Without --local there is nothing to run: the runbook's hint says what to do.
func TestDemo_withoutLocal(t *testing.T) {
	tc := newTestCLI(t)
	for _, args := range [][]string{{"demo"}, {"demo", "gazebo"}} {
		code, out, errOut := tc.run(t, args...)
		if code != ctl.ExitUsage || out != "" {
			t.Fatalf("%v: exit %d, stdout %q", args, code, out)
		}
		mustContain(t, "stderr", errOut, "hint: if Docker Compose fails to start the orchestrator service, re-run with --local for an in-process demo")
	}
	if code, _, _ := tc.run(t, "demo", "policy", "--local"); code != ctl.ExitUsage {
		t.Fatalf("unknown demo: exit %d", code)
	}
	if code, _, _ := tc.run(t, "demo", "--local", "--events", "1"); code != ctl.ExitUsage {
		t.Fatalf("--events 1: exit %d", code)
	}
}
