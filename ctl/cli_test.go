package ctl_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/autonomyops/orchestrator/ctl"
)

func TestUsageErrors(t *testing.T) {
	tc := newTestCLI(t)
	for _, args := range [][]string{
		{"bogus"},
		{"wal", "bogus"},
		{"ha", "nope"},
		{"status", "--no-such-flag"},
		{"status", "extra-arg"},
		{"-o", "yaml", "version"},
		{"--timeout", "-1s", "status"},
		{"completion", "tcsh"},
		{"wal", "status", "--all", "--data-dir", "/tmp"},
		{"wal", "inspect", "--limit", "-1", "--data-dir", "/tmp"},
		{"logs", "extra"},
		{"logs", "--retry-for", "-1s"},
		{"fleet", "bogus"},
		{"settings", "set", "only-key"},
		{"audit", "--limit", "x"},
		{"ha", "failover", "node-b"},
		{"demo", "--local", "--events", "5"},
	} {
		code, out, errOut := tc.run(t, args...)
		if code != ctl.ExitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, ctl.ExitUsage)
		}
		if out != "" {
			t.Errorf("%v: stdout %q", args, out)
		}
		mustContain(t, "stderr", errOut, "Error: ", "--help' for usage")
	}
	_, _, errOut := tc.run(t, "wal", "verfy")
	mustContain(t, "stderr", errOut, "did you mean verify?")
}

func TestHelpAndBareGroups(t *testing.T) {
	tc := newTestCLI(t)
	for _, args := range [][]string{{}, {"--help"}, {"wal"}, {"ha", "--help"}, {"config"}, {"fleet"}, {"settings"}, {"logs", "--help"}, {"demo", "--help"}} {
		code, out, _ := tc.run(t, args...)
		if code != ctl.ExitOK || !strings.Contains(out, "Usage:") {
			t.Errorf("%v: exit %d, help printed: %v", args, code, strings.Contains(out, "Usage:"))
		}
	}
}

func TestVersion(t *testing.T) {
	tc := newTestCLI(t)
	code, out, _ := tc.run(t, "--version")
	if code != 0 || !strings.HasPrefix(out, "autonomyctl ") {
		t.Fatalf("--version: exit %d %q", code, out)
	}
	code, out, _ = tc.run(t, "version", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var v struct {
		Version  string `json:"version"`
		Go       string `json:"go"`
		Platform string `json:"platform"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Version == "" || v.Go == "" || v.Platform == "" {
		t.Fatalf("json %q: %+v %v", out, v, err)
	}
}

func TestCompletion(t *testing.T) {
	tc := newTestCLI(t)
	for shell, marker := range map[string]string{"bash": "__start_autonomyctl", "zsh": "#compdef autonomyctl", "fish": "complete -c autonomyctl"} {
		code, out, _ := tc.run(t, "completion", shell)
		if code != 0 || !strings.Contains(out, marker) {
			t.Errorf("completion %s: exit %d, %d bytes, marker %q missing", shell, code, len(out), marker)
		}
	}
	// The completion engine itself answers through the CLI type.
	code, out, _ := tc.run(t, "__complete", "wal", "")
	if code != 0 || !strings.Contains(out, "verify") || !strings.Contains(out, "reset") {
		t.Fatalf("__complete wal: exit %d %q", code, out)
	}
}
