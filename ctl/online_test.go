package ctl_test

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/autonomyops/orchestrator/ctl"
)

func TestStatus_leaderAndFollower(t *testing.T) {
	leader := newFakeNode(t, "node-a", nil)
	follower := newFakeNode(t, "node-b", leader)
	tc := newTestCLI(t)

	code, out, _ := tc.run(t, "status", "--endpoints", follower.URL()+","+leader.URL())
	if code != ctl.ExitOK {
		t.Fatalf("exit %d", code)
	}
	mustContain(t, "table", out, "ENDPOINT", "NODE", "ROLE", "LEADER", "EPOCH", "SAFE_SEQ", "LAST_SEQ", "HTTP",
		follower.URL(), leader.URL(), "follower", "503", "not_leader", "200", "leader: "+leader.URL())

	code, out, _ = tc.run(t, "status", "--endpoints", follower.URL()+","+leader.URL(), "-o", "json")
	if code != ctl.ExitOK {
		t.Fatalf("exit %d", code)
	}
	var res struct {
		Source    string `json:"source"`
		Leader    string `json:"leader"`
		CanCommit bool   `json:"can_commit"`
		Nodes     []struct {
			Endpoint   string       `json:"endpoint"`
			HTTPStatus int          `json:"http_status"`
			Health     *wire.Health `json:"health"`
			Error      string       `json:"error"`
		} `json:"nodes"`
	}
	decodeJSON(t, out, &res)
	if res.Source != "--endpoints" || res.Leader != leader.URL() || !res.CanCommit || len(res.Nodes) != 2 {
		t.Fatalf("json: %+v", res)
	}
	if n := res.Nodes[0]; n.Endpoint != follower.URL() || n.HTTPStatus != 503 || n.Health.Role != "follower" || n.Health.Leader != "node-a" {
		t.Fatalf("follower row: %+v", n)
	}
	if n := res.Nodes[1]; n.HTTPStatus != 200 || n.Health.Role != "leader" || n.Health.Epoch != 7 || n.Health.SafeSeq != 42 {
		t.Fatalf("leader row: %+v", n)
	}
}

func TestStatus_someUnreachable(t *testing.T) {
	follower := newFakeNode(t, "node-b", newFakeNode(t, "node-a", nil))
	dead, port := refusedURL(t)
	tc := newTestCLI(t)
	code, out, errOut := tc.run(t, "status", "--endpoints", dead+","+follower.URL())
	if code != ctl.ExitOK {
		t.Fatalf("exit %d: one node answered, status must succeed", code)
	}
	mustContain(t, "table", out, "unreachable", "no endpoint answered 200")
	mustContain(t, "stderr", errOut, fmt.Sprintf(`Get "%s/v1/health": dial tcp 127.0.0.1:%d: connect: connection refused`, dead, port))
}

func TestStatus_noneReachable(t *testing.T) {
	dead, port := refusedURL(t)
	tc := newTestCLI(t)
	tc.env[ctl.EnvOrchestratorURL] = dead
	code, out, errOut := tc.run(t, "status")
	if code != ctl.ExitUnreachable {
		t.Fatalf("exit %d, want %d", code, ctl.ExitUnreachable)
	}
	if out != "" {
		t.Fatalf("stdout should be empty: %q", out)
	}
	first := strings.SplitN(errOut, "\n", 2)[0]
	want := fmt.Sprintf(`Get "%s/v1/health": dial tcp 127.0.0.1:%d: connect: connection refused`, dead, port)
	if first != want {
		t.Fatalf("first stderr line\n got %q\nwant %q", first, want)
	}
	mustContain(t, "hints", errOut, "hint: ", dead, "AUTONOMY_ORCHESTRATOR_URL")
}

// The runbook's section 4: a refused connection keeps Go's text and is
// followed by the hint.
func TestConnectionRefused_messageAndHint(t *testing.T) {
	dead, port := refusedURL(t)
	for _, args := range [][]string{
		{"wal", "status"},
		{"wal", "inspect", "--since", "1h", "--kind", "error"},
		{"ha", "status"},
	} {
		t.Run(strings.Join(args, "_"), func(t *testing.T) {
			tc := newTestCLI(t)
			tc.env[ctl.EnvOrchestratorURL] = dead
			code, _, errOut := tc.run(t, args...)
			if code != ctl.ExitUnreachable {
				t.Fatalf("exit %d, want %d", code, ctl.ExitUnreachable)
			}
			path := map[string]string{"wal": "/v1/wal/" + args[1], "ha": "/v1/ha/status"}[args[0]]
			lines := strings.Split(errOut, "\n")
			wantPrefix := fmt.Sprintf(`Get "%s%s`, dead, path)
			wantSuffix := fmt.Sprintf(`": dial tcp 127.0.0.1:%d: connect: connection refused`, port)
			if !strings.HasPrefix(lines[0], wantPrefix) || !strings.HasSuffix(lines[0], wantSuffix) {
				t.Fatalf("first line %q, want %s…%s", lines[0], wantPrefix, wantSuffix)
			}
			hint := strings.Join(lines[1:], "\n")
			mustContain(t, "hint", hint,
				"hint: cannot reach the orchestrator at "+dead,
				"not running, or it is listening on a different address",
				"curl "+dead+"/v1/health",
				"curl http://localhost:8888/v1/health",
				"AUTONOMY_ORCHESTRATOR_URL=",
				"autonomyctl config set orchestrator.url",
				"(from AUTONOMY_ORCHESTRATOR_URL)")
		})
	}
}

func TestTimeout_keepsGoText(t *testing.T) {
	slow := newFakeNode(t, "slow", nil)
	block := func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}
	slow.setOverride("/v1/health", block)
	slow.setOverride("/v1/wal/status", block)
	tc := newTestCLI(t)
	for _, args := range [][]string{{"ha", "status"}, {"wal", "status"}} {
		code, _, errOut := tc.run(t, append(args, "--endpoints", slow.URL(), "--timeout", "200ms")...)
		if code != ctl.ExitUnreachable {
			t.Fatalf("exit %d", code)
		}
		mustContain(t, "stderr", errOut,
			fmt.Sprintf(`Get "%s/v1/%s/status": context deadline exceeded (Client.Timeout exceeded while awaiting headers)`, slow.URL(), args[0]),
			"did not answer within 200ms")
	}
}

func TestHAStatus_fromLeader(t *testing.T) {
	leader := newFakeNode(t, "node-a", nil)
	follower := newFakeNode(t, "node-b", leader)
	tc := newTestCLI(t)
	code, out, _ := tc.run(t, "ha", "status", "--endpoints", follower.URL()+","+leader.URL())
	if code != ctl.ExitOK {
		t.Fatalf("exit %d", code)
	}
	if leader.hitCount("/v1/ha/status") != 1 || follower.hitCount("/v1/ha/status") != 0 {
		t.Fatalf("ha status must come from the leader: leader %d, follower %d hits",
			leader.hitCount("/v1/ha/status"), follower.hitCount("/v1/ha/status"))
	}
	mustContain(t, "table", out, "LEADER", "node-a", "epoch 7", "QUORUM", "size 2", "healthy 3",
		"MEMBER", "ETCD", "GOSSIP", "LAG", "node-c", "suspect", "learner")

	code, out, _ = tc.run(t, "ha", "status", "--endpoints", follower.URL()+","+leader.URL(), "-o", "json")
	if code != ctl.ExitOK {
		t.Fatalf("exit %d", code)
	}
	var st wire.HAStatus
	decodeJSON(t, out, &st)
	if st.Node != "node-a" || st.Leader == nil || st.Leader.Name != "node-a" || len(st.Members) != 3 || st.Quorum.Healthy != 3 {
		t.Fatalf("json: %+v", st)
	}
}

func TestHAStatus_noLeaderAsksFirstReachable(t *testing.T) {
	// Two followers whose leader is unreachable: no 200 anywhere.
	gone := newFakeNode(t, "node-a", nil)
	f1 := newFakeNode(t, "node-b", gone)
	f2 := newFakeNode(t, "node-c", gone)
	gone.srv.Close()
	dead, _ := refusedURL(t)
	tc := newTestCLI(t)
	code, out, _ := tc.run(t, "ha", "status", "--endpoints", dead+","+f1.URL()+","+f2.URL(), "-o", "json")
	if code != ctl.ExitOK {
		t.Fatalf("exit %d", code)
	}
	var st wire.HAStatus
	decodeJSON(t, out, &st)
	if st.Node != "node-b" || f2.hitCount("/v1/ha/status") != 0 {
		t.Fatalf("want the first reachable node (node-b) to answer, got %q", st.Node)
	}
}

func TestWALStatus_online(t *testing.T) {
	leader := newFakeNode(t, "node-a", nil)
	follower := newFakeNode(t, "node-b", leader)
	dead, _ := refusedURL(t)
	tc := newTestCLI(t)

	// Every node answers about its own WAL: the first reachable one answers.
	code, out, _ := tc.run(t, "wal", "status", "--endpoints", dead+","+follower.URL()+","+leader.URL(), "-o", "json")
	if code != ctl.ExitOK {
		t.Fatalf("exit %d", code)
	}
	var st wire.WALStatus
	decodeJSON(t, out, &st)
	if st.Node != "node-b" || st.SafeSeq != 42 || st.LastSeq != 43 {
		t.Fatalf("json: %+v", st)
	}
	code, out, _ = tc.run(t, "wal", "status", "--endpoints", leader.URL())
	if code != ctl.ExitOK {
		t.Fatalf("exit %d", code)
	}
	mustContain(t, "table", out, "NODE", "node-a", "SAFE_SEQ", "42", "FSYNC", "10 calls")

	// --all: one row per endpoint; an unreachable one fails the command.
	code, out, errOut := tc.run(t, "wal", "status", "--all", "--endpoints", follower.URL()+","+leader.URL()+","+dead, "-o", "json")
	if code != ctl.ExitError {
		t.Fatalf("exit %d, want %d (one node unreachable)", code, ctl.ExitError)
	}
	var rows []struct {
		Endpoint string          `json:"endpoint"`
		Status   *wire.WALStatus `json:"status"`
		Error    string          `json:"error"`
	}
	decodeJSON(t, out, &rows)
	if len(rows) != 3 || rows[0].Status.Node != "node-b" || rows[1].Status.Node != "node-a" || !strings.Contains(rows[2].Error, "connection refused") {
		t.Fatalf("rows: %+v", rows)
	}
	_ = errOut
}

func TestWALInspect_onlinePassesFilters(t *testing.T) {
	n := newFakeNode(t, "node-a", nil)
	tc := newTestCLI(t)
	code, out, _ := tc.run(t, "wal", "inspect", "--endpoints", n.URL(), "--since", "1h", "--kind", "error", "--limit", "5")
	if code != ctl.ExitOK {
		t.Fatalf("exit %d", code)
	}
	q := n.lastRequest().URL.Query()
	if q.Get("since") != "1h" || q.Get("kind") != "error" || q.Get("limit") != "5" {
		t.Fatalf("query sent: %v", q)
	}
	mustContain(t, "table", out, "SEQ", "EPOCH", "TIME", "KIND", "EVENT", "2026-01-02T03:04:05.000Z", `{"kind":"error","msg":"boom"}`, "2 frames from node-a (")

	code, out, _ = tc.run(t, "wal", "inspect", "--endpoints", n.URL(), "-o", "json")
	if code != ctl.ExitOK {
		t.Fatalf("exit %d", code)
	}
	var ir wire.InspectResponse
	decodeJSON(t, out, &ir)
	if len(ir.Frames) != 2 || ir.Frames[1].Seq != 42 || ir.Node != "node-a" {
		t.Fatalf("json: %+v", ir)
	}
	if code, _, _ := tc.run(t, "wal", "inspect", "--endpoints", n.URL(), "--since", "yesterday"); code != ctl.ExitUsage {
		t.Fatalf("bad --since: exit %d, want %d", code, ctl.ExitUsage)
	}
}

func TestHTTPErrors_exitCodes(t *testing.T) {
	n := newFakeNode(t, "node-a", nil)
	tc := newTestCLI(t)
	for _, c := range []struct {
		status int
		body   wire.ErrorResponse
		want   int
		hint   string
	}{
		{404, wire.ErrorResponse{Error: "not_found", Message: "no such route"}, ctl.ExitNotFound, ""},
		{401, wire.ErrorResponse{Error: "unauthorized", Message: "missing bearer token"}, ctl.ExitHTTP, "--token"},
		{403, wire.ErrorResponse{Error: "forbidden", Message: "role viewer"}, ctl.ExitHTTP, "role"},
		{500, wire.ErrorResponse{Error: "internal", Message: "boom"}, ctl.ExitHTTP, ""},
	} {
		n.setOverride("/v1/wal/status", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, c.status, c.body) })
		code, _, errOut := tc.run(t, "wal", "status", "--endpoints", n.URL())
		if code != c.want {
			t.Errorf("%d: exit %d, want %d", c.status, code, c.want)
		}
		mustContain(t, "stderr", errOut, fmt.Sprintf("%d %s: %s", c.status, c.body.Error, c.body.Message), c.hint)
	}
}

func TestToken_flagAndEnv(t *testing.T) {
	n := newFakeNode(t, "node-a", nil)
	tc := newTestCLI(t)
	if code, _, _ := tc.run(t, "wal", "status", "--endpoints", n.URL(), "--token", "s3cret"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if got := n.lastRequest().Header.Get("Authorization"); got != "Bearer s3cret" {
		t.Fatalf("Authorization %q", got)
	}
	tc.env[ctl.EnvToken] = "from-env"
	if code, _, _ := tc.run(t, "wal", "status", "--endpoints", n.URL()); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if got := n.lastRequest().Header.Get("Authorization"); got != "Bearer from-env" {
		t.Fatalf("Authorization %q", got)
	}
}

func TestCACert_missingFile(t *testing.T) {
	n := newFakeNode(t, "node-a", nil)
	tc := newTestCLI(t)
	code, _, errOut := tc.run(t, "status", "--endpoints", n.URL(), "--cacert", "/nonexistent/ca.pem")
	if code != ctl.ExitError {
		t.Fatalf("exit %d", code)
	}
	mustContain(t, "stderr", errOut, "--cacert", "/nonexistent/ca.pem")
}

func TestCACert_TLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, wire.Health{Status: "ok", Role: "leader", Node: "tls-node", WAL: "ok"})
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.StartTLS()
	defer srv.Close()
	tc := newTestCLI(t)

	code, _, errOut := tc.run(t, "status", "--endpoints", srv.URL)
	if code != ctl.ExitUnreachable {
		t.Fatalf("without the CA: exit %d", code)
	}
	mustContain(t, "stderr", errOut, "certificate", "hint: the TLS handshake with "+srv.URL+" failed", "--cacert")

	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	tc.env[ctl.EnvCACert] = ca
	code, out, _ := tc.run(t, "status", "--endpoints", srv.URL)
	if code != ctl.ExitOK {
		t.Fatalf("with AUTONOMY_CACERT: exit %d", code)
	}
	mustContain(t, "table", out, "tls-node")
}

func TestInterrupted(t *testing.T) {
	n := newFakeNode(t, "node-a", nil)
	n.setOverride("/v1/health", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	tc := newTestCLI(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	code := tc.Run(ctx, []string{"status", "--endpoints", n.URL()})
	if code != ctl.ExitInterrupted || !strings.Contains(tc.stderr.String(), "interrupted") {
		t.Fatalf("exit %d, stderr %q", code, tc.stderr.String())
	}
}
