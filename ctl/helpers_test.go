package ctl_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/autonomyops/orchestrator/ctl"
)

// testCLI is a CLI wired to buffers, a fake environment and a private
// config directory.
type testCLI struct {
	*ctl.CLI
	env    map[string]string
	stdout bytes.Buffer
	stderr bytes.Buffer
}

func newTestCLI(t *testing.T) *testCLI {
	t.Helper()
	tc := &testCLI{env: map[string]string{}}
	tc.CLI = &ctl.CLI{
		Stdout:    &tc.stdout,
		Stderr:    &tc.stderr,
		Getenv:    func(k string) string { return tc.env[k] },
		ConfigDir: t.TempDir(),
	}
	return tc
}

// run executes one command line and returns the exit status, stdout and
// stderr of that run.
func (tc *testCLI) run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	tc.stdout.Reset()
	tc.stderr.Reset()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := tc.Run(ctx, args)
	t.Logf("autonomyctl %s → %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, tc.stdout.String(), tc.stderr.String())
	checkPrintedHints(t, tc.stderr.String())
	return code, tc.stdout.String(), tc.stderr.String()
}

// fakeNode is an httptest server answering the API routes autonomyctl uses
// with the api package's JSON shapes. A leader answers /v1/health with 200
// and serves leader-only routes; a follower answers 503 and redirects them.
type fakeNode struct {
	t      *testing.T
	srv    *httptest.Server
	name   string
	leader *fakeNode // nil: this node leads; else the node it redirects to

	mu   sync.Mutex
	hits map[string]int
	reqs []*http.Request
	// override, when set for a path, answers instead of the default handler.
	override map[string]http.HandlerFunc
}

func newFakeNode(t *testing.T, name string, leader *fakeNode) *fakeNode {
	t.Helper()
	n := &fakeNode{t: t, name: name, leader: leader, hits: map[string]int{}, override: map[string]http.HandlerFunc{}}
	n.srv = httptest.NewServer(http.HandlerFunc(n.serve))
	t.Cleanup(n.srv.Close)
	return n
}

func (n *fakeNode) URL() string { return n.srv.URL }

func (n *fakeNode) hitCount(path string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.hits[path]
}

func (n *fakeNode) lastRequest() *http.Request {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.reqs) == 0 {
		return nil
	}
	return n.reqs[len(n.reqs)-1]
}

func (n *fakeNode) setOverride(path string, h http.HandlerFunc) {
	n.mu.Lock()
	n.override[path] = h
	n.mu.Unlock()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (n *fakeNode) health() wire.Health {
	h := wire.Health{Status: "ok", Role: "leader", Node: n.name, Leader: n.name, LeaderURL: n.URL(),
		Epoch: 7, SafeSeq: 42, LastSeq: 43, WAL: "ok"}
	if n.leader != nil {
		h.Status, h.Role, h.Leader, h.LeaderURL = "unavailable", "follower", n.leader.name, n.leader.URL()
		h.SafeSeq, h.LastSeq = 41, 41
		h.Reasons = []string{"not_leader"}
	}
	return h
}

func (n *fakeNode) serve(w http.ResponseWriter, r *http.Request) {
	n.mu.Lock()
	n.hits[r.URL.Path]++
	n.reqs = append(n.reqs, r.Clone(context.Background()))
	h := n.override[r.URL.Path]
	n.mu.Unlock()
	if h != nil {
		h(w, r)
		return
	}
	switch r.URL.Path {
	case "/v1/health":
		st := http.StatusOK
		if n.leader != nil {
			st = http.StatusServiceUnavailable
		}
		writeJSON(w, st, n.health())
	case "/v1/ha/status":
		writeJSON(w, http.StatusOK, n.haStatus())
	case "/v1/wal/status":
		writeJSON(w, http.StatusOK, wire.WALStatus{Node: n.name, Dir: "/var/lib/autonomy/telemetry", WALID: "abc",
			Base: 1, FirstSeq: 1, LastSeq: 43, FsyncedSeq: 43, SafeSeq: 42, PersistedSafeSeq: 40, Bytes: 4096,
			FsyncCount: 10, FsyncLastMs: 0.5, FsyncAvgMs: 0.4, FsyncMaxMs: 2})
	case "/v1/wal/inspect":
		writeJSON(w, http.StatusOK, wire.InspectResponse{Node: n.name, SafeSeq: 42, Frames: []wire.Frame{
			{Seq: 41, Epoch: 7, TS: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Type: "event", Event: json.RawMessage(`{"kind":"error","msg":"boom"}`)},
			{Seq: 42, Epoch: 7, TS: time.Date(2026, 1, 2, 3, 4, 6, 0, time.UTC), Type: "event", Event: json.RawMessage(`{"kind":"error","msg":"again"}`)},
		}})
	case "/v1/fleet/summary": // a leader-only route
		if n.leader != nil {
			w.Header().Set(wire.HeaderLeader, n.leader.name)
			http.Redirect(w, r, n.leader.URL()+r.URL.RequestURI(), http.StatusTemporaryRedirect)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"agents": 3})
	default:
		writeJSON(w, http.StatusNotFound, wire.ErrorResponse{Error: "not_found", Message: "no such route: " + r.URL.Path})
	}
}

func (n *fakeNode) haStatus() wire.HAStatus {
	lead := n
	if n.leader != nil {
		lead = n.leader
	}
	role := "leader"
	if n.leader != nil {
		role = "follower"
	}
	return wire.HAStatus{
		Node: n.name, Role: role,
		Leader:  &wire.LeaderRef{Name: lead.name, APIURL: lead.URL(), Epoch: 7, Since: time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)},
		SafeSeq: 42,
		Quorum:  wire.Quorum{Size: 2, Healthy: 3},
		Members: []wire.Member{
			{Name: "node-a", APIURL: "http://node-a:8888", State: "alive", Role: "leader", GossipState: "alive", LastSeq: 43, FsyncedSeq: 43},
			{Name: "node-b", APIURL: "http://node-b:8888", State: "alive", Role: "follower", GossipState: "alive", LastSeq: 41, FsyncedSeq: 41, Lag: 1},
			{Name: "node-c", APIURL: "http://node-c:8888", State: "unreachable", Role: "learner", GossipState: "suspect", Learner: true, Lag: 42},
		},
	}
}

// closedPort returns a 127.0.0.1 port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

func refusedURL(t *testing.T) (string, int) {
	p := closedPort(t)
	return fmt.Sprintf("http://127.0.0.1:%d", p), p
}

func mustContain(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s does not contain %q:\n%s", what, sub, s)
		}
	}
}

func decodeJSON(t *testing.T, s string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("stdout is not the expected JSON: %v\n%s", err, s)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("trailing data after the JSON document:\n%s", s)
	}
}

// jsonKeys decodes a JSON object and returns it as a map.
func jsonKeys(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("stdout is not a JSON object: %v\n%s", err, s)
	}
	return m
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
