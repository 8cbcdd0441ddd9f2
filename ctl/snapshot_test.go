package ctl_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/autonomyops/orchestrator/ctl"
	"github.com/autonomyops/orchestrator/node/datadir"
	"github.com/autonomyops/orchestrator/node/snapshot"
	"github.com/autonomyops/orchestrator/walrepl"
	"github.com/sirupsen/logrus"
)

// snapFrames are frames first..safe: epoch 3, then from Seq 6 on epoch 8
// (Seq 6 its epoch-start frame).
func snapFrames(first, safe uint64) []walrepl.Frame {
	var out []walrepl.Frame
	for s := first; s <= safe; s++ {
		f := walrepl.Frame{Seq: s, Epoch: 3, Time: time.Date(2026, 12, 1, 0, 0, int(s), 0, time.UTC).UnixNano(),
			Type: walrepl.FrameEvent, Payload: []byte(fmt.Sprintf(`{"id":"ev-%d","kind":"k","agent":"a"}`, s))}
		if s >= 6 {
			f.Epoch = 8
		}
		if s == 6 {
			f.Type, f.Payload = walrepl.FrameEpochStart, []byte(`{"epoch":8}`)
		}
		out = append(out, f)
	}
	return out
}

// writeSnapshot writes a snapshot of frames first..safe to a file.
func writeSnapshot(t *testing.T, first, safe uint64) string {
	t.Helper()
	var buf bytes.Buffer
	h := snapshot.Header{ClusterName: "plant", Node: "n2", TakenAt: time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC),
		SafeSeq: safe, FirstSeq: first, LeaderEpoch: 8}
	if first > 1 {
		h.PrevEpoch = 3
	}
	etcd := snapshot.EtcdState{Revision: 77,
		Settings: []snapshot.KV{{Key: "config/ingest/max_batch", Value: []byte("500")}},
		Audit:    []snapshot.KV{{Key: "audit/00000000000000000001-n2", Value: []byte(`{"action":"settings_put"}`)}},
		Members:  []snapshot.KV{{Key: "members/n2", Value: []byte(`{"name":"n2"}`)}}}
	w, err := snapshot.NewWriter(&buf, h, etcd, []byte(`{"fleet":{"up_to":2,"agents":[],"by_kind":{},"events":2,"errors":0},"ids":[],"ids_up_to":2}`))
	if err != nil {
		t.Fatal(err)
	}
	fs := snapFrames(first, safe)
	for len(fs) > 0 {
		n := min(4, len(fs))
		if err := w.WriteFrames(fs[:n]); err != nil {
			t.Fatal(err)
		}
		fs = fs[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "a.snap")
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// readWAL opens a restored WAL the way a node does and returns its frames.
func readWAL(t *testing.T, tdir string) ([]walrepl.Frame, *walrepl.Report) {
	t.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	o := walrepl.DefaultOptions(tdir)
	o.Logger, o.Initialized = log, true
	w, rep, err := walrepl.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	base, _ := w.Base()
	fs, err := w.ReadFrames(base, rep.SafeSeq, 1<<20, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	return fs, rep
}

func TestSnapshotStatus(t *testing.T) {
	file := writeSnapshot(t, 1, 20)
	tc := newTestCLI(t)
	code, out, _ := tc.run(t, "snapshot", "status", file)
	for _, want := range []string{"version 1", "plant", "SAFE_SEQ    20", "Seq 1..20 (19 events)", "1 settings, 1 audit records, 1 members", "verified"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q", want)
		}
	}
	if code != ctl.ExitOK {
		t.Fatalf("exit %d", code)
	}
	code, out, _ = tc.run(t, "-o", "json", "snapshot", "status", file)
	var si map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &si) != nil || si["ok"] != true || si["safe_seq"] != 20.0 || si["first_seq"] != 1.0 ||
		si["last_seq"] != 20.0 || si["frames"] != 20.0 || si["cluster_name"] != "plant" || si["settings"] != 1.0 {
		t.Fatalf("json: %d %v", code, si)
	}
}

// A restore writes the frames at their Seqs with their epochs and
// timestamps, safe_seq, the checkpoint, node.json and the seed; a snapshot
// of a trimmed WAL restores a WAL that starts at its base.
func TestSnapshotRestore(t *testing.T) {
	for _, tc := range []struct {
		name        string
		first, safe uint64
	}{{"fromSeq1", 1, 20}, {"trimmedBase", 9, 20}, {"empty", 1, 0}, {"allTrimmed", 21, 20}} {
		t.Run(tc.name, func(t *testing.T) {
			file := writeSnapshot(t, tc.first, tc.safe)
			dir := filepath.Join(t.TempDir(), "new", "n1")
			cli := newTestCLI(t)
			code, out, _ := cli.run(t, "snapshot", "restore", file, "--data-dir", dir, "--name", "n1")
			if code != ctl.ExitOK || !strings.Contains(out, "Next: restore every other node") {
				t.Fatalf("exit %d", code)
			}
			got, rep := readWAL(t, filepath.Join(dir, datadir.TelemetryDir))
			want := snapFrames(tc.first, tc.safe)
			if rep.SafeSeq != tc.safe || len(got) != len(want) {
				t.Fatalf("safe_seq %d, %d frames; want %d, %d", rep.SafeSeq, len(got), tc.safe, len(want))
			}
			for i := range want {
				g, w := got[i], want[i]
				if g.Seq != w.Seq || g.Epoch != w.Epoch || g.Time != w.Time || g.Type != w.Type || !bytes.Equal(g.Payload, w.Payload) {
					t.Fatalf("frame %d: %+v, want %+v", i, g, w)
				}
			}
			id, ok, err := datadir.ReadIdentity(dir)
			if err != nil || !ok || id.Name != "n1" || id.ClusterName != "plant" {
				t.Errorf("node.json: %+v %v %v", id, ok, err)
			}
			seed, ok, err := snapshot.ReadSeed(dir)
			if err != nil || !ok || seed.EpochBase != 8 || len(seed.Settings) != 1 || len(seed.Audit) != 1 || seed.Snapshot.SafeSeq != tc.safe || len(seed.SHA256) != 64 {
				t.Errorf("seed: %+v %v %v", seed, ok, err)
			}
			if b, err := os.ReadFile(filepath.Join(dir, datadir.TelemetryDir, datadir.CheckpointFile)); err != nil || !strings.Contains(string(b), `"ids_up_to":2`) {
				t.Errorf("checkpoint: %s %v", b, err)
			}
			if left := leftovers(t, filepath.Dir(dir)); len(left) != 1 {
				t.Errorf("beside the data dir: %v", left)
			}
		})
	}
}

func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// A corrupt, truncated or unknown-version snapshot is refused by status and
// by restore with what is wrong and what to do, exit 8, and restore writes
// nothing: the data dir stays absent (or empty) and nothing is left beside it.
func TestSnapshotRestore_refusesBadFiles(t *testing.T) {
	good, err := os.ReadFile(writeSnapshot(t, 1, 30))
	if err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	for _, tc := range []struct {
		name  string
		bytes []byte
		says  []string
	}{
		{"flippedPayloadByte", mutate(func(b []byte) []byte { b[len(b)/2] ^= 0x20; return b }), []string{"corrupt", "use another copy"}},
		{"flippedChecksum", mutate(func(b []byte) []byte { b[len(b)-1] ^= 0xff; return b }), []string{"checksum mismatch", "use another copy"}},
		{"truncated", good[:len(good)*2/3], []string{"truncated", "incomplete"}},
		{"truncatedTrailer", good[:len(good)-10], []string{"truncated", "incomplete"}},
		{"version9", mutate(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[8:], 9); return b }), []string{"format version 9", "release that wrote it"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "bad.snap")
			if err := os.WriteFile(file, tc.bytes, 0o600); err != nil {
				t.Fatal(err)
			}
			cli := newTestCLI(t)
			code, _, errOut := cli.run(t, "snapshot", "status", file)
			if code != ctl.ExitBadSnapshot || !strings.Contains(errOut, tc.says[0]) || !strings.Contains(errOut, "hint: ") {
				t.Errorf("status: exit %d, stderr %q", code, errOut)
			}
			root := t.TempDir()
			absent := filepath.Join(root, "absent", "n1")
			code, _, errOut = cli.run(t, "snapshot", "restore", file, "--data-dir", absent, "--name", "n1")
			if code != ctl.ExitBadSnapshot {
				t.Errorf("restore: exit %d, want %d", code, ctl.ExitBadSnapshot)
			}
			for _, s := range append(tc.says, "nothing was written to "+absent) {
				if !strings.Contains(errOut, s) {
					t.Errorf("restore's error lacks %q: %s", s, errOut)
				}
			}
			if _, err := os.Stat(filepath.Join(root, "absent")); !os.IsNotExist(err) {
				t.Errorf("restore created %s: %v", filepath.Join(root, "absent"), err)
			}
			empty := filepath.Join(root, "empty")
			os.Mkdir(empty, 0o700)
			if code, _, _ := cli.run(t, "snapshot", "restore", file, "--data-dir", empty, "--name", "n1"); code != ctl.ExitBadSnapshot {
				t.Errorf("restore into an empty dir: exit %d", code)
			}
			if left := leftovers(t, empty); len(left) != 0 {
				t.Errorf("restore wrote %v into %s", left, empty)
			}
			if left := leftovers(t, root); len(left) != 1 || left[0] != "empty" {
				t.Errorf("restore left %v in %s", left, root)
			}
		})
	}
}

// A data dir that holds anything is refused, and left as it was.
func TestSnapshotRestore_refusesNonEmptyDir(t *testing.T) {
	file := writeSnapshot(t, 1, 5)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "node.json"), []byte(`{"name":"old"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cli := newTestCLI(t)
	code, _, errOut := cli.run(t, "snapshot", "restore", file, "--data-dir", dir, "--name", "n1")
	if code != ctl.ExitError || !strings.Contains(errOut, "is not empty (node.json)") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if left := leftovers(t, dir); len(left) != 1 {
		t.Errorf("dir now holds %v", left)
	}
	if code, _, _ := cli.run(t, "snapshot", "restore", file, "--data-dir", t.TempDir()); code != ctl.ExitUsage {
		t.Errorf("without --name: exit %d", code)
	}
}

// snapLeader is a leader that streams body as its snapshot.
func snapLeader(t *testing.T, body []byte) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"ok","role":"leader","node":"n1","wal":"ok"}`)
	})
	mux.HandleFunc("/v1/snapshot", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", wire.ContentTypeSnapshot)
		w.Write(body)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// snapshot save writes FILE only when the stream is a whole, verified
// snapshot: a cut or damaged stream leaves no FILE, no FILE.tmp, and an
// existing FILE as it was.
func TestSnapshotSave(t *testing.T) {
	good, err := os.ReadFile(writeSnapshot(t, 1, 25))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "s.snap")
	cli := newTestCLI(t)
	code, out, _ := cli.run(t, "--endpoints", snapLeader(t, good), "snapshot", "save", file)
	if code != ctl.ExitOK || !strings.Contains(out, "Snapshot saved to "+file) || !strings.Contains(out, "Seq 1..25") {
		t.Fatalf("save: exit %d", code)
	}
	if b, _ := os.ReadFile(file); !bytes.Equal(b, good) {
		t.Fatal("the saved file differs from the stream")
	}
	for name, body := range map[string][]byte{
		"cut":     good[:len(good)-20],
		"flipped": func() []byte { b := bytes.Clone(good); b[200] ^= 1; return b }(),
	} {
		code, _, errOut := cli.run(t, "--endpoints", snapLeader(t, body), "snapshot", "save", file)
		if code != ctl.ExitError || !strings.Contains(errOut, "nothing was saved") {
			t.Errorf("%s: exit %d: %s", name, code, errOut)
		}
		if b, _ := os.ReadFile(file); !bytes.Equal(b, good) {
			t.Errorf("%s: the earlier snapshot was changed", name)
		}
		fresh := filepath.Join(dir, name+".snap")
		cli.run(t, "--endpoints", snapLeader(t, body), "snapshot", "save", fresh)
		if _, err := os.Stat(fresh); !os.IsNotExist(err) {
			t.Errorf("%s: a failed save left %s", name, fresh)
		}
	}
	if left := leftovers(t, dir); len(left) != 1 {
		t.Errorf("the directory holds %v", left)
	}
}
