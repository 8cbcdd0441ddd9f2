package node_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/node"
	"github.com/autonomyops/orchestrator/node/proctest"
	"github.com/autonomyops/orchestrator/walrepl"
)

// journalFile is a file standing for the journal's stream: JOURNAL_STREAM
// names its device and inode, as systemd does for a unit's stderr.
func journalFile(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "journal"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino))
	return f
}

// TestJournal_FailHardIsAtErrPriority: with stderr on the journal, every
// line of a WAL fail-hard (the runbook's message and WAL_RECOVERY_FAIL_HARD)
// carries priority 3, so `journalctl -p err` shows it; the text after the
// prefix is the runbook's, unchanged.
func TestJournal_FailHardIsAtErrPriority(t *testing.T) {
	n := proctest.NewNode(t, "n1")
	n.Start()
	n.WaitHealthy(30 * time.Second)
	ingestN(t, n.URL(), "pre", 5)
	if code := n.Stop(); code != 0 {
		t.Fatalf("stop: %d", code)
	}
	tdir := filepath.Join(n.DataDir, "telemetry")
	if err := os.Remove(filepath.Join(tdir, "telemetry.safe_seq")); err != nil {
		t.Fatal(err)
	}
	f := journalFile(t)
	if code := node.Main(n.Args(), f); code != walrepl.ExitFailHard {
		t.Fatalf("exit %d, want %d", code, walrepl.ExitFailHard)
	}
	b, _ := os.ReadFile(f.Name())
	var plain []string
	found := false
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if len(line) < 3 || line[0] != '<' || line[2] != '>' {
			t.Fatalf("a line without a priority prefix: %q", line)
		}
		if strings.Contains(line, `"msg":"WAL_RECOVERY_FAIL_HARD"`) {
			found = true
			if !strings.HasPrefix(line, "<3>") {
				t.Errorf("fail-hard line not at err priority: %s", line)
			}
		}
		if !strings.HasPrefix(line, "<3>{") && !strings.HasPrefix(line, "<6>{") {
			plain = append(plain, line)
		}
	}
	want := fmt.Sprintf("telemetry/wal: safe_seq missing in steady-state at %q;\n"+
		"to upgrade from a pre-Phase-1 WAL set AUTONOMYOPS_WAL_LEGACY_UPGRADE=1;\n"+
		"to accept telemetry loss after deleting telemetry.wal set AUTONOMYOPS_WAL_OPERATOR_RESET=1",
		filepath.Join(tdir, "telemetry.safe_seq"))
	var got []string
	for _, l := range plain {
		if !strings.HasPrefix(l, "<3>") {
			t.Errorf("runbook line not at err priority: %q", l)
		}
		got = append(got, strings.TrimPrefix(l, "<3>"))
	}
	if strings.Join(got, "\n") != want || !found {
		t.Fatalf("journal stream:\n%s\nwant the runbook's lines:\n%s", b, want)
	}
}

// TestMain_logLevelVerboseIsAUsageError: an unknown --log-level is refused
// before anything starts, naming the valid levels, exit status 2.
func TestMain_logLevelVerboseIsAUsageError(t *testing.T) {
	f := journalFile(t)
	dir := t.TempDir()
	if code := node.Main([]string{"serve", "--log-level", "verbose", "--data-dir", filepath.Join(dir, "d")}, f); code != node.ExitUsage {
		t.Fatalf("exit %d, want %d", code, node.ExitUsage)
	}
	b, _ := os.ReadFile(f.Name())
	if string(b) != "<3>autonomy-orchestrator: --log-level=\"verbose\" is not a log level; use one of debug, info, warn, error\n" {
		t.Fatalf("stderr %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "d")); !os.IsNotExist(err) {
		t.Fatal("a refused command line created the data dir")
	}
}
