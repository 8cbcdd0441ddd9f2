package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/api/client"
	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/autonomyops/orchestrator/ctl"
	"github.com/autonomyops/orchestrator/node/proctest"
	"github.com/autonomyops/orchestrator/settings"
)

// settingsCluster is a running three-node cluster with helpers to write
// settings on the leader and wait for every node to apply them.
type settingsCluster struct {
	t *testing.T
	c *proctest.Cluster
}

func (sc *settingsCluster) leader() *proctest.Node { return sc.c.WaitLeader(30 * time.Second) }

// put writes a setting on the leader and fails unless it is accepted.
func (sc *settingsCluster) put(key, value string) {
	sc.t.Helper()
	code, _, b := do(sc.t, "PUT", sc.leader().URL()+client.SettingPath(key), "", `{"value":`+value+`}`, nil)
	if code != http.StatusOK {
		sc.t.Fatalf("PUT %s = %s: %d %s", key, value, code, b)
	}
}

func (sc *settingsCluster) del(key string) {
	sc.t.Helper()
	code, _, b := do(sc.t, "DELETE", sc.leader().URL()+client.SettingPath(key), "", "", nil)
	if code != http.StatusOK {
		sc.t.Fatalf("DELETE %s: %d %s", key, code, b)
	}
}

// applied returns what node n applies for key.
func applied(t *testing.T, n *proctest.Node, key string) (wire.SettingInfo, bool) {
	resp, err := proctest.Client.Get(n.URL() + "/v1/node/settings")
	if err != nil {
		return wire.SettingInfo{}, false
	}
	defer resp.Body.Close()
	var ns wire.NodeSettings
	if json.NewDecoder(resp.Body).Decode(&ns) != nil || ns.Node != n.Name {
		return wire.SettingInfo{}, false
	}
	for _, s := range ns.Settings {
		if s.Key == key {
			return s, true
		}
	}
	t.Fatalf("%s: /v1/node/settings lacks %s", n.Name, key)
	return wire.SettingInfo{}, false
}

// waitApplied waits until every node applies value (compact JSON) for key
// from source, as its etcd watch delivers it.
func (sc *settingsCluster) waitApplied(key, value, source string) {
	sc.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, n := range sc.c.Nodes {
		for {
			s, ok := applied(sc.t, n, key)
			if ok && string(s.Value) == value && s.Source == source {
				break
			}
			if time.Now().After(deadline) {
				sc.t.Fatalf("%s applies %s = %s (%s), want %s (%s)", n.Name, key, s.Value, s.Source, value, source)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// waitMetric waits until every node's /metrics shows series at want (the
// retention limits follow the settings).
func (sc *settingsCluster) waitMetric(series string, want float64) {
	sc.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, n := range sc.c.Nodes {
		for metric(n, series) != want {
			if time.Now().After(deadline) {
				sc.t.Fatalf("%s: %s = %v, want %v", n.Name, series, metric(n, series), want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// failoverTo moves leadership to n (a planned failover) and waits for it.
func (sc *settingsCluster) failoverTo(n *proctest.Node) {
	sc.t.Helper()
	l := sc.leader()
	if l == n {
		return
	}
	code, _, b := do(sc.t, "POST", l.URL()+"/v1/ha/failover", "", fmt.Sprintf(`{"to":%q}`, n.Name), nil)
	if code != http.StatusOK {
		sc.t.Fatalf("failover to %s: %d %s", n.Name, code, b)
	}
	if got := sc.leader(); got != n {
		sc.t.Fatalf("leader is %s, want %s", got.Name, n.Name)
	}
}

func ingestBody(t *testing.T, base, body string) (int, wire.IngestResponse, string) {
	t.Helper()
	code, _, b := do(t, "POST", base+"/v1/telemetry/events", "", body, nil)
	var ir wire.IngestResponse
	json.Unmarshal(b, &ir)
	return code, ir, string(b)
}

func eventBatch(prefix string, from, n int, pad string) string {
	evs := make([]string, n)
	for i := range evs {
		evs[i] = fmt.Sprintf(`{"id":"%s-%d","kind":"k","agent":"a","pad":%q}`, prefix, from+i, pad)
	}
	return "[" + strings.Join(evs, ",") + "]"
}

func trimmedOn(n *proctest.Node) uint64 {
	ws, _ := walStatus(n)
	return ws.TrimmedFrames
}

// TestSettings_LiveOnEveryNode: each settings key is written on the leader
// and its effect is observed on every node, with no restart: the retention
// bounds trim every node's WAL, the ingest limits and the idempotency window
// hold on each node as it leads (planned failovers), and the log level
// changes every node's log. Unknown keys and bad values are refused with the
// list of keys and write nothing. autonomyctl settings list shows value,
// default and source. A clean stop of every node then logs no error.
func TestSettings_LiveOnEveryNode(t *testing.T) {
	c := proctest.NewCluster(t, 3)
	c.Start()
	sc := &settingsCluster{t: t, c: c}
	waitSteady(t, c) // one leader, heard by every node
	t.Run("unknown keys and bad values are 400 with the key list and write nothing", func(t *testing.T) {
		for _, tc := range []struct{ key, value, code string }{
			{"totally/made-up", `{"x":1}`, "unknown_setting"},
			{"ingest/max_batch", `0`, "bad_setting"},
			{"ingest/max_batch", `"abc"`, "bad_setting"},
			{"ingest/max_batch", `2.5`, "bad_setting"},
			{"ingest/max_body_bytes", `100`, "bad_setting"},
			{"ingest/idempotency_window", `10`, "bad_setting"},
			{"ingest/idempotency_window_bytes", `1000`, "bad_setting"},
			{"retention/max_bytes", `1000`, "bad_setting"},
			{"retention/max_age", `"1s"`, "bad_setting"},
			{"log/level", `"verbose"`, "bad_setting"},
		} {
			code, _, b := do(t, "PUT", sc.leader().URL()+client.SettingPath(tc.key), "", `{"value":`+tc.value+`}`, nil)
			var er wire.ErrorResponse
			json.Unmarshal(b, &er)
			if code != http.StatusBadRequest || er.Error != tc.code || len(er.Settings) != len(settings.Schema()) {
				t.Errorf("PUT %s = %s: %d %s", tc.key, tc.value, code, b)
			}
			for _, s := range settings.Schema() {
				if !strings.Contains(er.Message, s.Key+": ") || !strings.Contains(er.Message, s.Bounds()) {
					t.Errorf("PUT %s = %s: the message does not list %s with %s:\n%s", tc.key, tc.value, s.Key, s.Bounds(), er.Message)
				}
			}
			if code, _, b := do(t, "GET", sc.leader().URL()+client.SettingPath(tc.key), "", "", nil); code != http.StatusNotFound {
				t.Errorf("after a refused PUT, %s is stored: %d %s", tc.key, code, b)
			}
		}
		// Through autonomyctl: refused, exit status 5, the keys listed.
		var out, errOut bytes.Buffer
		cli := &ctl.CLI{Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }, ConfigDir: t.TempDir()}
		code := cli.Run(context.Background(), []string{"settings", "set", "totally/made-up", `{"x":1}`, "--endpoints", sc.leader().URL()})
		if code != ctl.ExitHTTP || !strings.Contains(errOut.String(), "not written") || !strings.Contains(errOut.String(), "ingest/max_batch: integer, 1..100000 events") {
			t.Errorf("autonomyctl settings set totally/made-up: exit %d\n%s%s", code, out.String(), errOut.String())
		}
	})

	// Written before any bound is set: 35 batches × 100 events × ~1 KiB.
	pad := strings.Repeat("x", 900)
	for b := 0; b < 35; b++ {
		if code, _, body := ingestBody(t, sc.leader().URL(), eventBatch(fmt.Sprintf("r%d", b), 0, 100, pad)); code != 200 {
			t.Fatalf("batch %d: %d %s", b, code, body)
		}
	}
	waitConverged(t, c, 30*time.Second)

	t.Run("retention/max_bytes trims every node's WAL", func(t *testing.T) {
		for _, n := range c.Nodes {
			if tr := trimmedOn(n); tr != 0 {
				t.Fatalf("%s trimmed %d frames before any bound was set", n.Name, tr)
			}
		}
		sc.put("retention/max_bytes", "1048576")
		sc.waitApplied("retention/max_bytes", "1048576", "etcd")
		sc.waitMetric("autonomy_wal_retention_limit_bytes", 1048576)
		const unit = 256<<10 + 1100 // one segment (a quarter of the bound in effect) plus one frame
		deadline := time.Now().Add(20 * time.Second)
		for _, n := range c.Nodes {
			for {
				ws, _ := walStatus(n)
				if ws.TrimmedFrames > 0 && ws.BytesOnDisk <= 1<<20+unit {
					t.Logf("%s: trimmed %d frames, %d bytes on disk", n.Name, ws.TrimmedFrames, ws.BytesOnDisk)
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s did not trim to the new bound: %+v", n.Name, ws)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		sc.del("retention/max_bytes")
		sc.waitApplied("retention/max_bytes", "8589934592", "default") // the --wal-retention-bytes default
		sc.waitMetric("autonomy_wal_retention_limit_bytes", 8589934592)
	})

	// retention/max_age: frames must have been held for the age by the
	// node's monotonic clock (DESIGN §6 rule 13), and the smallest age is a
	// minute: set now, checked at the end.
	trimmedBeforeAge := map[string]uint64{}
	t.Run("retention/max_age is applied on every node", func(t *testing.T) {
		waitConverged(t, c, 30*time.Second)
		for _, n := range c.Nodes {
			trimmedBeforeAge[n.Name] = trimmedOn(n)
		}
		sc.waitMetric("autonomy_wal_retention_age_limit_seconds", 0) // --wal-retention-age: none
		sc.put("retention/max_age", `"1m"`)
		sc.waitApplied("retention/max_age", `"1m0s"`, "etcd")
		sc.waitMetric("autonomy_wal_retention_age_limit_seconds", 60)
	})
	ageSetAt := time.Now()

	t.Run("ingest limits and the idempotency window hold on every node as it leads", func(t *testing.T) {
		l := sc.leader()
		// Ids written under the default window (200000), then 2100 more.
		_, first, body := ingestBody(t, l.URL(), eventBatch("w", 0, 3, ""))
		if len(first.Seqs) != 3 {
			t.Fatalf("ingest: %s", body)
		}
		if code, _, body := ingestBody(t, l.URL(), eventBatch("w", 3, 2100, "")); code != 200 {
			t.Fatalf("ingest: %d %s", code, body)
		}
		if _, r, body := ingestBody(t, l.URL(), eventBatch("w", 0, 1, "")); len(r.Seqs) != 1 || r.Seqs[0] != first.Seqs[0] {
			t.Fatalf("under the default window a retry must answer the original Seq %d: %s", first.Seqs[0], body)
		}
		sc.put("ingest/max_batch", "5")
		sc.put("ingest/max_body_bytes", "2048")
		sc.put("ingest/idempotency_window", "1000")
		sc.waitApplied("ingest/max_batch", "5", "etcd")
		sc.waitApplied("ingest/max_body_bytes", "2048", "etcd")
		sc.waitApplied("ingest/idempotency_window", "1000", "etcd")
		for i, n := range c.Nodes {
			sc.failoverTo(n)
			if code, _, body := ingestBody(t, n.URL(), eventBatch(n.Name+"-six", 0, 6, "")); code != http.StatusBadRequest || !strings.Contains(body, "more than 5 events") {
				t.Errorf("%s: a batch of 6 under ingest/max_batch=5: %d %s", n.Name, code, body)
			}
			if code, _, body := ingestBody(t, n.URL(), eventBatch(n.Name+"-five", 0, 5, "")); code != http.StatusOK {
				t.Errorf("%s: a batch of 5: %d %s", n.Name, code, body)
			}
			if code, _, body := ingestBody(t, n.URL(), fmt.Sprintf(`{"kind":"big","pad":%q}`, strings.Repeat("y", 3000))); code != http.StatusRequestEntityTooLarge || !strings.Contains(body, "2048 bytes") {
				t.Errorf("%s: a 3 KB body under ingest/max_body_bytes=2048: %d %s", n.Name, code, body)
			}
			// w-i is older than the last 1000 ids: a retry is a new event.
			_, r, body := ingestBody(t, n.URL(), eventBatch("w", i, 1, ""))
			if len(r.Seqs) != 1 || r.Seqs[0] == first.Seqs[i] {
				t.Errorf("%s: with a window of 1000, a retry of w-%d (Seq %d) 2100 ids later must be new: %s", n.Name, i, first.Seqs[i], body)
			}
		}
		for _, k := range []string{"ingest/max_batch", "ingest/max_body_bytes", "ingest/idempotency_window"} {
			sc.del(k)
		}
		sc.waitApplied("ingest/max_batch", "10000", "default")
		sc.waitApplied("ingest/max_body_bytes", "1048576", "default")
		sc.waitApplied("ingest/idempotency_window", "200000", "default")
		l = sc.leader()
		if code, _, body := ingestBody(t, l.URL(), eventBatch("after", 0, 6, "")); code != 200 {
			t.Errorf("back at the default, a batch of 6: %d %s", code, body)
		}
	})

	t.Run("the idempotency window's byte bound holds on every node", func(t *testing.T) {
		l := sc.leader()
		prefix := "big" + strings.Repeat("i", 4000) // ids of about 4 KB
		_, first, body := ingestBody(t, l.URL(), eventBatch(prefix, 0, 1, ""))
		if len(first.Seqs) != 1 {
			t.Fatalf("ingest: %s", body)
		}
		for b := 0; b < 2; b++ { // 300 more: 1.2 MB of ids
			if code, _, body := ingestBody(t, l.URL(), eventBatch(prefix, 1+150*b, 150, "")); code != 200 {
				t.Fatalf("ingest: %d %.300s", code, body)
			}
		}
		if _, r, body := ingestBody(t, l.URL(), eventBatch(prefix, 0, 1, "")); len(r.Seqs) != 1 || r.Seqs[0] != first.Seqs[0] {
			t.Fatalf("under the default byte bound a retry must answer the original Seq %d: %.300s", first.Seqs[0], body)
		}
		sc.put("ingest/idempotency_window_bytes", "1048576")
		sc.waitApplied("ingest/idempotency_window_bytes", "1048576", "etcd")
		deadline := time.Now().Add(10 * time.Second)
		for _, n := range c.Nodes {
			for v := metric(n, "autonomy_idempotency_index_bytes"); v <= 0 || v > 1048576; v = metric(n, "autonomy_idempotency_index_bytes") {
				if time.Now().After(deadline) {
					t.Fatalf("%s: the idempotency index holds %v bytes under a bound of 1 MiB", n.Name, v)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		// 1 MiB holds about 250 of these ids: the first is forgotten, and
		// its retry is a new event.
		if _, r, body := ingestBody(t, l.URL(), eventBatch(prefix, 0, 1, "")); len(r.Seqs) != 1 || r.Seqs[0] == first.Seqs[0] {
			t.Fatalf("under a 1 MiB bound a retry 300 ids of 4 KB later must be new, not Seq %d: %.300s", first.Seqs[0], body)
		}
		sc.del("ingest/idempotency_window_bytes")
		sc.waitApplied("ingest/idempotency_window_bytes", "33554432", "default")
	})

	t.Run("log/level changes every node's log", func(t *testing.T) {
		count := func(n *proctest.Node) int { return strings.Count(n.Logs(), `"msg":"HTTP_REQUEST"`) }
		for _, n := range c.Nodes {
			do(t, "GET", n.URL()+"/v1/health", "", "", nil)
		}
		before := map[string]int{}
		for _, n := range c.Nodes {
			if before[n.Name] = count(n); before[n.Name] != 0 {
				t.Fatalf("%s logs requests at info", n.Name)
			}
		}
		sc.put("log/level", `"debug"`)
		sc.waitApplied("log/level", `"debug"`, "etcd")
		for _, n := range c.Nodes {
			do(t, "GET", n.URL()+"/v1/health?probe=settings", "", "", nil)
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(n.Logs(), `"path":"/v1/health"`) {
				if time.Now().After(deadline) {
					t.Fatalf("%s: no debug HTTP_REQUEST line after log/level=debug", n.Name)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		sc.del("log/level")
		sc.waitApplied("log/level", `"info"`, "default")
		for _, n := range c.Nodes {
			before[n.Name] = count(n)
			do(t, "GET", n.URL()+"/v1/health", "", "", nil)
		}
		time.Sleep(300 * time.Millisecond) // an absence: give a line the time to appear
		for _, n := range c.Nodes {
			if got := count(n); got != before[n.Name] {
				t.Errorf("%s still logs requests at debug after log/level returned to info", n.Name)
			}
		}
	})

	t.Run("autonomyctl settings list shows value, default and source", func(t *testing.T) {
		var out, errOut bytes.Buffer
		cli := &ctl.CLI{Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }, ConfigDir: t.TempDir()}
		if code := cli.Run(context.Background(), []string{"settings", "list", "--endpoints", sc.leader().URL()}); code != 0 {
			t.Fatalf("exit %d\n%s", code, errOut.String())
		}
		lines := strings.Split(out.String(), "\n")
		if !strings.HasPrefix(lines[0], "KEY") || !strings.Contains(lines[0], "DEFAULT") || !strings.Contains(lines[0], "SOURCE") {
			t.Fatalf("header %q", lines[0])
		}
		for _, want := range [][]string{
			{"retention/max_age", `"1m0s"`, `"0s"`, "etcd"},
			{"ingest/max_batch", "10000", "10000", "default"},
			{"log/level", `"info"`, `"info"`, "default"},
		} {
			found := false
			for _, l := range lines {
				if f := strings.Fields(l); len(f) >= 4 && f[0] == want[0] {
					found = f[1] == want[1] && f[2] == want[2] && f[3] == want[3]
					if !found {
						t.Errorf("settings list: %q, want %v", l, want)
					}
				}
			}
			if !found {
				t.Errorf("settings list lacks %v:\n%s", want, out.String())
			}
		}
	})

	t.Run("retention/max_age trims every node's WAL", func(t *testing.T) {
		if d := time.Until(ageSetAt.Add(time.Minute)); d > 0 {
			t.Logf("waiting %s for the frames to be a minute old", d.Round(time.Second))
		}
		deadline := ageSetAt.Add(time.Minute + 30*time.Second)
		for _, n := range c.Nodes {
			for {
				if tr := trimmedOn(n); tr > trimmedBeforeAge[n.Name] {
					t.Logf("%s: trimmed %d frames by age (%d before)", n.Name, tr, trimmedBeforeAge[n.Name])
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s trimmed nothing by age", n.Name)
				}
				time.Sleep(500 * time.Millisecond)
			}
		}
	})

	// A clean stop (SIGTERM, one node after the other) logs no error.
	before := map[string]int{}
	for _, n := range c.Nodes {
		before[n.Name] = len(n.Logs())
	}
	for _, n := range c.Nodes {
		if code := n.Stop(); code != 0 {
			t.Fatalf("%s: SIGTERM exit %d\n%s", n.Name, code, n.Logs())
		}
	}
	for _, n := range c.Nodes {
		for _, l := range strings.Split(n.Logs()[before[n.Name]:], "\n") {
			if strings.Contains(l, `"level":"error"`) {
				t.Errorf("%s logged an error during a clean stop: %s", n.Name, l)
			}
		}
	}
}
