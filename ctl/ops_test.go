package ctl_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/autonomyops/orchestrator/ctl"
)

// leaderOnly makes a fakeNode route behave as the API's leader-only routes
// do: a follower redirects to its leader (307, Location, X-Autonomy-Leader).
func leaderOnly(n *fakeNode, path string, h http.HandlerFunc) {
	n.setOverride(path, func(w http.ResponseWriter, r *http.Request) {
		if n.leader != nil {
			w.Header().Set(wire.HeaderLeader, n.leader.URL())
			http.Redirect(w, r, n.leader.URL()+r.URL.RequestURI(), http.StatusTemporaryRedirect)
			return
		}
		h(w, r)
	})
}

func TestFleetSummary(t *testing.T) {
	leader := newFakeNode(t, "node-a", nil)
	follower := newFakeNode(t, "node-b", leader)
	fs := wire.FleetSummary{
		Events: 12, Errors: 3, SafeSeq: 14, ByKind: map[string]uint64{"telemetry": 9, "error": 3},
		Agents: []wire.FleetAgent{
			{Agent: "robot-2", Events: 4, Errors: 3, LastSeen: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), LastSeq: 14, ByKind: map[string]uint64{"error": 3, "telemetry": 1}},
			{Agent: "robot-1", Events: 8, LastSeen: time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC), LastSeq: 11, ByKind: map[string]uint64{"telemetry": 8}},
		},
	}
	leaderOnly(leader, "/v1/fleet/summary", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, fs) })
	tc := newTestCLI(t)
	tc.env[ctl.EnvToken] = "tok"

	// Only the follower is listed: the CLI follows its redirect with the token.
	code, out, _ := tc.run(t, "fleet", "summary", "--endpoints", follower.URL())
	if code != ctl.ExitOK {
		t.Fatalf("exit %d", code)
	}
	mustContain(t, "table", out, "AGENTS", "2", "EVENTS", "12 (errors 3)", "BY_KIND", "error=3,telemetry=9", "SAFE_SEQ", "14",
		"AGENT", "LAST_SEEN", "LAST_SEQ", "robot-1", "robot-2", "2026-01-02T03:04:05Z", "error=3,telemetry=1")
	if strings.Index(out, "robot-1") > strings.Index(out, "robot-2") {
		t.Fatalf("agents not sorted:\n%s", out)
	}
	if got := leader.lastRequest().Header.Get("Authorization"); got != "Bearer tok" {
		t.Fatalf("the leader saw Authorization %q", got)
	}

	code, out, _ = tc.run(t, "fleet", "summary", "--endpoints", follower.URL(), "-o", "json")
	var got wire.FleetSummary
	decodeJSON(t, out, &got)
	if code != 0 || got.Events != 12 || len(got.Agents) != 2 || got.Agents[0].ByKind["error"] != 3 {
		t.Fatalf("exit %d, json %+v", code, got)
	}
}

// settingsStore is a fake of the leader's settings routes, with etcd-like
// revisions and If-Match compare-and-set.
type settingsStore struct {
	mu   sync.Mutex
	rev  int64
	kv   map[string]wire.Setting
	seen []string // "METHOD key If-Match"
}

func (s *settingsStore) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := strings.TrimPrefix(r.URL.Path, "/v1/config/")
	s.seen = append(s.seen, r.Method+" "+key+" "+r.Header.Get("If-Match"))
	cur, exists := s.kv[key]
	if im := r.Header.Get("If-Match"); im != "" {
		want, _ := strconv.ParseInt(im, 10, 64)
		if (want == 0 && exists) || (want != 0 && (!exists || cur.Revision != want)) {
			writeJSON(w, 409, wire.ErrorResponse{Error: "revision_mismatch", Message: "key " + key + " is at revision " + strconv.FormatInt(cur.Revision, 10) + ", not " + im})
			return
		}
	}
	switch r.Method {
	case http.MethodGet:
		if key == "" {
			l := wire.SettingsList{Revision: s.rev, Settings: []wire.Setting{}}
			for _, v := range s.kv {
				l.Settings = append(l.Settings, v)
			}
			writeJSON(w, 200, l)
			return
		}
		if !exists {
			writeJSON(w, 404, wire.ErrorResponse{Error: "not_found", Message: "no setting " + key})
			return
		}
		writeJSON(w, 200, cur)
	case http.MethodPut:
		var body struct {
			Value json.RawMessage `json:"value"`
		}
		b, _ := io.ReadAll(r.Body)
		if json.Unmarshal(b, &body) != nil || len(body.Value) == 0 {
			writeJSON(w, 400, wire.ErrorResponse{Error: "bad_json", Message: string(b)})
			return
		}
		s.rev++
		st := wire.Setting{Key: key, Value: body.Value, Revision: s.rev}
		s.kv[key] = st
		writeJSON(w, 200, st)
	case http.MethodDelete:
		if !exists {
			writeJSON(w, 404, wire.ErrorResponse{Error: "not_found", Message: "no setting " + key})
			return
		}
		s.rev++
		delete(s.kv, key)
		writeJSON(w, 200, wire.Setting{Key: key, Revision: s.rev})
	}
}

func TestSettings_getSetDeleteCompareAndSet(t *testing.T) {
	leader := newFakeNode(t, "node-a", nil)
	follower := newFakeNode(t, "node-b", leader)
	store := &settingsStore{rev: 10, kv: map[string]wire.Setting{}}
	for _, p := range []string{"/v1/config/", "/v1/config/ingest/max_batch", "/v1/config/greeting", "/v1/config/flags"} {
		leaderOnly(leader, p, store.serve)
		leaderOnly(follower, p, store.serve)
	}
	tc := newTestCLI(t)
	eps := []string{"--endpoints", follower.URL() + "," + leader.URL()}

	// VALUE is JSON when it parses, else a string.
	code, out, _ := tc.run(t, append([]string{"settings", "set", "ingest/max_batch", "500", "--if-revision", "0"}, eps...)...)
	if code != 0 {
		t.Fatalf("set: exit %d", code)
	}
	mustContain(t, "set", out, "ingest/max_batch = 500 (revision 11)")
	tc.run(t, append([]string{"settings", "set", "greeting", "hello world"}, eps...)...)
	tc.run(t, append([]string{"settings", "set", "flags", `{"a": [1, true]}`}, eps...)...)
	for key, want := range map[string]string{"ingest/max_batch": `500`, "greeting": `"hello world"`, "flags": `{"a":[1,true]}`} {
		if got := string(store.kv[key].Value); got != want {
			t.Errorf("%s stored %s, want %s", key, got, want)
		}
	}

	// --if-revision 0 on an existing key, and a stale revision: 409, exit 6.
	code, _, errOut := tc.run(t, append([]string{"settings", "set", "ingest/max_batch", "600", "--if-revision", "0"}, eps...)...)
	if code != ctl.ExitConflict {
		t.Fatalf("stale set: exit %d, want %d", code, ctl.ExitConflict)
	}
	mustContain(t, "stderr", errOut, "settings: ingest/max_batch not written: key ingest/max_batch is at revision 11, not 0",
		"autonomyctl settings get ingest/max_batch")
	code, _, _ = tc.run(t, append([]string{"settings", "delete", "ingest/max_batch", "--if-revision", "3"}, eps...)...)
	if code != ctl.ExitConflict || store.kv["ingest/max_batch"].Revision != 11 {
		t.Fatalf("stale delete: exit %d", code)
	}

	// The right revision wins.
	code, out, _ = tc.run(t, append([]string{"settings", "set", "ingest/max_batch", "600", "--if-revision", "11", "-o", "json"}, eps...)...)
	var st wire.Setting
	decodeJSON(t, out, &st)
	if code != 0 || st.Revision != 14 || string(st.Value) != "600" {
		t.Fatalf("exit %d, %+v", code, st)
	}

	code, out, _ = tc.run(t, append([]string{"settings", "get"}, eps...)...)
	if code != 0 {
		t.Fatalf("get: exit %d", code)
	}
	mustContain(t, "list", out, "KEY", "REVISION", "VALUE", "ingest/max_batch", "14", "600", "greeting", `"hello world"`, `{"a":[1,true]}`)
	code, out, _ = tc.run(t, append([]string{"settings", "get", "greeting", "-o", "json"}, eps...)...)
	decodeJSON(t, out, &st)
	if code != 0 || st.Key != "greeting" || string(st.Value) != `"hello world"` {
		t.Fatalf("get greeting: exit %d, %+v", code, st)
	}

	code, out, _ = tc.run(t, append([]string{"settings", "delete", "greeting", "--if-revision", "12"}, eps...)...)
	if code != 0 || !strings.Contains(out, "deleted greeting (revision 15)") {
		t.Fatalf("delete: exit %d %q", code, out)
	}
	code, _, _ = tc.run(t, append([]string{"settings", "get", "greeting"}, eps...)...)
	if code != ctl.ExitNotFound {
		t.Fatalf("get deleted key: exit %d, want %d", code, ctl.ExitNotFound)
	}
	mustContain(t, "requests", strings.Join(store.seen, "\n"), "PUT ingest/max_batch 0", "DELETE ingest/max_batch 3", "PUT ingest/max_batch 11", "DELETE greeting 12", "PUT greeting \n")
	if follower.hitCount("/v1/config/greeting") != 0 {
		t.Fatalf("the leader is listed: the CLI must not go through the follower")
	}

	for _, args := range [][]string{
		{"settings", "set", "k"},
		{"settings", "set", "k", "v", "--if-revision", "x"},
		{"settings", "set", "k", "v", "--if-revision", "-1"},
		{"settings", "delete", "a b"},
		{"settings", "get", "a", "b"},
	} {
		if code, _, _ := tc.run(t, append(args, eps...)...); code != ctl.ExitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, ctl.ExitUsage)
		}
	}
}

func TestAudit(t *testing.T) {
	leader := newFakeNode(t, "node-a", nil)
	leaderOnly(leader, "/v1/audit", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, wire.AuditResponse{Records: []wire.AuditRecord{
			{At: time.Date(2026, 1, 2, 3, 5, 0, 0, time.UTC), Who: "alice", Action: "failover", Node: "node-a", Details: map[string]any{"to": "node-b", "took_ms": 812}},
			{At: time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC), Who: "operator", Action: "WAL_RESET_BY_OPERATOR", Node: "node-c"},
		}})
	})
	tc := newTestCLI(t)
	code, out, _ := tc.run(t, "audit", "--limit", "5", "--endpoints", leader.URL())
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	mustContain(t, "table", out, "AT", "WHO", "ACTION", "NODE", "DETAILS", "2026-01-02T03:05:00Z", "alice", "failover",
		`{"to":"node-b","took_ms":812}`, "WAL_RESET_BY_OPERATOR", "node-c")
	if q := leader.lastRequest().URL.RawQuery; q != "limit=5" {
		t.Fatalf("query %q", q)
	}
	code, out, _ = tc.run(t, "audit", "--endpoints", leader.URL(), "-o", "json")
	var ar wire.AuditResponse
	decodeJSON(t, out, &ar)
	if code != 0 || len(ar.Records) != 2 || leader.lastRequest().URL.RawQuery != "" {
		t.Fatalf("exit %d, %+v, query %q", code, ar, leader.lastRequest().URL.RawQuery)
	}
	if code, _, _ := tc.run(t, "audit", "--limit", "-1", "--endpoints", leader.URL()); code != ctl.ExitUsage {
		t.Fatalf("--limit -1: exit %d", code)
	}
}

func TestHAFailover(t *testing.T) {
	leader := newFakeNode(t, "node-a", nil)
	follower := newFakeNode(t, "node-b", leader)
	candidates := []wire.FailoverCandidate{
		{Name: "node-b", FsyncedSeq: 41, Lag: 1, Gossip: "alive", Eligible: true},
		{Name: "node-c", FsyncedSeq: 0, Lag: 42, Gossip: "suspect", Blockers: []string{"learner", "not healthy in gossip (suspect)", "lagging by 42 frames (bound 10)"}},
	}
	var mu sync.Mutex
	var bodies []wire.FailoverRequest
	leaderOnly(leader, "/v1/ha/failover", func(w http.ResponseWriter, r *http.Request) {
		var req wire.FailoverRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			t.Errorf("body: %v", err)
		}
		mu.Lock()
		bodies = append(bodies, req)
		mu.Unlock()
		switch {
		case req.DryRun:
			to := "node-b"
			if req.To == "node-c" {
				to = ""
			}
			writeJSON(w, 200, wire.FailoverResponse{DryRun: true, From: "node-a", To: to, Candidates: candidates})
		case req.To == "node-c":
			writeJSON(w, 409, wire.ErrorResponse{Error: "failover_refused", Message: "node-c cannot lead: learner; not healthy in gossip (suspect)"})
		default:
			writeJSON(w, 200, wire.FailoverResponse{From: "node-a", To: "node-b", NewLeader: "node-b", NewEpoch: 9, TookMs: 840, Candidates: candidates})
		}
	})
	tc := newTestCLI(t)
	eps := "--endpoints=" + follower.URL() + "," + leader.URL()

	code, out, _ := tc.run(t, "ha", "failover", "--dry-run", eps)
	if code != 0 {
		t.Fatalf("dry run: exit %d", code)
	}
	mustContain(t, "dry run", out, "dry run: nothing changed", "node-a", "CANDIDATE", "ELIGIBLE", "BLOCKERS",
		"node-b", "yes", "node-c", "no", "learner; not healthy in gossip (suspect); lagging by 42 frames (bound 10)",
		"would hand over to node-b")

	code, out, _ = tc.run(t, "ha", "failover", "--to", "node-b", eps)
	if code != 0 {
		t.Fatalf("failover: exit %d", code)
	}
	mustContain(t, "failover", out, "leader moved from node-a to node-b (epoch 9) in 840ms")

	code, out, errOut := tc.run(t, "ha", "failover", "--to", "node-c", eps)
	if code != ctl.ExitConflict || out != "" {
		t.Fatalf("refused: exit %d, stdout %q", code, out)
	}
	mustContain(t, "stderr", errOut, "failover refused: node-c cannot lead: learner; not healthy in gossip (suspect)",
		"autonomyctl ha failover --dry-run --to node-c")

	code, out, _ = tc.run(t, "ha", "failover", "--dry-run", "-o", "json", eps)
	var fr wire.FailoverResponse
	decodeJSON(t, out, &fr)
	if code != 0 || !fr.DryRun || len(fr.Candidates) != 2 || fr.Candidates[1].Blockers[0] != "learner" {
		t.Fatalf("json: exit %d %+v", code, fr)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 4 || bodies[1] != (wire.FailoverRequest{To: "node-b"}) || !bodies[0].DryRun {
		t.Fatalf("requests %+v", bodies)
	}
}

func TestHAFailover_noLeader(t *testing.T) {
	n := newFakeNode(t, "node-b", newFakeNode(t, "node-a", nil))
	n.setOverride("/v1/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 503, wire.Health{Status: "unavailable", Role: "follower", Node: "node-b", Reasons: []string{"not_leader"}})
	})
	n.setOverride("/v1/ha/failover", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "2")
		writeJSON(w, 503, wire.ErrorResponse{Error: "no_leader", Message: "no leader is known"})
	})
	tc := newTestCLI(t)
	code, _, errOut := tc.run(t, "ha", "failover", "--endpoints", n.URL())
	if code != ctl.ExitHTTP {
		t.Fatalf("exit %d", code)
	}
	mustContain(t, "stderr", errOut, "503 no_leader", "no leader is known right now")
}

// A failover POST that reached the leader and then timed out is not sent to
// another node, and the operator is told it may have happened.
func TestHAFailover_timeoutNotResent(t *testing.T) {
	slow := newFakeNode(t, "node-a", nil)
	other := newFakeNode(t, "node-b", slow)
	slow.setOverride("/v1/ha/failover", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body) // then the server notices the client leaving
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	tc := newTestCLI(t)
	code, _, errOut := tc.run(t, "ha", "failover", "--timeout", "300ms", "--endpoints", slow.URL()+","+other.URL())
	if code != ctl.ExitUnreachable {
		t.Fatalf("exit %d", code)
	}
	if other.hitCount("/v1/ha/failover") != 0 {
		t.Fatal("the failover was sent to a second node")
	}
	mustContain(t, "stderr", errOut, "Client.Timeout exceeded", "the failover may have happened", "autonomyctl ha status")
}

func TestHAStatus_etcdAndGossipSideBySide(t *testing.T) {
	leader := newFakeNode(t, "node-a", nil)
	leader.setOverride("/v1/ha/status", func(w http.ResponseWriter, r *http.Request) {
		st := leader.haStatus()
		st.Members[0].Version, st.Members[1].Version = "0.2.0", "0.1.0" // node-c: an older node that gossips none
		st.Etcd = &wire.EtcdView{Leader: "node-a", Epoch: 7, Members: []wire.EtcdMember{
			{Name: "node-a", ID: "a1"}, {Name: "node-b", ID: "b2"}, {Name: "node-c", ID: "c3", Learner: true}, {Name: "node-d", ID: "d4"},
		}}
		st.Disagreements = []string{"node-c: gossip says suspect, replication heard it 0.2s ago", "node-d: etcd member unknown to gossip"}
		writeJSON(w, 200, st)
	})
	tc := newTestCLI(t)
	code, out, _ := tc.run(t, "ha", "status", "--endpoints", leader.URL())
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	mustContain(t, "table", out, "ETCD", "leader key held by node-a, epoch 7, 4 members",
		"MEMBER", "GOSSIP", "ROLE", "FSYNCED_SEQ", "LAG", "VERSION",
		"WARNING: node-c: gossip says suspect, replication heard it 0.2s ago", "WARNING: node-d: etcd member unknown to gossip")
	rows := map[string][]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 3 && strings.HasPrefix(f[0], "node-") {
			rows[f[0]] = f
		}
	}
	for name, want := range map[string][]string{
		"node-a": {"alive", "voter,leader-key", "alive", "leader"},
		"node-b": {"alive", "voter", "alive", "follower"},
		"node-c": {"unreachable", "learner", "suspect", "learner"},
		"node-d": {"-", "voter", "absent", "-"},
	} {
		if got := rows[name]; len(got) < 5 || strings.Join(got[1:5], " ") != strings.Join(want, " ") {
			t.Errorf("%s row %v, want STATE ETCD GOSSIP ROLE %v", name, got, want)
		}
	}
	// Version skew is visible: VERSION is the 10th column.
	for name, want := range map[string]string{"node-a": "0.2.0", "node-b": "0.1.0", "node-c": "-", "node-d": "-"} {
		if got := rows[name]; len(got) < 10 || got[9] != want {
			t.Errorf("%s row %v, want VERSION %s", name, got, want)
		}
	}

	// Without etcd's view (an older node), the column says so.
	code, out, _ = tc.run(t, "ha", "status", "--endpoints", newFakeNode(t, "node-x", nil).URL())
	if code != 0 || !strings.Contains(out, "did not report etcd's view") || strings.Contains(out, "WARNING") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}
