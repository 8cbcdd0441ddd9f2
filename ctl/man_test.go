package ctl_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `autonomyctl __genman DIR` (run by mkpkg) writes a page per command, dated
// by SOURCE_DATE_EPOCH, and stays out of help and completion.
func TestGenMan(t *testing.T) {
	tc := newTestCLI(t)
	tc.env["SOURCE_DATE_EPOCH"] = "1764927206" // 2025-12-05
	dir := filepath.Join(t.TempDir(), "man1")
	if code, _, _ := tc.run(t, "__genman", dir); code != 0 {
		t.Fatalf("__genman: exit %d", code)
	}
	for _, page := range []string{"autonomyctl.1", "autonomyctl-ha-status.1", "autonomyctl-wal-verify.1", "autonomyctl-completion.1"} {
		b, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), ".SH NAME") || !strings.Contains(string(b), "Dec 2025") {
			t.Errorf("%s: no NAME section or not dated by SOURCE_DATE_EPOCH:\n%.400s", page, b)
		}
	}
	// "<node>.crt" in certs init's description is text, not an HTML tag.
	if b, err := os.ReadFile(filepath.Join(dir, "autonomyctl-certs-init.1")); err != nil || !strings.Contains(string(b), "<node>") {
		t.Errorf("autonomyctl-certs-init.1 lost <node> (%v):\n%s", err, b)
	}
	if _, err := os.Stat(filepath.Join(dir, "autonomyctl-__genman.1")); err == nil {
		t.Error("the hidden __genman command has a man page")
	}
	_, out, _ := tc.run(t, "--help")
	if strings.Contains(out, "__genman") {
		t.Error("--help lists the hidden __genman command")
	}
	tc.env["SOURCE_DATE_EPOCH"] = "yesterday"
	if code, _, _ := tc.run(t, "__genman", dir); code == 0 {
		t.Error("__genman accepted SOURCE_DATE_EPOCH=yesterday")
	}
}
