//go:build unix

package node

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckServeUser_refusesOnlyRootOnAnotherUsersDir: the judgement alone,
// with the effective uid passed in, so it runs without root too. Root is
// refused on a directory another uid owns, and only there.
func TestCheckServeUser_refusesOnlyRootOnAnotherUsersDir(t *testing.T) {
	foreign := t.TempDir()
	switch os.Geteuid() {
	case 0:
		// Give it to nobody (65534); root's own temp dirs are root's.
		if err := os.Chown(foreign, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if err := checkServeUser(t.TempDir(), 0, nil); err != nil {
			t.Errorf("root on a directory root owns: %v, want nil", err)
		}
	default:
		// Not root: the temp dir is this test's uid's, which is another
		// user than root. (TestServe_RootRefusedOnAnotherUsersDataDir runs
		// the real daemon as root.)
	}
	args := []string{"serve", "--data-dir", foreign, "--listen", "127.0.0.1:8888"}
	err := checkServeUser(foreign, 0, args)
	var se *ServeAsRootError
	if !errors.As(err, &se) || !errors.Is(err, ErrServeRefusedAsRoot) {
		t.Fatalf("root on another user's directory: %v, want a *ServeAsRootError", err)
	}
	for _, want := range []string{MsgServeRefusedAsRoot, foreign, "sudo systemctl start autonomy-orchestrator",
		"sudo -u ", "autonomy-orchestrator serve --data-dir " + foreign + " --listen 127.0.0.1:8888"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%s", want, err)
		}
	}
	if err := checkServeUser(foreign, 1000, args); err != nil {
		t.Errorf("a non-root user: %v, want nil (the kernel's permissions decide)", err)
	}
	if err := checkServeUser(filepath.Join(foreign, "not-yet"), 0, args); err != nil {
		t.Errorf("root on a data dir that does not exist yet: %v, want nil", err)
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/var/lib/autonomy": "/var/lib/autonomy",
		"--listen":          "--listen",
		"a b":               "'a b'",
		"it's":              `'it'\''s'`,
		"":                  "''",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
