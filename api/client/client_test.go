package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/api/client"
	"github.com/autonomyops/orchestrator/api/wire"
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
			writeJSON(w, 200, wire.Health{Status: "ok", Role: "leader", Node: n.name, Epoch: 3, WAL: "ok"})
			return
		}
		writeJSON(w, 503, wire.Health{Status: "unavailable", Role: "follower", Node: n.name, Leader: n.leader.name,
			LeaderURL: n.leader.srv.URL, Epoch: 3, WAL: "ok", Reasons: []string{"not_leader"}})
	case "/v1/ha/status":
		writeJSON(w, 200, wire.HAStatus{Node: n.name, Role: map[bool]string{true: "leader", false: "follower"}[n.leader == nil]})
	case "/v1/wal/status":
		writeJSON(w, 200, wire.WALStatus{Node: n.name, LastSeq: 9})
	case "/v1/fleet/summary":
		n.routeHits.Add(1)
		if n.leader != nil {
			w.Header().Set(wire.HeaderLeader, n.leader.name)
			http.Redirect(w, r, n.leader.srv.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
			return
		}
		n.authSeen.Store(r.Header.Get("Authorization"))
		writeJSON(w, 200, map[string]any{"node": n.name, "query": r.URL.RawQuery})
	default:
		writeJSON(w, 404, wire.ErrorResponse{Error: "not_found", Message: "no such route: " + r.URL.Path})
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

func newClient(t *testing.T, eps []string, token string) *client.Client {
	t.Helper()
	c, err := client.New(eps, client.Options{Token: token, HTTPClient: &http.Client{Timeout: 5 * time.Second}})
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
	if !errors.Is(err, client.ErrNoLeader) || !strings.Contains(err.Error(), "not_leader") {
		t.Fatalf("followers only: %v", err)
	}
}

func TestClient_leaderOnlyGoesToLeader(t *testing.T) {
	leader := newNode(t, "a", nil)
	follower := newNode(t, "b", leader)
	c := newClient(t, []string{follower.srv.URL, leader.srv.URL}, "tok")
	var out map[string]string
	rep, err := c.Do(context.Background(), client.Request{Path: "/v1/fleet/summary", Route: client.LeaderOnly}, &out)
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
	rep, err := c.Do(context.Background(), client.Request{Path: "/v1/fleet/summary", Route: client.LeaderOnly,
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
	_, err := c.Do(context.Background(), client.Request{Path: "/v1/x", Endpoint: a.URL}, nil)
	if err == nil || !strings.Contains(err.Error(), "more than 3 redirects") {
		t.Fatalf("err = %v", err)
	}
}

func TestClient_httpError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/json":
			w.Header().Set("Retry-After", "1")
			writeJSON(w, 503, wire.ErrorResponse{Error: "no_leader", Message: "no leader is known right now; retry shortly"})
		default:
			w.WriteHeader(502)
			fmt.Fprint(w, "<html>bad gateway</html>")
		}
	}))
	defer srv.Close()
	c := newClient(t, []string{srv.URL}, "")

	_, err := c.Do(context.Background(), client.Request{Path: "/json"}, nil)
	var he *client.HTTPError
	if !errors.As(err, &he) || he.Status != 503 || he.Code != "no_leader" || he.Message != "no leader is known right now; retry shortly" || he.RetryAfter != "1" {
		t.Fatalf("err = %#v", err)
	}
	if err.Error() != "GET "+srv.URL+"/json: 503 no_leader: no leader is known right now; retry shortly" {
		t.Fatalf("Error() = %q", err.Error())
	}
	_, err = c.Do(context.Background(), client.Request{Path: "/html"}, nil)
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
	_, err := c.Do(context.Background(), client.Request{Path: "/v1/fleet/summary", Route: client.LeaderOnly}, nil)
	var unr *client.UnreachableError
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
	_, err = c.Do(context.Background(), client.Request{Method: "POST", Path: "/v1/telemetry/events", Route: client.LeaderOnly, Body: map[string]int{"a": 1}}, nil)
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
	c, err := client.New([]string{srv.URL}, client.Options{HTTPClient: &http.Client{Timeout: 100 * time.Millisecond}})
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
		if got, err := client.NormalizeEndpoint(in); err != nil || got != want {
			t.Errorf("%q: %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"ftp://x", "http://", "http://u:p@x:1", "http://x:1/?a=b"} {
		if _, err := client.NormalizeEndpoint(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := client.New([]string{" ", ""}, client.Options{}); !errors.Is(err, client.ErrNoEndpoints) {
		t.Errorf("empty list: %v", err)
	}
}

// logNode serves GET /v1/logs with h; a follower redirects it to leader.
func logNode(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/health":
			writeJSON(w, 200, wire.Health{Status: "ok", Role: "leader"})
		case "/v1/logs":
			h(w, r)
		default:
			writeJSON(w, 404, wire.ErrorResponse{Error: "not_found"})
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func ndjsonHeader(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/x-ndjson; charset=utf-8")
}

func TestClient_logsStream(t *testing.T) {
	var auth atomic.Value
	leader := logNode(t, func(w http.ResponseWriter, r *http.Request) {
		auth.Store(r.Header.Get("Authorization"))
		ndjsonHeader(w)
		fmt.Fprintf(w, "\n{\"seq\":4,\"epoch\":2,\"ts\":\"2026-01-02T03:04:05Z\",\"event\":{\"kind\":\"error\"}}\n\n\n")
		fmt.Fprintf(w, "{\"seq\":5,\"epoch\":2,\"ts\":\"2026-01-02T03:04:06Z\",\"event\":{\"kind\":\"x\"}}\n")
	})
	follower := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/health" {
			writeJSON(w, 503, wire.Health{Role: "follower"})
			return
		}
		w.Header().Set(wire.HeaderLeader, leader.URL)
		http.Redirect(w, r, leader.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	defer follower.Close()
	c := newClient(t, []string{follower.URL}, "tok")
	s, err := c.Logs(context.Background(), client.LogsQuery{AfterSeq: 3, Follow: true, Kind: "error"}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.URL != leader.URL+"/v1/logs?after_seq=3&follow=true&kind=error" || auth.Load() != "Bearer tok" {
		t.Fatalf("answered by %s, Authorization %v", s.URL, auth.Load())
	}
	var seqs []uint64
	for {
		ev, line, err := s.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(line), `{"seq":`) || strings.HasSuffix(string(line), "\n") {
			t.Fatalf("line %q", line)
		}
		seqs = append(seqs, ev.Seq)
	}
	if fmt.Sprint(seqs) != "[4 5]" {
		t.Fatalf("seqs %v", seqs)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestClient_logsStreamFailures(t *testing.T) {
	t.Run("cut mid-line", func(t *testing.T) {
		srv := logNode(t, func(w http.ResponseWriter, r *http.Request) {
			ndjsonHeader(w)
			fmt.Fprint(w, `{"seq":1,"ev`)
		})
		c := newClient(t, []string{srv.URL}, "")
		s, err := c.Logs(context.Background(), client.LogsQuery{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, _, err := s.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("idle", func(t *testing.T) {
		srv := logNode(t, func(w http.ResponseWriter, r *http.Request) {
			ndjsonHeader(w)
			fmt.Fprint(w, "\n")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		})
		c := newClient(t, []string{srv.URL}, "")
		s, err := c.Logs(context.Background(), client.LogsQuery{Follow: true}, 150*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		t0 := time.Now()
		if _, _, err := s.Next(); !errors.Is(err, client.ErrStreamIdle) || time.Since(t0) < 100*time.Millisecond {
			t.Fatalf("err = %v after %s", err, time.Since(t0))
		}
	})
	t.Run("not ndjson", func(t *testing.T) {
		srv := logNode(t, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]any{"events": []int{}}) })
		c := newClient(t, []string{srv.URL}, "")
		if _, err := c.Logs(context.Background(), client.LogsQuery{}, 0); err == nil || !strings.Contains(err.Error(), "application/x-ndjson") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("headers late", func(t *testing.T) {
		srv := logNode(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
		c, err := client.New([]string{srv.URL}, client.Options{HTTPClient: &http.Client{Timeout: 200 * time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Logs(context.Background(), client.LogsQuery{Follow: true}, 0)
		var ue *url.Error
		if !errors.As(err, &ue) || !ue.Timeout() ||
			!strings.Contains(err.Error(), `Get "`+srv.URL+`/v1/logs?follow=true": context deadline exceeded (Client.Timeout exceeded while awaiting headers)`) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("status", func(t *testing.T) {
		srv := logNode(t, func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 503, wire.ErrorResponse{Error: "no_leader", Message: "election"})
		})
		c := newClient(t, []string{srv.URL}, "")
		_, err := c.Logs(context.Background(), client.LogsQuery{}, 0)
		var he *client.HTTPError
		if !errors.As(err, &he) || he.Status != 503 || he.Code != "no_leader" {
			t.Fatalf("err = %v", err)
		}
	})
	// A stream outlives the client's per-request timeout.
	t.Run("longer than the timeout", func(t *testing.T) {
		srv := logNode(t, func(w http.ResponseWriter, r *http.Request) {
			ndjsonHeader(w)
			w.(http.Flusher).Flush()
			time.Sleep(300 * time.Millisecond)
			fmt.Fprint(w, `{"seq":1,"epoch":1,"ts":"2026-01-02T03:04:05Z","event":{}}`+"\n")
		})
		c, _ := client.New([]string{srv.URL}, client.Options{HTTPClient: &http.Client{Timeout: 100 * time.Millisecond}})
		s, err := c.Logs(context.Background(), client.LogsQuery{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if ev, _, err := s.Next(); err != nil || ev.Seq != 1 {
			t.Fatalf("%+v %v", ev, err)
		}
	})
}

// A POST that may have reached a node is never sent to the next one; one
// that could not even connect is.
func TestClient_postResentOnlyAfterDialError(t *testing.T) {
	var hits atomic.Int64
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.ReadAll(r.Body)
		<-r.Context().Done()
	}))
	defer slow.Close()
	var okHits atomic.Int64
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		okHits.Add(1)
		writeJSON(w, 200, map[string]string{"ok": "yes"})
	}))
	defer ok.Close()
	c, _ := client.New([]string{slow.URL, ok.URL}, client.Options{HTTPClient: &http.Client{Timeout: 200 * time.Millisecond}})
	_, err := c.Do(context.Background(), client.Request{Method: http.MethodPost, Path: "/v1/x", Body: map[string]int{"a": 1}}, nil)
	var ue *url.Error
	if !errors.As(err, &ue) || okHits.Load() != 0 || hits.Load() != 1 {
		t.Fatalf("err %v; slow %d hits, next %d hits", err, hits.Load(), okHits.Load())
	}
	dead, _ := refused(t)
	c, _ = client.New([]string{dead, ok.URL}, client.Options{})
	if _, err := c.Do(context.Background(), client.Request{Method: http.MethodPost, Path: "/v1/x"}, nil); err != nil || okHits.Load() != 1 {
		t.Fatalf("after a dial error: %v, %d hits", err, okHits.Load())
	}
	// GETs are resent after any transport error.
	c, _ = client.New([]string{slow.URL, ok.URL}, client.Options{HTTPClient: &http.Client{Timeout: 200 * time.Millisecond}})
	if _, err := c.Do(context.Background(), client.Request{Path: "/v1/x"}, nil); err != nil || okHits.Load() != 2 {
		t.Fatalf("GET: %v, %d hits", err, okHits.Load())
	}
}

func TestClient_settingsAndOps(t *testing.T) {
	type seen struct{ method, path, ifMatch, body string }
	var mu sync.Mutex
	var reqs []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/health" {
			writeJSON(w, 200, wire.Health{Role: "leader"})
			return
		}
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		reqs = append(reqs, seen{r.Method, r.URL.EscapedPath() + "?" + r.URL.RawQuery, r.Header.Get("If-Match"), string(b)})
		mu.Unlock()
		switch {
		case r.URL.Path == "/v1/config/":
			writeJSON(w, 200, wire.SettingsList{Settings: []wire.Setting{{Key: "a", Revision: 3}}, Revision: 9})
		case strings.HasPrefix(r.URL.Path, "/v1/config/"):
			writeJSON(w, 200, wire.Setting{Key: strings.TrimPrefix(r.URL.Path, "/v1/config/"), Value: json.RawMessage(`1`), Revision: 10})
		case r.URL.Path == "/v1/audit":
			writeJSON(w, 200, wire.AuditResponse{Records: []wire.AuditRecord{{Action: "failover"}}})
		case r.URL.Path == "/v1/ha/failover":
			writeJSON(w, 200, wire.FailoverResponse{NewLeader: "b", TookMs: 5})
		case r.URL.Path == "/v1/fleet/summary":
			writeJSON(w, 200, wire.FleetSummary{Events: 7})
		}
	}))
	defer srv.Close()
	c := newClient(t, []string{srv.URL}, "")
	ctx := context.Background()
	zero, five := int64(0), int64(5)
	if l, _, err := c.Settings(ctx); err != nil || l.Revision != 9 {
		t.Fatalf("%+v %v", l, err)
	}
	if st, _, err := c.Setting(ctx, "ingest/max batch"); err != nil || st.Revision != 10 {
		t.Fatalf("%+v %v", st, err)
	}
	if _, _, err := c.PutSetting(ctx, "k", json.RawMessage(`{"x": 1}`), &zero); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.PutSetting(ctx, "k", json.RawMessage(`"s"`), nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.DeleteSetting(ctx, "k", &five); err != nil {
		t.Fatal(err)
	}
	if ar, _, err := c.Audit(ctx, 3); err != nil || ar.Records[0].Action != "failover" {
		t.Fatalf("%+v %v", ar, err)
	}
	if fr, _, err := c.Failover(ctx, wire.FailoverRequest{To: "b"}); err != nil || fr.NewLeader != "b" {
		t.Fatalf("%+v %v", fr, err)
	}
	if fs, _, err := c.FleetSummary(ctx); err != nil || fs.Events != 7 {
		t.Fatalf("%+v %v", fs, err)
	}
	want := []seen{
		{"GET", "/v1/config/?", "", ""},
		{"GET", "/v1/config/ingest/max%20batch?", "", ""},
		{"PUT", "/v1/config/k?", "0", `{"value":{"x":1}}`},
		{"PUT", "/v1/config/k?", "", `{"value":"s"}`},
		{"DELETE", "/v1/config/k?", "5", ""},
		{"GET", "/v1/audit?limit=3", "", ""},
		{"POST", "/v1/ha/failover?", "", `{"to":"b"}`},
		{"GET", "/v1/fleet/summary?", "", ""},
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(reqs) != fmt.Sprint(want) {
		t.Fatalf("requests\n got %v\nwant %v", reqs, want)
	}
}
