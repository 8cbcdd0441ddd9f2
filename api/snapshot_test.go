package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/autonomyops/orchestrator/walrepl"
	"github.com/sirupsen/logrus"
)

// snapBackend is a node for GET /v1/snapshot: leading or not, streaming a
// fixed body or failing before it starts.
type snapBackend struct {
	ingestBackend
	leading bool
	failErr error
	who     *string
}

func (f snapBackend) Serving() bool { return f.leading }
func (f snapBackend) Health() (Health, bool) {
	if f.leading {
		return Health{Role: walrepl.RoleLeader}, true
	}
	return Health{Role: walrepl.RoleFollower}, false
}
func (f snapBackend) Leader() (string, string, bool) { return "n2", "http://n2:8888", true }
func (f snapBackend) Snapshot(_ context.Context, who string, start func() io.Writer) error {
	*f.who = who
	if f.failErr != nil {
		return f.failErr
	}
	_, err := io.WriteString(start(), "SNAPSHOT-BYTES")
	return err
}

func snapServer(t *testing.T, f snapBackend) *httptest.Server {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Tokens = testTokens(t)
	log := logrus.New()
	log.SetOutput(io.Discard)
	cfg.Logger = log
	b := f.ingestBackend.backends()
	b.Node, b.Snapshot = f, f
	h, err := NewHandler(cfg, b)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func getSnapshot(t *testing.T, url, token string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/snapshot", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// GET /v1/snapshot is for the admin role only, answered by the leader,
// redirected by a follower, and an error before the stream is a JSON error.
func TestSnapshot_route(t *testing.T) {
	var who string
	leader := snapServer(t, snapBackend{leading: true, who: &who})
	for _, tc := range []struct{ token, code string }{{"", "unauthorized"}, {"viewer-token", "forbidden"}, {"operator-token", "forbidden"}} {
		resp, b := getSnapshot(t, leader.URL, tc.token)
		var er wire.ErrorResponse
		json.Unmarshal(b, &er)
		if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden || er.Error != tc.code {
			t.Errorf("token %q: %d %s", tc.token, resp.StatusCode, b)
		}
	}
	if who != "" {
		t.Fatalf("the backend was called for a refused request (who=%q)", who)
	}
	resp, b := getSnapshot(t, leader.URL, "admin-token")
	if resp.StatusCode != http.StatusOK || string(b) != "SNAPSHOT-BYTES" || resp.Header.Get("Content-Type") != wire.ContentTypeSnapshot || who != "admin-user" {
		t.Fatalf("admin: %d %q %q who=%q", resp.StatusCode, b, resp.Header.Get("Content-Type"), who)
	}

	follower := snapServer(t, snapBackend{who: &who})
	resp, _ = getSnapshot(t, follower.URL, "admin-token")
	if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != "http://n2:8888/v1/snapshot" {
		t.Errorf("follower: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	failing := snapServer(t, snapBackend{leading: true, who: &who, failErr: fmt.Errorf("wrapped: %w", walrepl.ErrNotLeader)})
	resp, b = getSnapshot(t, failing.URL, "admin-token")
	var er wire.ErrorResponse
	if json.Unmarshal(b, &er) != nil || resp.StatusCode != http.StatusServiceUnavailable || er.Error != "not_leader" {
		t.Errorf("failing before the stream: %d %s", resp.StatusCode, b)
	}
}
