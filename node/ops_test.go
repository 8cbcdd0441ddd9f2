package node_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/autonomyops/orchestrator/node/proctest"
)

// do sends a request with an optional bearer token and returns status,
// headers and body.
func do(t *testing.T, method, url, token, body string, hdr map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := proctest.Client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func writeTokens(t *testing.T) string {
	t.Helper()
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	content := fmt.Sprintf("tokens:\n  - {name: ro, role: viewer, sha256: %s}\n  - {name: robot, role: operator, sha256: %s}\n  - {name: alice, role: admin, sha256: %s}\n",
		sum("view-token"), sum("op-token"), sum("admin-token"))
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestOps_OperatorSurface drives the REST API of a three-node cluster with
// RBAC through real processes, as issue 4's "done when" lists it.
func TestOps_OperatorSurface(t *testing.T) {
	c := proctest.NewCluster(t, 3, "--tokens-file", writeTokens(t))
	c.Start()
	// The cluster has formed once one leader answers 200 and every follower
	// hears it (a node still starting refuses connections meanwhile).
	leader := waitSteady(t, c)
	var follower *proctest.Node
	for _, n := range c.Nodes {
		if n != leader {
			follower = n
			break
		}
	}
	const op, view, admin = "op-token", "view-token", "admin-token"

	t.Run("followers redirect to the leader", func(t *testing.T) {
		code, h, _ := do(t, "POST", follower.URL()+"/v1/telemetry/events", op, `{"kind":"x"}`, nil)
		if code != http.StatusTemporaryRedirect || h.Get("X-Autonomy-Leader") != leader.Name ||
			h.Get("Location") != leader.URL()+"/v1/telemetry/events" {
			t.Fatalf("got %d Location=%q X-Autonomy-Leader=%q", code, h.Get("Location"), h.Get("X-Autonomy-Leader"))
		}
	})
	t.Run("401 403 200 by role", func(t *testing.T) {
		body := `{"kind":"info","agent":"rbac"}`
		for _, tc := range []struct {
			token string
			want  int
		}{{"", 401}, {"nope", 401}, {view, 403}, {op, 200}, {admin, 200}} {
			if code, _, b := do(t, "POST", leader.URL()+"/v1/telemetry/events", tc.token, body, nil); code != tc.want {
				t.Errorf("token %q: %d %s, want %d", tc.token, code, b, tc.want)
			}
		}
		if code, _, _ := do(t, "GET", leader.URL()+"/v1/health", "", "", nil); code != 200 {
			t.Errorf("health must stay open, got %d", code)
		}
		if strings.Contains(leader.Logs(), "op-token") || strings.Contains(leader.Logs(), "admin-token") {
			t.Error("a token reached the log")
		}
	})
	t.Run("bad JSON is 400 and writes nothing", func(t *testing.T) {
		ws, _ := walStatus(leader)
		code, _, b := do(t, "POST", leader.URL()+"/v1/telemetry/events", op, `{"kind": oops}`, nil)
		var er wire.ErrorResponse
		json.Unmarshal(b, &er)
		if code != 400 || er.Error == "" || er.Message == "" {
			t.Fatalf("got %d %s", code, b)
		}
		if ws2, _ := walStatus(leader); ws2.LastSeq != ws.LastSeq {
			t.Fatalf("last_seq moved %d → %d after a refused request", ws.LastSeq, ws2.LastSeq)
		}
	})
	t.Run("a 4 MiB event is 413", func(t *testing.T) {
		big := `{"kind":"big","blob":"` + strings.Repeat("x", 4<<20) + `"}`
		if code, _, b := do(t, "POST", leader.URL()+"/v1/telemetry/events", op, big, nil); code != 413 {
			t.Fatalf("got %d %.200s", code, b)
		}
	})
	t.Run("a batch of 100 gets 100 Seqs", func(t *testing.T) {
		var evs []string
		for i := 0; i < 100; i++ {
			evs = append(evs, fmt.Sprintf(`{"kind":"batch","agent":"agent-%d","i":%d}`, i%7, i))
		}
		code, _, b := do(t, "POST", leader.URL()+"/v1/telemetry/events", op, "["+strings.Join(evs, ",")+"]", nil)
		var ir wire.IngestResponse
		json.Unmarshal(b, &ir)
		if code != 200 || len(ir.Seqs) != 100 || ir.Seqs[99] != ir.Seqs[0]+99 {
			t.Fatalf("got %d %s", code, b)
		}
	})
	t.Run("idempotent retry answers the original Seq", func(t *testing.T) {
		_, _, b1 := do(t, "POST", leader.URL()+"/v1/telemetry/events", op, `{"id":"once","kind":"x"}`, nil)
		_, _, b2 := do(t, "POST", leader.URL()+"/v1/telemetry/events", op, `{"id":"once","kind":"x"}`, nil)
		var r1, r2 wire.IngestResponse
		json.Unmarshal(b1, &r1)
		json.Unmarshal(b2, &r2)
		if len(r1.Seqs) != 1 || len(r2.Seqs) != 1 || r1.Seqs[0] != r2.Seqs[0] {
			t.Fatalf("retry got a new Seq: %s vs %s", b1, b2)
		}
	})
	t.Run("fleet summary names every agent", func(t *testing.T) {
		code, _, b := do(t, "GET", leader.URL()+"/v1/fleet/summary", view, "", nil)
		var fs wire.FleetSummary
		json.Unmarshal(b, &fs)
		names := map[string]bool{}
		for _, a := range fs.Agents {
			names[a.Agent] = true
		}
		for i := 0; i < 7; i++ {
			if !names[fmt.Sprintf("agent-%d", i)] {
				t.Errorf("agent-%d missing from %s", i, b)
			}
		}
		if code != 200 || !names["rbac"] || fs.ByKind["batch"] != 100 {
			t.Fatalf("got %d %s", code, b)
		}
	})
	t.Run("settings compare-and-set", func(t *testing.T) {
		code, _, b := do(t, "PUT", leader.URL()+"/v1/config/ingest/max_batch", admin, `{"value":9000}`, map[string]string{"If-Match": "0"})
		var s1 wire.Setting
		json.Unmarshal(b, &s1)
		if code != 200 || s1.Revision == 0 {
			t.Fatalf("create: %d %s", code, b)
		}
		if code, _, _ := do(t, "PUT", leader.URL()+"/v1/config/ingest/max_batch", op, `{"value":9001}`, nil); code != 403 {
			t.Errorf("operator wrote a setting: %d", code)
		}
		code, _, b = do(t, "PUT", leader.URL()+"/v1/config/ingest/max_batch", admin, `{"value":9001}`, map[string]string{"If-Match": fmt.Sprint(s1.Revision)})
		if code != 200 {
			t.Fatalf("update: %d %s", code, b)
		}
		code, _, b = do(t, "PUT", leader.URL()+"/v1/config/ingest/max_batch", admin, `{"value":9002}`, map[string]string{"If-Match": fmt.Sprint(s1.Revision)})
		if code != 409 {
			t.Fatalf("stale revision: %d %s", code, b)
		}
		code, _, b = do(t, "GET", leader.URL()+"/v1/config/ingest/max_batch", view, "", nil)
		if code != 200 || !strings.Contains(string(b), `"value":9001`) {
			t.Fatalf("get: %d %s", code, b)
		}
	})
	t.Run("metrics are exposed", func(t *testing.T) {
		code, _, b := do(t, "GET", leader.URL()+"/metrics", "", "", nil)
		for _, m := range []string{"autonomy_cluster_has_leader", "autonomy_cluster_is_leader 1", "autonomy_cluster_leader_changes_total",
			"autonomy_cluster_members{state=", "autonomy_wal_fsync_duration_seconds_bucket", "autonomy_wal_last_seq", "autonomy_wal_safe_seq",
			"autonomy_replication_lag_entries{peer=", "autonomy_under_replicated", "autonomy_build_info{", "etcd_server_has_leader", "go_goroutines"} {
			if code != 200 || !strings.Contains(string(b), m) {
				t.Errorf("/metrics lacks %s", m)
			}
		}
	})
	t.Run("replica health is live on followers", func(t *testing.T) {
		code, _, b := do(t, "GET", follower.URL()+"/v1/health/replica?max_lag=1000", "", "", nil)
		if code != 200 {
			t.Fatalf("follower replica health %d %s", code, b)
		}
		if code, _, _ := do(t, "GET", leader.URL()+"/v1/health/replica?max_lag=1000", "", "", nil); code != 503 {
			t.Fatalf("the leader is no read replica, got %d", code)
		}
	})
	t.Run("logs stream committed events", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", leader.URL()+"/v1/logs?follow=true&kind=live", nil)
		req.Header.Set("Authorization", "Bearer "+op)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		go func() {
			req, _ := http.NewRequest("POST", leader.URL()+"/v1/telemetry/events", strings.NewReader(`{"kind":"live","n":1}`))
			req.Header.Set("Authorization", "Bearer "+op)
			if resp, err := proctest.Client.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if line := strings.TrimSpace(sc.Text()); line != "" {
				var ev wire.Event
				if json.Unmarshal([]byte(line), &ev) != nil || !strings.Contains(string(ev.Event), `"live"`) {
					t.Fatalf("bad line %q", line)
				}
				return
			}
		}
		t.Fatal("no event arrived on the stream")
	})
	t.Run("planned failover moves the leader and is audited", func(t *testing.T) {
		code, _, b := do(t, "POST", leader.URL()+"/v1/ha/failover", admin, fmt.Sprintf(`{"to":%q,"dry_run":true}`, follower.Name), nil)
		var dr wire.FailoverResponse
		json.Unmarshal(b, &dr)
		if code != 200 || !dr.DryRun || len(dr.Candidates) != 2 {
			t.Fatalf("dry run: %d %s", code, b)
		}
		code, _, b = do(t, "POST", leader.URL()+"/v1/ha/failover", admin, fmt.Sprintf(`{"to":%q}`, follower.Name), nil)
		var fr wire.FailoverResponse
		json.Unmarshal(b, &fr)
		if code != 200 || fr.NewLeader != follower.Name {
			t.Fatalf("failover: %d %s", code, b)
		}
		if got := c.WaitLeader(20 * time.Second); got != follower {
			t.Fatalf("leader is %s, want %s", got.Name, follower.Name)
		}
		code, _, b = do(t, "GET", follower.URL()+"/v1/audit", view, "", nil)
		if code != 200 || !strings.Contains(string(b), `"action":"failover"`) || !strings.Contains(string(b), `"who":"alice"`) ||
			!strings.Contains(string(b), `"action":"settings_put"`) {
			t.Fatalf("audit: %d %s", code, b)
		}
	})
}
