package ctl_test

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/ctl"
	"github.com/autonomyops/orchestrator/node/datadir"
	"github.com/autonomyops/orchestrator/walrepl"
	"github.com/sirupsen/logrus"
)

var resetNow = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func resetCLI(t *testing.T) *testCLI {
	tc := newTestCLI(t)
	tc.Now = func() time.Time { return resetNow }
	tc.env["USER"] = "root"
	tc.env["SUDO_USER"] = "alice"
	return tc
}

func TestWALReset_backsUpAndWritesMarker(t *testing.T) {
	w := makeSimpleWAL(t, 10)
	b, _ := os.ReadFile(w.walPath)
	b[w.offsets[2]+walrepl.FrameHeaderSize] ^= 0x10 // a damaged committed frame: why one resets
	os.WriteFile(w.walPath, b, 0o600)
	sum := w.sum(t)
	tc := resetCLI(t)

	code, out, _ := tc.run(t, "wal", "reset", "--data-dir", w.dataDir, "--yes")
	if code != ctl.ExitOK {
		t.Fatalf("exit %d", code)
	}
	backup := filepath.Join(w.dataDir, "telemetry.corrupt-20260304")
	mustContain(t, "stdout", out, "backed up", w.tdir+" -> "+backup, walrepl.ResetMarkerFile, "by alice",
		"WAL_RESET_BY_OPERATOR", "re-replicates the committed history")

	// The old telemetry, byte for byte, in the backup.
	old, err := os.ReadFile(filepath.Join(backup, walrepl.WALFile))
	if err != nil {
		t.Fatal(err)
	}
	if sha := (&testWAL{walPath: filepath.Join(backup, walrepl.WALFile)}).sum(t); sha != sum || len(old) != len(b) {
		t.Fatal("the backup differs from the old WAL")
	}
	// A fresh telemetry dir, 0700, holding only the marker.
	st, err := os.Stat(w.tdir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("telemetry dir: %v %v", err, st.Mode())
	}
	ents, _ := os.ReadDir(w.tdir)
	if len(ents) != 1 || ents[0].Name() != walrepl.ResetMarkerFile {
		t.Fatalf("telemetry dir holds %v", ents)
	}
	var m walrepl.ResetMarker
	mb, _ := os.ReadFile(filepath.Join(w.tdir, walrepl.ResetMarkerFile))
	if err := json.Unmarshal(mb, &m); err != nil || m.By != "alice" || m.Backup != backup || !m.At.Equal(resetNow) {
		t.Fatalf("marker %s: %+v %v", mb, m, err)
	}

	// verify now says the next start resets; the next start does.
	code, out, _ = tc.run(t, "wal", "verify", "--data-dir", w.dataDir)
	if code != ctl.ExitOK {
		t.Fatalf("verify after reset: exit %d", code)
	}
	mustContain(t, "stdout", out, "reset pending")
	log := logrus.New()
	log.SetOutput(io.Discard)
	o := walrepl.DefaultOptions(w.tdir)
	o.Logger, o.Initialized = log, true
	wal, rep, err := walrepl.Open(o)
	if err != nil {
		t.Fatalf("start after reset: %v", err)
	}
	defer wal.Close()
	if !rep.Reset || rep.ResetVia != "marker" || rep.LastSeq != 0 {
		t.Fatalf("report after reset: %+v", rep)
	}
}

func TestWALReset_json(t *testing.T) {
	w := makeSimpleWAL(t, 3)
	tc := resetCLI(t)
	code, out, _ := tc.run(t, "wal", "reset", "--data-dir", w.dataDir, "--yes", "-o", "json")
	if code != ctl.ExitOK {
		t.Fatalf("exit %d", code)
	}
	var res struct {
		DataDir      string    `json:"data_dir"`
		TelemetryDir string    `json:"telemetry_dir"`
		Backup       string    `json:"backup"`
		Marker       string    `json:"marker"`
		By           string    `json:"by"`
		At           time.Time `json:"at"`
		Previous     struct {
			OK      bool   `json:"ok"`
			LastSeq uint64 `json:"last_seq"`
		} `json:"previous"`
	}
	if err := jsonUnmarshal(out, &res); err != nil {
		t.Fatal(err)
	}
	if res.Backup != filepath.Join(w.dataDir, "telemetry.corrupt-20260304") || res.By != "alice" ||
		res.Marker != filepath.Join(w.tdir, walrepl.ResetMarkerFile) || !res.Previous.OK || res.Previous.LastSeq != 3 {
		t.Fatalf("json: %+v", res)
	}
}

func TestWALReset_backupNameTaken(t *testing.T) {
	w := makeSimpleWAL(t, 1)
	taken := filepath.Join(w.dataDir, "telemetry.corrupt-20260304")
	os.Mkdir(taken, 0o700)
	os.Mkdir(taken+".2", 0o700)
	tc := resetCLI(t)
	tc.env["SUDO_USER"] = ""
	if code, _, _ := tc.run(t, "wal", "reset", "--data-dir", w.dataDir, "--yes"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if _, err := os.Stat(filepath.Join(taken+".3", walrepl.WALFile)); err != nil {
		t.Fatalf("want the backup at %s.3: %v", taken, err)
	}
	var m walrepl.ResetMarker
	mb, _ := os.ReadFile(filepath.Join(w.tdir, walrepl.ResetMarkerFile))
	json.Unmarshal(mb, &m)
	if m.By != "root" {
		t.Fatalf("by %q, want $USER without $SUDO_USER", m.By)
	}
}

// TestWALReset_refusesWhileLocked: while a node holds the data-dir lock,
// wal reset refuses and changes nothing; once released it goes through and
// releases the lock it took. The test holds the lock exactly as the node
// does (datadir.TryLock, then WritePID), in another open file description
// of LOCK, as another process would.
func TestWALReset_refusesWhileLocked(t *testing.T) {
	w := makeSimpleWAL(t, 4)
	sum := w.sum(t)
	lock, err := datadir.TryLock(w.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock()
	if err := lock.WritePID(); err != nil {
		t.Fatal(err)
	}
	tc := resetCLI(t)
	code, out, errOut := tc.run(t, "wal", "reset", "--data-dir", w.dataDir, "--yes")
	if code != ctl.ExitError {
		t.Fatalf("exit %d, want %d", code, ctl.ExitError)
	}
	if out != "" {
		t.Fatalf("stdout: %q", out)
	}
	mustContain(t, "stderr", errOut, "refusing to reset the WAL", "a running node holds the data-dir lock "+filepath.Join(w.dataDir, "LOCK")+
		" (pid "+strconv.Itoa(os.Getpid())+")", "systemctl stop autonomy-orchestrator")
	if w.sum(t) != sum || fileExistsT(filepath.Join(w.tdir, walrepl.ResetMarkerFile)) || len(globBackups(w.dataDir)) != 0 {
		t.Fatal("a refused reset changed something")
	}

	// Released: the reset goes through, and it released the lock it took.
	lock.Unlock()
	if code, _, _ := tc.run(t, "wal", "reset", "--data-dir", w.dataDir, "--yes"); code != 0 {
		t.Fatalf("after unlock: exit %d", code)
	}
	again, err := datadir.TryLock(w.dataDir)
	if err != nil {
		t.Fatalf("wal reset kept the lock: %v", err)
	}
	again.Unlock()
}

func TestWALReset_confirmation(t *testing.T) {
	for _, c := range []struct {
		name     string
		tty      bool
		answer   string
		wantCode int
		changed  bool
	}{
		{"no terminal", false, "yes\n", ctl.ExitUsage, false},
		{"answered no", true, "no\n", ctl.ExitError, false},
		{"no answer", true, "", ctl.ExitError, false},
		{"answered yes", true, "yes\n", ctl.ExitOK, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := makeSimpleWAL(t, 2)
			tc := resetCLI(t)
			tc.Stdin = strings.NewReader(c.answer)
			tc.StdinIsTerminal = func() bool { return c.tty }
			code, _, errOut := tc.run(t, "wal", "reset", "--data-dir", w.dataDir)
			if code != c.wantCode {
				t.Fatalf("exit %d, want %d", code, c.wantCode)
			}
			if changed := len(globBackups(w.dataDir)) == 1; changed != c.changed {
				t.Fatalf("changed=%v, want %v", changed, c.changed)
			}
			switch {
			case !c.tty:
				mustContain(t, "stderr", errOut, "stdin is not a terminal", "--yes")
			default:
				mustContain(t, "stderr", errOut, `Type "yes" to continue`, "passes every check (2 frames")
			}
		})
	}
}

func TestWALReset_noTelemetryDir(t *testing.T) {
	dataDir := t.TempDir()
	os.WriteFile(filepath.Join(dataDir, datadir.IdentityFile), []byte("{}"), 0o600)
	tc := resetCLI(t)
	code, out, _ := tc.run(t, "wal", "reset", "--data-dir", dataDir, "--yes")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	mustContain(t, "stdout", out, "backed up", "nothing")
	if !fileExistsT(filepath.Join(dataDir, datadir.TelemetryDir, walrepl.ResetMarkerFile)) {
		t.Fatal("no marker")
	}
}

func fileExistsT(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func globBackups(dataDir string) []string {
	m, _ := filepath.Glob(filepath.Join(dataDir, datadir.BackupPrefix+"*"))
	return m
}

// TestWALReset_secondResetSameDay: the first reset of a day takes the
// runbook's name, telemetry.corrupt-YYYYMMDD (the date as `date +%Y%m%d`
// prints it: local time, here a zone where it is still the 4th while UTC is
// on the 5th); a second reset the same day, whether the first was done by
// this command or by the runbook's `cp -r`, takes .2 and leaves the first
// backup untouched; a third takes .3.
func TestWALReset_secondResetSameDay(t *testing.T) {
	w := makeSimpleWAL(t, 3)
	first := w.sum(t)
	tc := resetCLI(t)
	tc.Now = func() time.Time { return time.Date(2026, 3, 4, 23, 30, 0, 0, time.FixedZone("EST", -5*3600)) }
	base := filepath.Join(w.dataDir, "telemetry.corrupt-20260304")
	for i, want := range []string{base, base + ".2", base + ".3"} {
		if i > 0 {
			// The node started in between: a new WAL in the telemetry dir.
			os.Remove(filepath.Join(w.tdir, walrepl.ResetMarkerFile))
			os.WriteFile(filepath.Join(w.tdir, walrepl.WALFile), []byte("start "+want), 0o600)
		}
		code, out, errOut := tc.run(t, "wal", "reset", "--data-dir", w.dataDir, "--yes")
		if code != ctl.ExitOK {
			t.Fatalf("reset %d: exit %d\n%s%s", i+1, code, out, errOut)
		}
		mustContain(t, "stdout", out, w.tdir+" -> "+want)
	}
	if (&testWAL{walPath: filepath.Join(base, walrepl.WALFile)}).sum(t) != first {
		t.Fatal("a later reset changed the first backup")
	}
	for _, b := range []string{base + ".2", base + ".3"} {
		if got, _ := os.ReadFile(filepath.Join(b, walrepl.WALFile)); string(got) != "start "+b {
			t.Fatalf("%s holds %q", b, got)
		}
	}
	if n := len(globBackups(w.dataDir)); n != 3 {
		t.Fatalf("%d backups, want 3: %v", n, globBackups(w.dataDir))
	}
}
