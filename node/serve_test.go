package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/autonomyops/orchestrator/node"
	"github.com/autonomyops/orchestrator/node/proctest"
	"github.com/autonomyops/orchestrator/walrepl"
)

// ingestN posts n single events with ids prefix-i and fails the test on any
// non-200.
func ingestN(t *testing.T, base, prefix string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		code, body, err := proctest.Post(context.Background(), base+"/v1/telemetry/events",
			fmt.Sprintf(`{"id":"%s-%d","kind":"error","agent":"a%d"}`, prefix, i, i%3))
		if err != nil || code != http.StatusOK {
			t.Fatalf("ingest %d: %d %s %v", i, code, body, err)
		}
	}
}

func TestServe_SigtermExitsZeroAndLockRefusesSecondProcess(t *testing.T) {
	n := proctest.NewNode(t, "n1")
	n.Start()
	n.WaitHealthy(30 * time.Second)

	second := exec.Command(proctest.Binary(t), n.Args()...)
	out, err := second.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 {
		t.Fatalf("second process on the same data dir: err=%v\n%s", err, out)
	}
	if !strings.Contains(string(out), "LOCK is held by pid") {
		t.Fatalf("second process did not name the lock:\n%s", out)
	}
	if code := n.Stop(); code != 0 {
		t.Fatalf("SIGTERM: exit %d\n%s", code, n.Logs())
	}
}

// TestServe_RootRefusedOnAnotherUsersDataDir: root running `serve` by hand
// on a data dir that belongs to another user (as /var/lib/autonomy belongs
// to autonomy) is refused before anything is written there, with exit 2,
// the SERVE_REFUSED_AS_ROOT log line and a message naming what to run
// instead.
func TestServe_RootRefusedOnAnotherUsersDataDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the refusal applies only to a daemon running as root, and only root can give the test's data dir to another user (chown to 65534); TestCheckServeUser_refusesOnlyRootOnAnotherUsersDir covers the judgement without root")
	}
	n := proctest.NewNode(t, "n1")
	if err := os.Mkdir(n.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(n.DataDir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	owner := "'#65534'"
	if u, err := user.LookupId("65534"); err == nil {
		owner = u.Username
	}
	cmd := exec.Command(proctest.Binary(t), n.Args()...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != node.ExitUsage {
		t.Fatalf("serve as root on a data dir of uid 65534: %v, want exit %d\n%s", err, node.ExitUsage, out)
	}
	for _, want := range []string{
		`"msg":"SERVE_REFUSED_AS_ROOT"`, `"owner_uid":65534`,
		"refusing to serve as root on --data-dir " + n.DataDir,
		"sudo systemctl start autonomy-orchestrator",
		"sudo -u " + owner + " autonomy-orchestrator " + strings.Join(n.Args(), " "),
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output does not contain %q:\n%s", want, out)
		}
	}
	entries, err := os.ReadDir(n.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("the refused serve wrote %s into the data dir", e.Name())
	}
}

// TestServe_KillDashNineLosesNoAckedEvent: concurrent writers, kill -9 at a
// random moment, restart; every acknowledged event is there exactly once at
// the Seq it was acknowledged with. Three rounds on the same data dir.
func TestServe_KillDashNineLosesNoAckedEvent(t *testing.T) {
	n := proctest.NewNode(t, "n1")
	acked := map[string]uint64{}
	var mu sync.Mutex
	for round := 0; round < 3; round++ {
		n.Start()
		n.WaitHealthy(30 * time.Second)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; ctx.Err() == nil; i++ {
					id := fmt.Sprintf("r%d-w%d-%d", round, w, i)
					code, body, err := proctest.Post(ctx, n.URL()+"/v1/telemetry/events", fmt.Sprintf(`{"id":%q,"kind":"load"}`, id))
					if err != nil || code != http.StatusOK {
						continue // unknown outcome: not acknowledged
					}
					var ir wire.IngestResponse
					if json.Unmarshal(body, &ir) != nil || len(ir.Seqs) != 1 {
						t.Errorf("bad ingest answer %s", body)
						return
					}
					mu.Lock()
					acked[id] = ir.Seqs[0]
					mu.Unlock()
				}
			}(w)
		}
		time.Sleep(time.Duration(700+round*300) * time.Millisecond)
		n.Signal(syscall.SIGKILL)
		n.Wait(10 * time.Second)
		cancel()
		wg.Wait()
	}
	n.Start()
	n.WaitHealthy(30 * time.Second)
	events := proctest.AllEvents(t, n.URL())
	seen := map[string]int{}
	bySeq := map[uint64]string{}
	for _, e := range events {
		var ev struct{ ID string }
		json.Unmarshal(e.Event, &ev)
		seen[ev.ID]++
		bySeq[e.Seq] = ev.ID
	}
	mu.Lock()
	defer mu.Unlock()
	if len(acked) < 100 {
		t.Fatalf("only %d events acknowledged; the test did not exercise the WAL", len(acked))
	}
	for id, seq := range acked {
		if seen[id] != 1 {
			t.Errorf("acknowledged event %s present %d times", id, seen[id])
		}
		if bySeq[seq] != id {
			t.Errorf("acknowledged event %s was Seq=%d, now Seq=%d holds %q", id, seq, seq, bySeq[seq])
		}
	}
	t.Logf("acknowledged %d events across 3 kill -9 rounds; %d committed events after restart", len(acked), len(events))
}

// failHard starts n, expects exit 65 and returns its output.
func failHard(t *testing.T, n *proctest.Node, cause string) string {
	t.Helper()
	n.Start()
	code := n.Wait(60 * time.Second)
	logs := n.Logs()
	if code != walrepl.ExitFailHard {
		t.Fatalf("want exit %d (%s), got %d:\n%s", walrepl.ExitFailHard, cause, code, logs)
	}
	var found bool
	for _, line := range strings.Split(logs, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil || m["msg"] != "WAL_RECOVERY_FAIL_HARD" {
			continue
		}
		found = true
		if m["level"] != "error" || m["cause"] != cause || m["dir"] != filepath.Join(n.DataDir, "telemetry") || m["error"] == "" {
			t.Errorf("fail-hard log line: %s", line)
		}
	}
	if !found {
		t.Fatalf("no WAL_RECOVERY_FAIL_HARD line:\n%s", logs)
	}
	return logs
}

// TestRunbook_Path1_LegacyUpgrade follows the runbook: a WAL without
// telemetry.safe_seq refuses to start with the exact message; with
// AUTONOMYOPS_WAL_LEGACY_UPGRADE=1 it starts and keeps every frame; then it
// starts without the variable.
func TestRunbook_Path1_LegacyUpgrade(t *testing.T) {
	n := proctest.NewNode(t, "n1")
	n.Start()
	n.WaitHealthy(30 * time.Second)
	ingestN(t, n.URL(), "pre", 20)
	if code := n.Stop(); code != 0 {
		t.Fatalf("stop: %d", code)
	}
	tdir := filepath.Join(n.DataDir, "telemetry")
	if err := os.Remove(filepath.Join(tdir, "telemetry.safe_seq")); err != nil {
		t.Fatal(err)
	}
	logs := failHard(t, n, "SAFESEQ_MISSING")
	want := fmt.Sprintf("telemetry/wal: safe_seq missing in steady-state at %q;\n"+
		"to upgrade from a pre-Phase-1 WAL set AUTONOMYOPS_WAL_LEGACY_UPGRADE=1;\n"+
		"to accept telemetry loss after deleting telemetry.wal set AUTONOMYOPS_WAL_OPERATOR_RESET=1\n",
		filepath.Join(tdir, "telemetry.safe_seq"))
	if !strings.Contains(logs, want) {
		t.Fatalf("stderr lacks the runbook's message:\n%s\n--- got:\n%s", want, logs)
	}

	n.Env = []string{"AUTONOMYOPS_WAL_LEGACY_UPGRADE=1"}
	n.Start()
	n.WaitHealthy(30 * time.Second)
	if got := len(proctest.AllEvents(t, n.URL())); got != 20 {
		t.Fatalf("after legacy upgrade: %d events, want 20", got)
	}
	n.Stop()
	n.Env = nil
	n.Start()
	n.WaitHealthy(30 * time.Second)
	if got := len(proctest.AllEvents(t, n.URL())); got != 20 {
		t.Fatalf("after unsetting the variable: %d events, want 20", got)
	}
	n.Stop()
}

// TestRunbook_Path2_OperatorReset follows the runbook's Path 2 step by step
// after a committed frame was damaged.
func TestRunbook_Path2_OperatorReset(t *testing.T) {
	n := proctest.NewNode(t, "n1")
	n.Start()
	n.WaitHealthy(30 * time.Second)
	ingestN(t, n.URL(), "pre", 10)
	n.Stop()
	tdir := filepath.Join(n.DataDir, "telemetry")
	walPath := filepath.Join(tdir, "telemetry.wal")
	b, err := os.ReadFile(walPath)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40 // a committed frame
	if err := os.WriteFile(walPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	logs := failHard(t, n, "COMMITTED_FRAME_CORRUPT")
	if !strings.Contains(logs, "telemetry/wal: COMMITTED_FRAME_CORRUPT — frame at Seq=") {
		t.Fatalf("stderr:\n%s", logs)
	}

	// 1. Stop (it is stopped). 2. Back up. 3. Delete both files.
	if out, err := exec.Command("cp", "-r", tdir, tdir+".corrupt-"+time.Now().Format("20060102")).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	os.Remove(walPath)
	os.Remove(filepath.Join(tdir, "telemetry.safe_seq"))
	// Without the variable an initialised node refuses to start empty.
	failHard(t, n, "WAL_MISSING")
	// 4. Restart with the reset override.
	n.Env = []string{"AUTONOMYOPS_WAL_OPERATOR_RESET=1"}
	n.Start()
	n.WaitHealthy(30 * time.Second)
	if !strings.Contains(n.Logs(), `"msg":"WAL_RESET_BY_OPERATOR"`) || !strings.Contains(n.Logs(), `"level":"warning"`) {
		t.Fatalf("no WAL_RESET_BY_OPERATOR warning:\n%s", n.Logs())
	}
	ingestN(t, n.URL(), "post", 5)
	n.Stop()
	// The variable left set must not throw the new WAL away.
	n.Start()
	n.WaitHealthy(30 * time.Second)
	if got := len(proctest.AllEvents(t, n.URL())); got != 5 {
		t.Fatalf("variable left set: %d events, want the 5 written after the reset", got)
	}
	if !strings.Contains(n.Logs(), "AUTONOMYOPS_WAL_OPERATOR_RESET is set but telemetry.wal is present") {
		t.Fatalf("no 'variable ignored' log:\n%s", n.Logs())
	}
	n.Stop()
}

// TestServe_TornTailRepairedAtStart appends half a frame after the last
// committed one; the node repairs it with a WARN line and starts.
func TestServe_TornTailRepairedAtStart(t *testing.T) {
	n := proctest.NewNode(t, "n1")
	n.Start()
	n.WaitHealthy(30 * time.Second)
	ingestN(t, n.URL(), "pre", 10)
	n.Stop()
	walPath := filepath.Join(n.DataDir, "telemetry", "telemetry.wal")
	f, err := os.OpenFile(walPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	torn := walrepl.AppendEncoded(nil, &walrepl.Frame{Seq: 99, Epoch: 99, Type: walrepl.FrameEvent, Payload: []byte(`{"torn":true}`)})
	f.Write(torn[:len(torn)/2])
	f.Close()
	n.Start()
	n.WaitHealthy(30 * time.Second)
	if !strings.Contains(n.Logs(), `"msg":"WAL_TORN_TAIL_TRUNCATED"`) || !strings.Contains(n.Logs(), fmt.Sprintf(`"bytes_dropped":%d`, len(torn)/2)) {
		t.Fatalf("no torn-tail warning with bytes dropped:\n%s", n.Logs())
	}
	if got := len(proctest.AllEvents(t, n.URL())); got != 10 {
		t.Fatalf("%d events after repair, want 10", got)
	}
	n.Stop()
}

// segmentFiles lists the sealed segments in a telemetry directory.
func segmentFiles(t *testing.T, tdir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(tdir, "telemetry-*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestRunbook_Paths1And2_MultiSegmentWAL follows the runbook's Path 1 and
// Path 2 step by step on a node whose WAL is a chain of segment files
// (--wal-segment-bytes at its minimum): telemetry.wal without
// telemetry.safe_seq is Path 1; after rm telemetry.wal and rm
// telemetry.safe_seq the reset start moves the sealed segments aside and
// never reads them.
func TestRunbook_Paths1And2_MultiSegmentWAL(t *testing.T) {
	n := proctest.NewNode(t, "n1")
	n.Extra = []string{"--wal-segment-bytes", "4096"}
	n.Start()
	n.WaitHealthy(30 * time.Second)
	ingestN(t, n.URL(), "pre", 150)
	if code := n.Stop(); code != 0 {
		t.Fatalf("stop: %d", code)
	}
	tdir := filepath.Join(n.DataDir, "telemetry")
	if segs := segmentFiles(t, tdir); len(segs) < 2 {
		t.Fatalf("%d sealed segments after 150 events at 4 KiB", len(segs))
	}

	// Path 1.
	if err := os.Remove(filepath.Join(tdir, "telemetry.safe_seq")); err != nil {
		t.Fatal(err)
	}
	failHard(t, n, "SAFESEQ_MISSING")
	n.Env = []string{"AUTONOMYOPS_WAL_LEGACY_UPGRADE=1"}
	n.Start()
	n.WaitHealthy(30 * time.Second)
	if got := len(proctest.AllEvents(t, n.URL())); got != 150 {
		t.Fatalf("after Path 1: %d events, want 150", got)
	}
	n.Stop()
	n.Env = nil

	// Path 2: 2. back up; 3. rm telemetry.wal, rm telemetry.safe_seq.
	backup := tdir + ".corrupt-" + time.Now().Format("20060102")
	if out, err := exec.Command("cp", "-r", tdir, backup).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	sealed := segmentFiles(t, tdir)
	os.Remove(filepath.Join(tdir, "telemetry.wal"))
	os.Remove(filepath.Join(tdir, "telemetry.safe_seq"))
	failHard(t, n, "WAL_MISSING")
	// 4. Restart with the reset override.
	n.Env = []string{"AUTONOMYOPS_WAL_OPERATOR_RESET=1"}
	n.Start()
	n.WaitHealthy(30 * time.Second)
	logs := n.Logs()
	if !strings.Contains(logs, `"msg":"WAL_RESET_BY_OPERATOR"`) || !strings.Contains(logs, `"segments_moved_to":"`+backup+`.2"`) {
		t.Fatalf("no WAL_RESET_BY_OPERATOR naming where the segments went (%s.2):\n%s", backup, logs)
	}
	for _, p := range sealed {
		if _, err := os.Stat(filepath.Join(backup+".2", filepath.Base(p))); err != nil {
			t.Fatalf("%s was not moved aside: %v", filepath.Base(p), err)
		}
	}
	if got := len(proctest.AllEvents(t, n.URL())); got != 0 {
		t.Fatalf("after the reset: %d events, want none (the old segments must not be read)", got)
	}
	ingestN(t, n.URL(), "post", 5)
	n.Stop()
	n.Start() // the variable still set: a normal start
	n.WaitHealthy(30 * time.Second)
	if got := len(proctest.AllEvents(t, n.URL())); got != 5 {
		t.Fatalf("variable left set: %d events, want 5", got)
	}
	n.Stop()
}
