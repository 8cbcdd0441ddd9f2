package ctl_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/autonomyops/orchestrator/ctl"
	"github.com/autonomyops/orchestrator/node/datadir"
	"github.com/autonomyops/orchestrator/walrepl"
	"github.com/sirupsen/logrus"
)

// testWAL is a data directory holding a real WAL written by walrepl.
type testWAL struct {
	dataDir  string
	tdir     string
	walPath  string
	payloads [][]byte
	offsets  []int64 // offsets[i] is where frame Seq=i+1 starts
}

// makeWAL writes payloads as frames Seq 1..n of epoch 1 with the given
// timestamps, commits all of them (safe_seq = n) and closes the WAL, in an
// initialised data directory (node.json exists).
func makeWAL(t *testing.T, payloads []string, ts []time.Time) *testWAL {
	t.Helper()
	w := &testWAL{dataDir: t.TempDir()}
	w.tdir = filepath.Join(w.dataDir, datadir.TelemetryDir)
	w.walPath = filepath.Join(w.tdir, walrepl.WALFile)
	if err := os.WriteFile(filepath.Join(w.dataDir, datadir.IdentityFile), []byte(`{"name":"node-a"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	o := walrepl.DefaultOptions(w.tdir)
	o.Logger = log
	o.Initialized = false // first start creates the WAL
	wal, _, err := walrepl.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	off := int64(walrepl.SegmentHeaderSize)
	var last uint64
	for i, p := range payloads {
		_, l, err := wal.Append(1, walrepl.FrameEvent, ts[i].UnixNano(), [][]byte{[]byte(p)})
		if err != nil {
			t.Fatal(err)
		}
		last = l
		w.payloads = append(w.payloads, []byte(p))
		w.offsets = append(w.offsets, off)
		off += int64(walrepl.FrameHeaderSize + len(p))
	}
	if err := wal.WaitDurable(context.Background(), last); err != nil {
		t.Fatal(err)
	}
	wal.SetSafeSeq(last)
	if err := wal.Close(); err != nil {
		t.Fatal(err)
	}
	return w
}

func makeSimpleWAL(t *testing.T, n int) *testWAL {
	now := time.Now()
	var ps []string
	var ts []time.Time
	for i := 1; i <= n; i++ {
		ps = append(ps, fmt.Sprintf(`{"kind":"info","agent":"robot-%d","i":%d}`, i%3, i))
		ts = append(ts, now)
	}
	return makeWAL(t, ps, ts)
}

func (w *testWAL) sum(t *testing.T) [32]byte {
	t.Helper()
	b, err := os.ReadFile(w.walPath)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// requiredVerifyKeys are the keys `wal verify -o json` always prints.
var requiredVerifyKeys = []string{"ok", "cause", "error", "first_seq", "last_seq", "safe_seq", "end_offset", "torn_tail", "torn_bytes"}

func TestWALVerify_sound(t *testing.T) {
	w := makeSimpleWAL(t, 20)
	st, _ := os.Stat(w.walPath)
	tc := newTestCLI(t)

	code, out, _ := tc.run(t, "wal", "verify", "--data-dir", w.dataDir)
	if code != ctl.ExitOK {
		t.Fatalf("exit %d", code)
	}
	mustContain(t, "stdout", out, w.tdir+": ok", "first_seq 1, last_seq 20", "safe_seq 20", "20 frames",
		fmt.Sprintf("end_offset %d of %d bytes", st.Size(), st.Size()))

	code, out, _ = tc.run(t, "wal", "verify", "--data-dir", w.dataDir, "-o", "json")
	if code != ctl.ExitOK {
		t.Fatalf("exit %d", code)
	}
	m := jsonKeys(t, out)
	for _, k := range requiredVerifyKeys {
		if _, ok := m[k]; !ok {
			t.Errorf("key %q missing", k)
		}
	}
	if m["ok"] != true || m["cause"] != "" || m["error"] != "" || m["first_seq"] != 1.0 || m["last_seq"] != 20.0 ||
		m["safe_seq"] != 20.0 || m["end_offset"] != float64(st.Size()) || m["torn_tail"] != false || m["torn_bytes"] != 0.0 {
		t.Fatalf("json: %v", m)
	}
}

func TestWALVerify_tornTailIsReportedNotFatal(t *testing.T) {
	w := makeSimpleWAL(t, 5)
	before, _ := os.Stat(w.walPath)
	// Half of a sixth frame: the unfinished end of a write.
	frame := walrepl.AppendEncoded(nil, &walrepl.Frame{Seq: 6, Epoch: 1, Time: 1, Type: walrepl.FrameEvent, Payload: []byte(`{"kind":"info"}`)})
	f, err := os.OpenFile(w.walPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(frame[:20]); err != nil {
		t.Fatal(err)
	}
	f.Close()
	sum := w.sum(t)

	tc := newTestCLI(t)
	code, out, _ := tc.run(t, "wal", "verify", "--data-dir", w.dataDir)
	if code != ctl.ExitOK {
		t.Fatalf("exit %d: a torn tail above safe_seq is repairable", code)
	}
	mustContain(t, "stdout", out, "torn tail: 20 bytes at offset", "WAL_TORN_TAIL_TRUNCATED")

	code, out, _ = tc.run(t, "wal", "verify", "--data-dir", w.dataDir, "-o", "json")
	if code != ctl.ExitOK {
		t.Fatalf("exit %d", code)
	}
	m := jsonKeys(t, out)
	if m["ok"] != true || m["torn_tail"] != true || m["torn_bytes"] != 20.0 || m["end_offset"] != float64(before.Size()) {
		t.Fatalf("json: %v", m)
	}
	if w.sum(t) != sum {
		t.Fatal("verify changed the WAL")
	}
}

func TestWALVerify_committedFrameCorrupt(t *testing.T) {
	w := makeSimpleWAL(t, 10)
	// Flip one payload byte of the committed frame Seq=4.
	b, _ := os.ReadFile(w.walPath)
	at := w.offsets[3] + walrepl.FrameHeaderSize + 2
	b[at] ^= 0x01
	if err := os.WriteFile(w.walPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := w.sum(t)
	tc := newTestCLI(t)

	code, out, errOut := tc.run(t, "wal", "verify", "--data-dir", w.dataDir)
	if code != walrepl.ExitFailHard {
		t.Fatalf("exit %d, want %d", code, walrepl.ExitFailHard)
	}
	if out != "" {
		t.Fatalf("stdout: %q", out)
	}
	want := fmt.Sprintf("telemetry/wal: COMMITTED_FRAME_CORRUPT — frame at Seq=4 (offset %d) fails its checksum", w.offsets[3])
	if first := strings.SplitN(errOut, "\n", 2)[0]; first != want {
		t.Fatalf("first stderr line\n got %q\nwant %q", first, want)
	}
	mustContain(t, "stderr", errOut, "wal reset --data-dir "+w.dataDir, "fsck")

	code, out, errOut = tc.run(t, "wal", "verify", "--data-dir", w.dataDir, "-o", "json")
	if code != ctl.ExitWALViolated {
		t.Fatalf("exit %d", code)
	}
	if errOut != "" {
		t.Fatalf("-o json: stderr should be empty, got %q", errOut)
	}
	m := jsonKeys(t, out)
	for _, k := range requiredVerifyKeys {
		if _, ok := m[k]; !ok {
			t.Errorf("key %q missing", k)
		}
	}
	if m["ok"] != false || m["cause"] != "COMMITTED_FRAME_CORRUPT" || m["error"] != want || m["seq"] != 4.0 || m["offset"] != float64(w.offsets[3]) {
		t.Fatalf("json: %v", m)
	}
	if w.sum(t) != sum {
		t.Fatal("verify changed the WAL")
	}
}

func TestWALVerify_causes(t *testing.T) {
	for _, c := range []struct {
		name   string
		damage func(t *testing.T, w *testWAL)
		cause  walrepl.Cause
		msg    string
	}{
		{"safe_seq missing", func(t *testing.T, w *testWAL) {
			os.Remove(filepath.Join(w.tdir, walrepl.SafeSeqFile))
		}, walrepl.CauseSafeSeqMissing, "to upgrade from a pre-Phase-1 WAL set AUTONOMYOPS_WAL_LEGACY_UPGRADE=1;\n" +
			"to accept telemetry loss after deleting telemetry.wal set AUTONOMYOPS_WAL_OPERATOR_RESET=1"},
		{"safe_seq above the last frame", func(t *testing.T, w *testWAL) {
			os.WriteFile(filepath.Join(w.tdir, walrepl.SafeSeqFile), []byte("7\n"), 0o600)
		}, walrepl.CauseSafeSeqGTMaxSeq, "telemetry/wal: SAFESEQ_GT_MAXSEQ — safe_seq=7 but maxSeq=5"},
		{"WAL missing on an initialised node", func(t *testing.T, w *testWAL) {
			os.Remove(w.walPath)
		}, walrepl.CauseWALMissing, "AUTONOMYOPS_WAL_OPERATOR_RESET=1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := makeSimpleWAL(t, 5)
			c.damage(t, w)
			tc := newTestCLI(t)
			code, _, errOut := tc.run(t, "wal", "verify", "--data-dir", w.dataDir)
			if code != ctl.ExitWALViolated {
				t.Fatalf("exit %d", code)
			}
			mustContain(t, "stderr", errOut, c.msg)
			code, out, _ := tc.run(t, "wal", "verify", "--data-dir", w.dataDir, "-o", "json")
			if code != ctl.ExitWALViolated || jsonKeys(t, out)["cause"] != string(c.cause) {
				t.Fatalf("exit %d json %s", code, out)
			}
		})
	}
}

func TestWALVerify_arguments(t *testing.T) {
	tc := newTestCLI(t)
	if code, _, _ := tc.run(t, "wal", "verify"); code != ctl.ExitUsage {
		t.Fatalf("without --data-dir: exit %d", code)
	}
	code, _, errOut := tc.run(t, "wal", "verify", "--data-dir", filepath.Join(t.TempDir(), "nope"))
	if code != ctl.ExitError {
		t.Fatalf("missing data dir: exit %d", code)
	}
	mustContain(t, "stderr", errOut, "no such file or directory")

	// The telemetry directory given instead of the data directory.
	w := makeSimpleWAL(t, 1)
	code, _, errOut = tc.run(t, "wal", "verify", "--data-dir", w.tdir)
	if code != ctl.ExitUsage {
		t.Fatalf("telemetry dir as --data-dir: exit %d", code)
	}
	mustContain(t, "stderr", errOut, "--data-dir "+w.dataDir)

	// A fresh data directory: nothing to check yet, and that is fine.
	code, out, _ := tc.run(t, "wal", "verify", "--data-dir", t.TempDir())
	if code != ctl.ExitOK {
		t.Fatalf("fresh data dir: exit %d", code)
	}
	mustContain(t, "stdout", out, "no WAL yet")
}

func TestWALStatus_offline(t *testing.T) {
	w := makeSimpleWAL(t, 12)
	st, _ := os.Stat(w.walPath)
	tc := newTestCLI(t)
	code, out, _ := tc.run(t, "wal", "status", "--data-dir", w.dataDir)
	if code != ctl.ExitOK {
		t.Fatalf("exit %d", code)
	}
	mustContain(t, "table", out, "STATE", "ok", "INITIALIZED", "true", "LAST_SEQ", "12", "SAFE_SEQ",
		"telemetry.wal", fmt.Sprintf("%d bytes", st.Size()), "telemetry.safe_seq")

	code, out, _ = tc.run(t, "wal", "status", "--data-dir", w.dataDir, "-o", "json")
	if code != ctl.ExitOK {
		t.Fatalf("exit %d", code)
	}
	var res struct {
		OK          bool   `json:"ok"`
		Initialized bool   `json:"initialized"`
		LastSeq     uint64 `json:"last_seq"`
		SafeSeq     uint64 `json:"safe_seq"`
		Files       []struct {
			Name string `json:"name"`
			Size int64  `json:"size"`
		} `json:"files"`
	}
	if err := jsonUnmarshal(out, &res); err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int64{}
	for _, f := range res.Files {
		sizes[f.Name] = f.Size
	}
	if !res.OK || !res.Initialized || res.LastSeq != 12 || res.SafeSeq != 12 || sizes[walrepl.WALFile] != st.Size() || sizes[walrepl.SafeSeqFile] != 3 {
		t.Fatalf("json: %+v", res)
	}

	// A damaged WAL: the status still prints, and the exit says so.
	b, _ := os.ReadFile(w.walPath)
	b[w.offsets[0]+walrepl.FrameHeaderSize] ^= 0xff
	os.WriteFile(w.walPath, b, 0o600)
	code, out, errOut := tc.run(t, "wal", "status", "--data-dir", w.dataDir)
	if code != ctl.ExitWALViolated {
		t.Fatalf("exit %d", code)
	}
	mustContain(t, "table", out, "VIOLATION COMMITTED_FRAME_CORRUPT")
	mustContain(t, "stderr", errOut, "telemetry/wal: COMMITTED_FRAME_CORRUPT — frame at Seq=1")
}

func TestWALInspect_offline(t *testing.T) {
	now := time.Now()
	old := now.Add(-3 * time.Hour)
	payloads := []string{
		`{"kind":"error","n":1}`, `{"kind":"info","n":2}`, `{"kind":"error","n":3}`, // old
		`{"kind":"error","n":4}`, `{"kind":"info","n":5}`, `{"kind":"error","n":6}`, `{"kind":"error","n":7}`, // recent
	}
	ts := []time.Time{old, old, old, now, now, now, now}
	w := makeWAL(t, payloads, ts)
	tc := newTestCLI(t)
	tc.Now = func() time.Time { return now.Add(time.Second) }

	inspect := func(args ...string) wire.InspectResponse {
		t.Helper()
		code, out, _ := tc.run(t, append([]string{"wal", "inspect", "--data-dir", w.dataDir, "-o", "json"}, args...)...)
		if code != ctl.ExitOK {
			t.Fatalf("exit %d", code)
		}
		var ir wire.InspectResponse
		decodeJSON(t, out, &ir)
		return ir
	}
	seqs := func(ir wire.InspectResponse) string {
		var s []string
		for _, f := range ir.Frames {
			s = append(s, fmt.Sprint(f.Seq))
		}
		return strings.Join(s, ",")
	}
	if got := seqs(inspect()); got != "1,2,3,4,5,6,7" {
		t.Fatalf("all: %s", got)
	}
	if got := seqs(inspect("--since", "1h")); got != "4,5,6,7" {
		t.Fatalf("--since 1h: %s", got)
	}
	if got := seqs(inspect("--since", "1h", "--kind", "error")); got != "4,6,7" {
		t.Fatalf("--since 1h --kind error: %s", got)
	}
	if got := seqs(inspect("--kind", "error", "--limit", "2")); got != "6,7" {
		t.Fatalf("--kind error --limit 2 (the newest): %s", got)
	}
	if got := seqs(inspect("--since", old.Add(-time.Minute).UTC().Format(time.RFC3339), "--limit", "3")); got != "5,6,7" {
		t.Fatalf("--since RFC3339 --limit 3: %s", got)
	}
	ir := inspect("--limit", "1")
	f := ir.Frames[0]
	var ev bytes.Buffer
	if err := json.Compact(&ev, f.Event); err != nil {
		t.Fatal(err)
	}
	if ir.Node != "node-a" || ir.SafeSeq != 7 || f.Epoch != 1 || f.Type != "event" || !f.TS.Equal(time.Unix(0, now.UnixNano())) || ev.String() != payloads[6] {
		t.Fatalf("frame: %+v (safe_seq %d)", f, ir.SafeSeq)
	}

	code, out, _ := tc.run(t, "wal", "inspect", "--data-dir", w.dataDir, "--kind", "error", "--since", "1h")
	if code != ctl.ExitOK {
		t.Fatalf("exit %d", code)
	}
	mustContain(t, "table", out, "SEQ", "KIND", "error", `{"kind":"error","n":7}`, "3 frames from node-a ("+w.tdir+"), safe_seq 7")
}

// A multi-segment WAL: `wal status --data-dir` lists the chain, `wal verify`
// passes, `wal inspect --data-dir` reads frames across every segment.
func TestWALOffline_segments(t *testing.T) {
	dataDir := t.TempDir()
	tdir := filepath.Join(dataDir, datadir.TelemetryDir)
	os.WriteFile(filepath.Join(dataDir, datadir.IdentityFile), []byte(`{"name":"node-a"}`+"\n"), 0o600)
	log := logrus.New()
	log.SetOutput(io.Discard)
	o := walrepl.DefaultOptions(tdir)
	o.Logger, o.SegmentBytes = log, walrepl.MinSegmentBytes
	wal, _, err := walrepl.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	for i := 0; i < 200; i++ {
		_, last, _ = wal.Append(1, walrepl.FrameEvent, time.Now().UnixNano(), [][]byte{[]byte(fmt.Sprintf(`{"kind":"info","i":%d,"pad":"%080d"}`, i, i))})
	}
	if err := wal.WaitDurable(context.Background(), last); err != nil {
		t.Fatal(err)
	}
	wal.SetSafeSeq(last)
	wal.Close()
	tc := newTestCLI(t)
	code, out, errOut := tc.run(t, "wal", "status", "--data-dir", dataDir, "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var c struct {
		OK       bool                  `json:"ok"`
		LastSeq  uint64                `json:"last_seq"`
		Segments []walrepl.SegmentInfo `json:"segments"`
		Repairs  []string              `json:"repairs"`
	}
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatal(err)
	}
	if !c.OK || c.LastSeq != 200 || len(c.Segments) < 3 || c.Segments[len(c.Segments)-1].Name != walrepl.WALFile ||
		c.Segments[0].Name != walrepl.SealedName(1) || c.Repairs == nil {
		t.Fatalf("wal status -o json: %s", out)
	}
	code, out, _ = tc.run(t, "wal", "status", "--data-dir", dataDir)
	if code != 0 || !strings.Contains(out, "SEGMENTS") || !strings.Contains(out, walrepl.SealedName(1)) {
		t.Fatalf("wal status table:\n%s", out)
	}
	if code, _, errOut := tc.run(t, "wal", "verify", "--data-dir", dataDir); code != 0 {
		t.Fatalf("wal verify: %d %s", code, errOut)
	}
	code, out, _ = tc.run(t, "wal", "inspect", "--data-dir", dataDir, "--limit", "0", "-o", "json")
	var ir wire.InspectResponse
	if err := json.Unmarshal([]byte(out), &ir); err != nil || code != 0 || len(ir.Frames) != 200 || ir.Frames[199].Seq != 200 {
		t.Fatalf("wal inspect: %d frames, code %d, %v", len(ir.Frames), code, err)
	}
}
