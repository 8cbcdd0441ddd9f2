package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/api"
)

// node is a fake API node. A leader answers /v1/health 200 and serves the
// leader-only route /v1/fleet/summary; a follower answers 503 and redirects
// that route with 307, Location and X-Autonomy-Leader, like api/server.go.
type node struct {
	srv       *httptest.Server
	name      string
	leader    *node
	authSeen  atomic.Value // string: the last Authorization header on /v1/fleet/summary
	routeHits atomic.Int64
}

func newNode(t *testing.T, name string, leader *node) *node {
	t.Helper()
	n := &node{name: name, leader: leader}
	n.authSeen.Store("")
	n.srv = httptest.NewServer(http.HandlerFunc(n.serve))
	t.Cleanup(n.srv.Close)
	return n
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (n *node) serve(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/v1/health":
		if n.leader == nil {
			writeJSON(w, 200, api.Health{Status: "ok", Role: "leader", Node: n.name, Epoch: 3, WAL: "ok"})
			return
		}
		writeJSON(w, 503, api.Health{Status: "unavailable", Role: "follower", Node: n.name, Leader: n.leader.name,
			LeaderURL: n.leader.srv.URL, Epoch: 3, WAL: "ok", Reasons: []string{"not_leader"}})
	case "/v1/ha/status":
		writeJSON(w, 200, api.HAStatus{Node: n.name, Role: map[bool]string{true: "leader", false: "follower"}[n.leader == nil]})
	case "/v1/wal/status":
		writeJSON(w, 200, api.WALStatus{Node: n.name, LastSeq: 9})
	case "/v1/fleet/summary":
		n.routeHits.Add(1)
		if n.leader != nil {
			w.Header().Set(api.HeaderLeader, n.leader.name)
			http.Redirect(w, r, n.leader.srv.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
			return
		}
		n.authSeen.Store(r.Header.Get("Authorization"))
		writeJSON(w, 200, map[string]any{"node": n.name, "query": r.URL.RawQuery})
	default:
		writeJSON(w, 404, api.ErrorResponse{Error: "not_found", Message: "no such route: " + r.URL.Path})
	}
}

func refused(t *testing.T) (string, int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return fmt.Sprintf("http://127.0.0.1:%d", p), p
}

func newClient(t *testing.T, eps []string, token string) *api.Client {
	t.Helper()
	c, err := api.NewClient(eps, api.ClientOptions{Token: token, HTTPClient: &http.Client{Timeout: 5 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestClient_leaderDiscovery(t *testing.T) {
	leader := newNode(t, "a", nil)
	follower := newNode(t, "b", leader)
	dead, _ := refused(t)
	c := newClient(t, []string{dead, follower.srv.URL, leader.srv.URL}, "")
	got, err := c.Leader(context.Background())
	if err != nil || got != leader.srv.URL || c.KnownLeader() != leader.srv.URL {
		t.Fatalf("Leader() = %q, %v", got, err)
	}

	// Only followers: ErrNoLeader, naming what they said.
	c = newClient(t, []string{follower.srv.URL}, "")
	_, err = c.Leader(context.Background())
	if !errors.Is(err, api.ErrNoLeader) || !strings.Contains(err.Error(), "not_leader") {
		t.Fatalf("followers only: %v", err)
	}
}

func TestClient_leaderOnlyGoesToLeader(t *testing.T) {
	leader := newNode(t, "a", nil)
	follower := newNode(t, "b", leader)
	c := newClient(t, []string{follower.srv.URL, leader.srv.URL}, "tok")
	var out map[string]string
	rep, err := c.Do(context.Background(), api.Request{Path: "/v1/fleet/summary", Route: api.LeaderOnly}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if out["node"] != "a" || rep.URL != leader.srv.URL+"/v1/fleet/summary" || follower.routeHits.Load() != 0 {
		t.Fatalf("answered by %v at %s; follower hit %d times", out, rep.URL, follower.routeHits.Load())
	}
}

// A follower's 307 is followed by the client itself, keeping the token and
// the query (Go's own redirect handling drops Authorization across hosts).
func TestClient_followsRedirectWithToken(t *testing.T) {
	leader := newNode(t, "a", nil)
	follower := newNode(t, "b", leader)
	c := newClient(t, []string{follower.srv.URL}, "s3cret") // the leader is not in the list
	var out map[string]string
	rep, err := c.Do(context.Background(), api.Request{Path: "/v1/fleet/summary", Route: api.LeaderOnly,
		Query: url.Values{"since": {"1h"}}}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if out["node"] != "a" || out["query"] != "since=1h" || leader.authSeen.Load() != "Bearer s3cret" {
		t.Fatalf("answer %v, leader saw Authorization %q", out, leader.authSeen.Load())
	}
	if follower.routeHits.Load() != 1 || rep.URL != leader.srv.URL+"/v1/fleet/summary?since=1h" || c.KnownLeader() != leader.srv.URL {
		t.Fatalf("follower hits %d, reply URL %s, known leader %s", follower.routeHits.Load(), rep.URL, c.KnownLeader())
	}
}

func TestClient_redirectLoop(t *testing.T) {
	var a, b *httptest.Server
	a = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, b.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	b = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, a.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer a.Close()
	defer b.Close()
	c := newClient(t, []string{a.URL}, "")
	_, err := c.Do(context.Background(), api.Request{Path: "/v1/x", Endpoint: a.URL}, nil)
	if err == nil || !strings.Contains(err.Error(), "more than 3 redirects") {
		t.Fatalf("err = %v", err)
	}
}

func TestClient_httpError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/json":
			w.Header().Set("Retry-After", "1")
			writeJSON(w, 503, api.ErrorResponse{Error: "no_leader", Message: "no leader is known right now; retry shortly"})
		default:
			w.WriteHeader(502)
			fmt.Fprint(w, "<html>bad gateway</html>")
		}
	}))
	defer srv.Close()
	c := newClient(t, []string{srv.URL}, "")

	_, err := c.Do(context.Background(), api.Request{Path: "/json"}, nil)
	var he *api.HTTPError
	if !errors.As(err, &he) || he.Status != 503 || he.Code != "no_leader" || he.Message != "no leader is known right now; retry shortly" || he.RetryAfter != "1" {
		t.Fatalf("err = %#v", err)
	}
	if err.Error() != "GET "+srv.URL+"/json: 503 no_leader: no leader is known right now; retry shortly" {
		t.Fatalf("Error() = %q", err.Error())
	}
	_, err = c.Do(context.Background(), api.Request{Path: "/html"}, nil)
	if !errors.As(err, &he) || he.Status != 502 || he.Code != "http_502" || he.Message != "<html>bad gateway</html>" {
		t.Fatalf("err = %#v", err)
	}
}

// Connection errors keep Go's text, the runbook's form, naming the route the
// caller asked for — also for a leader-only route, where discovery probed
// /v1/health first.
func TestClient_connectionRefusedText(t *testing.T) {
	dead, port := refused(t)
	c := newClient(t, []string{dead}, "")
	want := func(path string) string {
		return fmt.Sprintf(`Get "%s%s": dial tcp 127.0.0.1:%d: connect: connection refused`, dead, path, port)
	}
	_, err := c.Do(context.Background(), api.Request{Path: "/v1/fleet/summary", Route: api.LeaderOnly}, nil)
	var unr *api.UnreachableError
	if !errors.As(err, &unr) || err.Error() != want("/v1/fleet/summary") {
		t.Fatalf("leader-only: %v", err)
	}
	var ue *url.Error
	if !errors.As(err, &ue) || ue.URL != dead+"/v1/fleet/summary" {
		t.Fatalf("the *url.Error must be reachable with errors.As: %#v", err)
	}
	_, _, err = c.WALStatus(context.Background(), "")
	if err == nil || err.Error() != want("/v1/wal/status") {
		t.Fatalf("any-node: %v", err)
	}
	_, _, err = c.HAStatus(context.Background())
	if err == nil || err.Error() != want("/v1/ha/status") {
		t.Fatalf("ha status: %v", err)
	}
	_, err = c.Do(context.Background(), api.Request{Method: "POST", Path: "/v1/telemetry/events", Route: api.LeaderOnly, Body: map[string]int{"a": 1}}, nil)
	if err == nil || !strings.HasPrefix(err.Error(), `Post "`+dead+`/v1/telemetry/events": dial tcp`) {
		t.Fatalf("post: %v", err)
	}
}

func TestClient_timeoutText(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	defer srv.Close()
	c, err := api.NewClient([]string{srv.URL}, api.ClientOptions{HTTPClient: &http.Client{Timeout: 100 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.HAStatus(context.Background())
	want := fmt.Sprintf(`Get "%s/v1/ha/status": context deadline exceeded (Client.Timeout exceeded while awaiting headers)`, srv.URL)
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	var ue *url.Error
	if !errors.As(err, &ue) || !ue.Timeout() {
		t.Fatalf("want a timeout *url.Error: %#v", err)
	}
}

func TestClient_anyNodeSkipsUnreachable(t *testing.T) {
	dead, _ := refused(t)
	n := newNode(t, "b", newNode(t, "a", nil))
	c := newClient(t, []string{dead, n.srv.URL}, "")
	st, rep, err := c.WALStatus(context.Background(), "")
	if err != nil || st.Node != "b" || rep.URL != n.srv.URL+"/v1/wal/status" {
		t.Fatalf("%+v %+v %v", st, rep, err)
	}
	// Pinned to one endpoint: no fallback.
	if _, _, err := c.WALStatus(context.Background(), dead); err == nil {
		t.Fatal("a pinned, unreachable endpoint must fail")
	}
}

func TestClient_healthAll(t *testing.T) {
	leader := newNode(t, "a", nil)
	follower := newNode(t, "b", leader)
	dead, _ := refused(t)
	c := newClient(t, []string{leader.srv.URL, follower.srv.URL, dead}, "")
	res := c.HealthAll(context.Background())
	if len(res) != 3 || !res[0].Leading() || res[0].Health.Node != "a" ||
		res[1].Status != 503 || res[1].Health.Role != "follower" || res[1].Err != nil ||
		res[2].Status != 0 || res[2].Err == nil {
		t.Fatalf("%+v", res)
	}
}

func TestNormalizeEndpoint(t *testing.T) {
	for in, want := range map[string]string{
		"localhost:8888":              "http://localhost:8888",
		" http://node-a:8888/ ":       "http://node-a:8888",
		"https://lb.example/autonomy": "https://lb.example/autonomy",
	} {
		if got, err := api.NormalizeEndpoint(in); err != nil || got != want {
			t.Errorf("%q: %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"ftp://x", "http://", "http://u:p@x:1", "http://x:1/?a=b"} {
		if _, err := api.NormalizeEndpoint(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := api.NewClient([]string{" ", ""}, api.ClientOptions{}); !errors.Is(err, api.ErrNoEndpoints) {
		t.Errorf("empty list: %v", err)
	}
}
