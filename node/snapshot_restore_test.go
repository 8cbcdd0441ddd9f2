package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/api/client"
	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/autonomyops/orchestrator/ctl"
	"github.com/autonomyops/orchestrator/node/proctest"
)

// autonomyctl runs one command line of the CLI in-process and returns its
// exit status, stdout and stderr.
func autonomyctl(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	cli := &ctl.CLI{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }, ConfigDir: t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code := cli.Run(ctx, args)
	t.Logf("autonomyctl %s → %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	return code, out.String(), errb.String()
}

func auditOf(t *testing.T, base string) []wire.AuditRecord {
	t.Helper()
	code, _, b := do(t, "GET", base+"/v1/audit?limit=10000", "", "", nil)
	var ar wire.AuditResponse
	if code != http.StatusOK || json.Unmarshal(b, &ar) != nil {
		t.Fatalf("GET /v1/audit: %d %s", code, b)
	}
	return ar.Records
}

// TestSnapshot_saveUnderLoadRestoreIntoNewCluster: a snapshot saved with
// `autonomyctl snapshot save` from a three-node cluster under write load,
// restored with `autonomyctl snapshot restore` into the three data dirs of a
// fresh cluster (new ports, new etcd), holds every event acknowledged before
// its safe_seq at the same Seq, every frame up to safe_seq identical on every
// node (Seq, epoch, timestamp, payload), the settings and the audit trail;
// and the restored cluster takes new writes above safe_seq.
func TestSnapshot_saveUnderLoadRestoreIntoNewCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: a multi-process test with real binaries (make test and CI run it without -short)")
	}
	a := proctest.NewCluster(t, 3)
	a.Start()
	la := a.WaitLeader(60 * time.Second)
	// put writes a setting on whoever leads, retrying while leadership moves.
	put := func(key, val string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, _, b := do(t, "PUT", a.WaitLeader(30*time.Second).URL()+client.SettingPath(key), "", `{"value":`+val+`}`, nil)
			if code == http.StatusOK {
				return
			}
			if time.Now().After(deadline) || (code != http.StatusServiceUnavailable && code != http.StatusTemporaryRedirect) {
				t.Fatalf("PUT %s: %d %s", key, code, b)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	put("log/level", `"warn"`)

	// Write load: four writers, each event with a unique id.
	w := proctest.NewWriter(a)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				w.Write(ctx, fmt.Sprintf("w%d-%d", g, i))
			}
		}()
	}
	defer func() { stop(); wg.Wait() }()
	waitAcked := func(n int) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for len(w.Snapshot()) < n {
			if time.Now().After(deadline) {
				t.Fatalf("only %d events acknowledged, want %d", len(w.Snapshot()), n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitAcked(150)
	// Settings changes and then a planned failover, under the load: the new
	// epoch is an etcd revision far above the revision a new cluster's etcd
	// starts from (the restore loads the keys in a few transactions), which
	// is what the restored cluster's epoch base has to cover.
	for i := 0; i < 30; i++ {
		put("ingest/max_batch", fmt.Sprint(700+i))
	}
	put("ingest/max_batch", "777")
	la = a.WaitLeader(30 * time.Second)
	// Two planned failovers, the second back to the first leader: it
	// campaigns again after the first, so it leads in an epoch (its new
	// leader key's revision) above all those etcd writes.
	first := la.Name
	for _, to := range []string{"", first} {
		body := ""
		if to != "" {
			body = fmt.Sprintf(`{"to":%q}`, to)
		}
		if code, _, b := do(t, "POST", la.URL()+"/v1/ha/failover", "", body, nil); code != http.StatusOK {
			t.Fatalf("failover to %q: %d %s", to, code, b)
		}
		la = a.WaitLeader(60 * time.Second)
	}
	waitAcked(300)
	auditBefore := auditOf(t, la.URL())
	ackedBefore := w.Snapshot()

	file := filepath.Join(t.TempDir(), "cluster.snap")
	code, out, _ := autonomyctl(t, "--endpoints", strings.Join(urls(a), ","), "-o", "json", "snapshot", "save", file)
	var saved struct {
		SafeSeq  uint64 `json:"safe_seq"`
		FirstSeq uint64 `json:"first_seq"`
		Frames   uint64 `json:"frames"`
		Settings int    `json:"settings"`
	}
	if code != ctl.ExitOK || json.Unmarshal([]byte(out), &saved) != nil {
		t.Fatalf("snapshot save: exit %d", code)
	}
	S := saved.SafeSeq
	// The load goes on after the snapshot: those events are not in it.
	waitAcked(len(ackedBefore) + 200)
	stop()
	wg.Wait()
	ackedAll := w.Snapshot()
	if saved.FirstSeq != 1 || saved.Frames != S || saved.Settings != 2 {
		t.Fatalf("saved %+v", saved)
	}
	for id, seq := range ackedBefore {
		if seq > S {
			t.Fatalf("%s was acknowledged at Seq=%d before the save began, above its safe_seq %d", id, seq, S)
		}
	}
	inSnap := 0
	for _, seq := range ackedAll {
		if seq <= S {
			inSnap++
		}
	}
	t.Logf("safe_seq %d; %d events acknowledged before the save, %d at or below safe_seq, %d in all", S, len(ackedBefore), inSnap, len(ackedAll))
	if code, _, _ := autonomyctl(t, "snapshot", "status", file); code != ctl.ExitOK {
		t.Fatalf("snapshot status: exit %d", code)
	}
	la = a.WaitLeader(30 * time.Second)
	framesA := map[uint64]wire.Frame{}
	for _, f := range proctest.AllFrames(t, la.URL()) {
		framesA[f.Seq] = f
	}
	for _, n := range a.Nodes {
		n.Kill()
	}

	// A new cluster: new ports, empty etcd; each data dir restored.
	b := proctest.NewCluster(t, 3)
	for _, n := range b.Nodes {
		if code, _, _ := autonomyctl(t, "snapshot", "restore", file, "--data-dir", n.DataDir, "--name", n.Name); code != ctl.ExitOK {
			t.Fatalf("restore %s: exit %d", n.Name, code)
		}
	}
	b.Start()
	lb := b.WaitLeader(60 * time.Second)

	// Every acknowledged event at or below safe_seq, at its Seq.
	bySeq := map[uint64]string{}
	maxSeq := uint64(0)
	for _, ev := range proctest.AllEvents(t, lb.URL()) {
		var body struct {
			ID string `json:"id"`
		}
		json.Unmarshal(ev.Event, &body)
		bySeq[ev.Seq] = body.ID
		maxSeq = max(maxSeq, ev.Seq)
	}
	for id, seq := range ackedAll {
		if seq <= S && bySeq[seq] != id {
			t.Errorf("event %s acknowledged at Seq=%d: the restored cluster holds %q there", id, seq, bySeq[seq])
		}
	}
	if maxSeq > S {
		t.Errorf("the restored cluster serves an event at Seq=%d, above the snapshot's safe_seq %d", maxSeq, S)
	}
	// Every frame up to safe_seq, identical on every node.
	for _, n := range b.Nodes {
		got := map[uint64]wire.Frame{}
		for _, f := range proctest.AllFrames(t, n.URL()) {
			got[f.Seq] = f
		}
		for seq := uint64(1); seq <= S; seq++ {
			g, ok := got[seq]
			want := framesA[seq]
			if !ok || g.Epoch != want.Epoch || !g.TS.Equal(want.TS) || g.Type != want.Type || string(g.Event) != string(want.Event) {
				t.Fatalf("%s: frame Seq=%d is %+v, want %+v", n.Name, seq, g, want)
			}
		}
	}
	// The settings and the audit trail.
	for key, val := range map[string]string{"ingest/max_batch": "777", "log/level": `"warn"`} {
		code, _, body := do(t, "GET", lb.URL()+client.SettingPath(key), "", "", nil)
		var st wire.Setting
		if code != http.StatusOK || json.Unmarshal(body, &st) != nil || string(st.Value) != val {
			t.Errorf("setting %s after restore: %d %s", key, code, body)
		}
	}
	auditAfter := auditOf(t, lb.URL())
	have := map[string]bool{}
	restoreRecorded := false
	for _, r := range auditAfter {
		k, _ := json.Marshal(r)
		have[string(k)] = true
		restoreRecorded = restoreRecorded || r.Action == "snapshot_restore"
	}
	for _, r := range auditBefore {
		if k, _ := json.Marshal(r); !have[string(k)] {
			t.Errorf("audit record %s is missing after the restore", k)
		}
	}
	if len(auditBefore) < 2 || !restoreRecorded {
		t.Errorf("audit: %d records before; restore recorded: %v", len(auditBefore), restoreRecorded)
	}

	// The restored cluster goes on: new events land above safe_seq, in a new
	// epoch above every restored one.
	wb := proctest.NewWriter(b)
	wctx, wcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer wcancel()
	for i := 0; i < 20; i++ {
		if seq := wb.Write(wctx, fmt.Sprintf("after-%d", i)); seq <= S {
			t.Fatalf("event after the restore got Seq=%d, not above safe_seq %d", seq, S)
		}
	}
	_, h := lb.Health()
	t.Logf("restored frames end in epoch %d; the restored cluster leads in epoch %d", framesA[S].Epoch, h.Epoch)
	if want := framesA[S].Epoch; h.Epoch <= want {
		t.Errorf("the restored cluster leads in epoch %d, not above the snapshot's last epoch %d", h.Epoch, want)
	}
	all := wb.Snapshot()
	for id, seq := range ackedAll {
		if seq <= S {
			all[id] = seq
		}
	}
	waitConverged(t, b, 30*time.Second)
	b.CheckAllNodes(all)

	// A restart of the whole restored cluster (the seed is gone by now): the
	// epoch base comes from etcd, and the cluster leads and writes again.
	for _, n := range b.Nodes {
		if code := n.Stop(); code != 0 {
			t.Fatalf("%s stopped with status %d", n.Name, code)
		}
	}
	b.Start()
	lb = b.WaitLeader(60 * time.Second)
	if _, h2 := lb.Health(); h2.Epoch <= h.Epoch {
		t.Errorf("after a restart the cluster leads in epoch %d, not above %d", h2.Epoch, h.Epoch)
	}
	if seq := wb.Write(wctx, "after-restart"); seq <= S+20 {
		t.Errorf("an event after the restart got Seq=%d", seq)
	}
}

// TestSnapshot_trimmedWALWithCheckpoint: a snapshot of a WAL that retention
// has trimmed starts at the leader's base, and carries the fleet/idempotency
// checkpoint: restored into a new single node, the fleet summary still counts
// the trimmed events, and a retry of an event whose frame was trimmed before
// the snapshot answers its original Seq without writing it again.
func TestSnapshot_trimmedWALWithCheckpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: a multi-process test with real binaries (make test and CI run it without -short)")
	}
	const bound = 1 << 20
	a := proctest.NewCluster(t, 1, "--wal-retention-bytes", fmt.Sprint(bound))
	a.Start()
	la := a.WaitLeader(60 * time.Second)
	pad := strings.Repeat("x", 900)
	var firstSeq uint64
	for b := 0; b < 35; b++ { // ≈ 3.4 MiB: retention trims
		var evs []string
		for i := 0; i < 100; i++ {
			evs = append(evs, fmt.Sprintf(`{"id":"ev-%d-%d","kind":"k%d","agent":"agent-%d","pad":%q}`, b, i, i%3, b%5, pad))
		}
		code, _, body := do(t, "POST", la.URL()+"/v1/telemetry/events", "", "["+strings.Join(evs, ",")+"]", nil)
		if code != http.StatusOK {
			t.Fatalf("batch %d: %d %s", b, code, body)
		}
		if b == 0 {
			var ir wire.IngestResponse
			json.Unmarshal(body, &ir)
			firstSeq = ir.Seqs[0]
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if ws, _ := walStatus(la); ws.Base > firstSeq+1000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("retention did not trim")
		}
		time.Sleep(100 * time.Millisecond)
	}
	summary := func(n *proctest.Node) wire.FleetSummary {
		t.Helper()
		code, _, body := do(t, "GET", n.URL()+"/v1/fleet/summary", "", "", nil)
		var fs wire.FleetSummary
		if code != http.StatusOK || json.Unmarshal(body, &fs) != nil {
			t.Fatalf("fleet summary: %d %s", code, body)
		}
		return fs
	}
	before := summary(la)
	file := filepath.Join(t.TempDir(), "trimmed.snap")
	code, out, _ := autonomyctl(t, "--endpoints", la.URL(), "-o", "json", "snapshot", "save", file)
	var saved struct {
		SafeSeq  uint64 `json:"safe_seq"`
		FirstSeq uint64 `json:"first_seq"`
	}
	if code != ctl.ExitOK || json.Unmarshal([]byte(out), &saved) != nil || saved.FirstSeq <= firstSeq+1000 {
		t.Fatalf("snapshot save: exit %d, %+v", code, saved)
	}
	la.Kill()

	b := proctest.NewCluster(t, 1)
	n := b.Nodes[0]
	if code, _, _ := autonomyctl(t, "snapshot", "restore", file, "--data-dir", n.DataDir, "--name", n.Name); code != ctl.ExitOK {
		t.Fatalf("restore: exit %d", code)
	}
	b.Start()
	lb := b.WaitLeader(60 * time.Second)
	ws, _ := walStatus(lb)
	if ws.Base != saved.FirstSeq {
		t.Errorf("restored WAL's base %d, want the snapshot's first Seq %d", ws.Base, saved.FirstSeq)
	}
	after := summary(lb)
	if after.Events != before.Events || after.Events != 3500 || len(after.Agents) != len(before.Agents) || after.ByKind["k0"] != before.ByKind["k0"] {
		t.Errorf("fleet summary after restore %+v, before %+v", after, before)
	}
	code, _, body := do(t, "POST", lb.URL()+"/v1/telemetry/events", "", fmt.Sprintf(`{"id":"ev-0-0","kind":"k0","agent":"agent-0","pad":%q}`, pad), nil)
	var ir wire.IngestResponse
	json.Unmarshal(body, &ir)
	if code != http.StatusOK || len(ir.Seqs) != 1 || ir.Seqs[0] != firstSeq {
		t.Errorf("retry of an event trimmed before the snapshot: %d %s, want Seq=%d", code, body, firstSeq)
	}
}

// TestSnapshot_emptyNodeInRestoredClusterIsLearner: in a cluster restored
// from a snapshot, a node started with an empty data directory (the operator
// restored two of three) does not hold the restored history: it joins as a
// learner (DESIGN §6 rule 7), catches up from the leader, and ends with
// every frame.
func TestSnapshot_emptyNodeInRestoredClusterIsLearner(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: a multi-process test with real binaries (make test and CI run it without -short)")
	}
	a := proctest.NewCluster(t, 1)
	a.Start()
	la := a.WaitLeader(60 * time.Second)
	w := proctest.NewWriter(a)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := 0; i < 50; i++ {
		if w.Write(ctx, fmt.Sprintf("e%d", i)) == 0 {
			t.Fatal("write failed")
		}
	}
	file := filepath.Join(t.TempDir(), "one.snap")
	if code, _, _ := autonomyctl(t, "--endpoints", la.URL(), "snapshot", "save", file); code != ctl.ExitOK {
		t.Fatalf("save: exit %d", code)
	}
	la.Kill()

	b := proctest.NewCluster(t, 3)
	for _, n := range b.Nodes[:2] {
		if code, _, _ := autonomyctl(t, "snapshot", "restore", file, "--data-dir", n.DataDir, "--name", n.Name); code != ctl.ExitOK {
			t.Fatalf("restore %s: exit %d", n.Name, code)
		}
	}
	// All three start together: restored nodes are unconfirmed until a
	// leader has seen their logs, so the first election needs every voter
	// (operations.md); the empty one, a learner, is not one.
	b.Start()
	empty := b.Nodes[2]
	b.WaitLeader(60 * time.Second)
	waitLog(t, empty, "WAL_BELOW_RESTORED_SNAPSHOT", 1)
	waitConverged(t, b, 60*time.Second)
	b.CheckAllNodes(w.Snapshot())
}
