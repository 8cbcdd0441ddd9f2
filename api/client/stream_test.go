package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/api"
	"github.com/autonomyops/orchestrator/api/client"
	"github.com/autonomyops/orchestrator/walrepl"
	"github.com/sirupsen/logrus"
)

// streamNode serves the real API handler as a leader (leaderURL empty) or
// as a follower that redirects to leaderURL. Its Ingester hands out Seqs in
// the order calls arrive, then lets hook decide when and how a call ends.
// The roles the stream does not use are nil.
type streamNode struct {
	api.ClusterView
	api.Log
	api.SettingsStore
	api.AuditLog
	api.Membership
	api.FailoverRunner
	api.Snapshotter

	leaderURL string
	hook      func(ctx context.Context, ids []string) error

	mu    sync.Mutex
	next  uint64
	seqOf map[string]uint64
	calls int
}

func (n *streamNode) Serving() bool                  { return n.leaderURL == "" }
func (n *streamNode) Leader() (string, string, bool) { return "n1", n.leaderURL, true }
func (n *streamNode) NodeName() string {
	if n.Serving() {
		return "n1"
	}
	return "n2"
}
func (n *streamNode) Health() (api.Health, bool) {
	if n.Serving() {
		return api.Health{Status: "ok", Role: walrepl.RoleLeader, Node: "n1", WAL: "ok"}, true
	}
	return api.Health{Status: "unavailable", Role: walrepl.RoleFollower, Node: "n2", WAL: "ok"}, false
}

func (n *streamNode) Ingest(ctx context.Context, payloads [][]byte, ids []string) ([]uint64, uint64, error) {
	n.mu.Lock()
	n.calls++
	seqs := make([]uint64, len(payloads))
	for i := range payloads {
		n.next++
		seqs[i] = n.next
		n.seqOf[ids[i]] = n.next
	}
	safe := n.next
	n.mu.Unlock()
	if n.hook != nil {
		if err := n.hook(ctx, ids); err != nil {
			return nil, 0, err
		}
	}
	return seqs, safe, nil
}

func (n *streamNode) seqsOf(ids []string) []uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []uint64
	for _, id := range ids {
		out = append(out, n.seqOf[id])
	}
	return out
}

func serveStreamNode(t *testing.T, n *streamNode) *httptest.Server {
	t.Helper()
	n.seqOf = map[string]uint64{}
	cfg := api.DefaultConfig()
	log := logrus.New()
	log.SetOutput(io.Discard)
	cfg.Logger = log
	h, err := api.NewHandler(cfg, api.Backends{Node: n, Cluster: n, Ingest: n, Log: n, Fleet: api.NewFleet(), Settings: n,
		Audit: n, Members: n, Failover: n, Snapshot: n})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func streamClient(t *testing.T, eps ...string) *client.Client {
	t.Helper()
	c, err := client.New(eps, client.Options{Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// lineIDs are the ids of line n's k events.
func lineIDs(n, k int) []string {
	var ids []string
	for i := 0; i < k; i++ {
		ids = append(ids, fmt.Sprintf("s%d-%d", n, i))
	}
	return ids
}

// batch is a line of events with the given ids; an array, or one object.
func batch(ids []string) []byte {
	var evs []string
	for _, id := range ids {
		evs = append(evs, fmt.Sprintf(`{"id":%q,"kind":"stream"}`, id))
	}
	if len(evs) == 1 {
		return []byte(evs[0])
	}
	return []byte("[" + strings.Join(evs, ",\n  ") + "]") // a newline inside a batch is whitespace
}

// Lines sent on one stream, found through a follower's redirect, are all
// acknowledged in line order, each with the Seqs the leader gave its own
// events; the stream ends cleanly after CloseSend.
func TestStream_acksEveryLineInOrder(t *testing.T) {
	leader := &streamNode{hook: func(ctx context.Context, ids []string) error {
		time.Sleep(time.Duration(len(ids)) * time.Millisecond) // bigger lines commit later
		return nil
	}}
	lsrv := serveStreamNode(t, leader)
	follower := &streamNode{leaderURL: lsrv.URL}
	fsrv := serveStreamNode(t, follower)

	ctx := context.Background()
	s, err := streamClient(t, fsrv.URL).OpenStream(ctx, client.StreamOptions{Window: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.URL, lsrv.URL) {
		t.Fatalf("the stream is on %s, want the leader %s", s.URL, lsrv.URL)
	}
	const lines = 300
	got := make(chan []client.StreamAck, 1)
	go func() {
		var acks []client.StreamAck
		for a := range s.Acks() {
			acks = append(acks, a)
		}
		got <- acks
	}()
	for n := 1; n <= lines; n++ {
		line, err := s.Send(ctx, batch(lineIDs(n, 1+n%5)))
		if err != nil || line != n {
			t.Fatalf("Send line %d: %d, %v", n, line, err)
		}
	}
	s.CloseSend()
	if _, err := s.Send(ctx, batch(lineIDs(0, 1))); !errors.Is(err, client.ErrStreamClosed) {
		t.Fatalf("Send after CloseSend: %v, want ErrStreamClosed", err)
	}
	acks := <-got
	if len(acks) != lines {
		t.Fatalf("%d acks for %d lines", len(acks), lines)
	}
	for i, a := range acks {
		n := i + 1
		if want := leader.seqsOf(lineIDs(n, 1+n%5)); a.Line != n || a.Err != nil || !slices.Equal(a.Seqs, want) || a.SafeSeq == 0 {
			t.Fatalf("ack %d: %+v, want line %d at Seqs %v", i, a, n, want)
		}
	}
	if err := s.Err(); err != nil {
		t.Fatalf("Err after a clean end: %v", err)
	}
	if follower.calls != 0 {
		t.Fatalf("the follower ingested %d lines", follower.calls)
	}
}

// Send returns at once up to the window and blocks beyond it until an
// answer frees a slot.
func TestStream_sendBlocksAtTheWindow(t *testing.T) {
	release := make(chan struct{})
	n := &streamNode{hook: func(ctx context.Context, ids []string) error {
		<-release
		return nil
	}}
	srv := serveStreamNode(t, n)
	ctx := context.Background()
	s, err := streamClient(t, srv.URL).OpenStream(ctx, client.StreamOptions{Window: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 1; i <= 4; i++ {
		if _, err := s.Send(ctx, batch(lineIDs(i, 1))); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := s.Send(short, batch(lineIDs(5, 1))); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a fifth Send with a window of 4: %v, want it to block until its context ends", err)
	}
	close(release)
	if a := <-s.Acks(); a.Line != 1 || a.Err != nil {
		t.Fatalf("first ack %+v", a)
	}
	line, err := s.Send(ctx, batch(lineIDs(5, 1)))
	if err != nil || line != 5 {
		t.Fatalf("Send after an ack: %d, %v", line, err)
	}
	s.CloseSend()
	for want := 2; want <= 5; want++ {
		if a := <-s.Acks(); a.Line != want || a.Err != nil {
			t.Fatalf("ack %+v, want line %d", a, want)
		}
	}
	if _, ok := <-s.Acks(); ok {
		t.Fatal("Acks not closed after the last line")
	}
}

// When the leader ends the stream (it lost leadership), every line sent
// still gets an ack: the leader's error for those it answered, and
// ErrStreamEnded for those it never read. Send then fails.
func TestStream_endedByTheLeader(t *testing.T) {
	n := &streamNode{}
	n.hook = func(ctx context.Context, ids []string) error {
		switch {
		case slices.Contains(ids, "s3-0"): // (lines that arrive together share a call)
			return fmt.Errorf("node: %w", walrepl.ErrNotLeader)
		case !slices.ContainsFunc(ids, func(id string) bool { return id != "s1-0" && id != "s2-0" }):
			return nil
		}
		<-ctx.Done() // the leader cancels the lines behind the failed one
		return ctx.Err()
	}
	srv := serveStreamNode(t, n)
	ctx := context.Background()
	s, err := streamClient(t, srv.URL).OpenStream(ctx, client.StreamOptions{Window: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const lines = 40
	sent := make(chan int, 1)
	go func() {
		i := 0
		for i = 1; i <= lines; i++ {
			if _, err := s.Send(ctx, batch(lineIDs(i, 1))); err != nil {
				break
			}
		}
		sent <- i - 1
	}()
	var acks []client.StreamAck
	for a := range s.Acks() {
		acks = append(acks, a)
	}
	k := <-sent
	if len(acks) != k || k < 3 || k == lines {
		t.Fatalf("%d acks for %d lines sent (of %d)", len(acks), k, lines)
	}
	failed := false
	for i, a := range acks {
		var le *client.LineError
		switch {
		case a.Line != i+1:
			t.Fatalf("ack %d is for line %d", i, a.Line)
		case a.Line <= 3 && a.Err != nil && (!errors.As(a.Err, &le) || le.Code != "not_leader" || le.Line != a.Line):
			t.Fatalf("line %d: %v, want a not_leader LineError", a.Line, a.Err)
		case a.Line == 3 && a.Err == nil, a.Err == nil && failed:
			t.Fatalf("line %d acknowledged: %+v", a.Line, a)
		}
		failed = failed || a.Err != nil
	}
	if err := s.Err(); !errors.Is(err, client.ErrStreamEnded) || !strings.Contains(err.Error(), "not_leader") {
		t.Fatalf("Err: %v, want ErrStreamEnded naming not_leader", err)
	}
	if _, err := s.Send(ctx, batch(lineIDs(99, 1))); !errors.Is(err, client.ErrStreamEnded) {
		t.Fatalf("Send after the end: %v", err)
	}
}

// Close ends a stream at once, with lines in flight and nobody reading the
// acks, and leaves no goroutine behind (TestMain checks).
func TestStream_closeWithLinesInFlight(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	n := &streamNode{hook: func(ctx context.Context, ids []string) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return ctx.Err()
	}}
	srv := serveStreamNode(t, n)
	ctx := context.Background()
	s, err := streamClient(t, srv.URL).OpenStream(ctx, client.StreamOptions{Window: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if _, err := s.Send(ctx, batch(lineIDs(i, 1))); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs")
	}
	if _, err := s.Send(ctx, batch(lineIDs(4, 1))); !errors.Is(err, client.ErrStreamClosed) && !errors.Is(err, client.ErrStreamEnded) {
		t.Fatalf("Send after Close: %v", err)
	}
	s.Close() // idempotent
}

// A 4xx answer to the open is an *HTTPError, as for any request; a server
// that answers only once it has the whole body (net/http without full
// duplex) fails the open within the client's timeout instead of hanging it.
func TestStream_openRefused(t *testing.T) {
	for _, fullDuplex := range []bool{true, false} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v1/health" {
				w.Write([]byte(`{"status":"ok","role":"leader"}`))
				return
			}
			if fullDuplex {
				http.NewResponseController(w).EnableFullDuplex()
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"error":"forbidden","message":"the role viewer may not do this"}`))
		}))
		c, err := client.New([]string{srv.URL}, client.Options{HTTPClient: &http.Client{Timeout: 500 * time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = c.OpenStream(context.Background(), client.StreamOptions{})
		var he *client.HTTPError
		switch {
		case fullDuplex && (!errors.As(err, &he) || he.Status != http.StatusForbidden || he.Code != "forbidden"):
			t.Errorf("open: %v, want a 403 HTTPError", err)
		case !fullDuplex && (err == nil || !strings.Contains(err.Error(), "Client.Timeout exceeded while awaiting headers")):
			t.Errorf("open against a server that waits for the body: %v, want the header timeout", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("open took %s", d)
		}
		srv.Close()
	}
	if _, err := streamClient(t, "http://127.0.0.1:1").OpenStream(context.Background(), client.StreamOptions{Window: 1025}); err == nil {
		t.Fatal("a window above the maximum was accepted")
	}
}
