package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/autonomyops/orchestrator/walrepl"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
)

// fakeIngest is an Ingester that shows the test every call: each call gets
// the next Seqs at once, then hook (if set) decides when and how it returns.
type fakeIngest struct {
	hook func(ctx context.Context, ids []string) error

	mu          sync.Mutex
	next        uint64
	calls       int // calls begun
	inflight    int
	maxInflight int
	returned    int // calls returned
	seqOf       map[string]uint64
	order       []string   // the first id of each call, in the order the calls returned
	callIDs     [][]string // each call's ids, in the order the calls began
}

func newFakeIngest(hook func(ctx context.Context, ids []string) error) *fakeIngest {
	return &fakeIngest{hook: hook, seqOf: map[string]uint64{}}
}

func (f *fakeIngest) Ingest(ctx context.Context, payloads [][]byte, ids []string) ([]uint64, uint64, error) {
	f.mu.Lock()
	f.calls++
	f.callIDs = append(f.callIDs, ids)
	f.inflight++
	f.maxInflight = max(f.maxInflight, f.inflight)
	seqs := make([]uint64, len(payloads))
	for i := range payloads {
		f.next++
		seqs[i] = f.next
		f.seqOf[ids[i]] = f.next
	}
	safe := f.next
	f.mu.Unlock()
	var err error
	if f.hook != nil {
		err = f.hook(ctx, ids)
	}
	f.mu.Lock()
	f.inflight--
	f.returned++
	f.order = append(f.order, ids[0])
	f.mu.Unlock()
	if err != nil {
		return nil, 0, err
	}
	return seqs, safe, nil
}

// stat reads a counter of f under its lock.
func (f *fakeIngest) stat(get func(f *fakeIngest) int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return get(f)
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testTokens loads one token per role: "<role>-token" held by "<role>-user".
func testTokens(t *testing.T) *Tokens {
	t.Helper()
	body := "tokens:\n"
	for _, r := range []string{"viewer", "operator", "admin"} {
		sum := sha256.Sum256([]byte(r + "-token"))
		body += fmt.Sprintf("- {name: %s-user, role: %s, sha256: %s}\n", r, r, hex.EncodeToString(sum[:]))
	}
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	toks, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	return toks
}

// streamServer serves the API of a leader whose ingest is f; mod adjusts the
// config. The listener's sockets have small receive buffers, so that a
// server that stops reading holds the client back soon.
func streamServer(t *testing.T, f Ingester, mod func(*Config)) *httptest.Server {
	t.Helper()
	cfg := DefaultConfig()
	log := logrus.New()
	log.SetOutput(io.Discard)
	cfg.Logger = log
	if mod != nil {
		mod(&cfg)
	}
	b := ingestBackend{}.backends()
	b.Ingest = f
	h, err := NewHandler(cfg, b)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = smallBuffers{srv.Listener}
	var errs lockedBuffer
	srv.Config.ErrorLog = stdlog.New(&errs, "", 0)
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		if e := errs.String(); e != "" {
			t.Errorf("net/http logged:\n%s", e)
		}
	})
	return srv
}

// lockedBuffer is a bytes.Buffer for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetReadBuffer(8 << 10)
	}
	return c, err
}

// streamClient is an HTTP/1.1 client whose sockets have small send buffers
// and which follows no redirect.
func streamClient(t *testing.T) *http.Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetWriteBuffer(8 << 10)
		}
		return c, err
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// rawStream is POST /v1/telemetry/stream driven by hand: lines written to
// the request body, answer lines read as they come.
type rawStream struct {
	t       *testing.T
	pw      *io.PipeWriter
	resp    *http.Response
	answers chan []byte // closed at the end of the answer
}

// openRawStream opens a stream; the answer's status is resp's. Nothing is
// sent before the headers come back.
func openRawStream(t *testing.T, cli *http.Client, url, token string) *rawStream {
	t.Helper()
	pr, pw := io.Pipe()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, pr)
	req.Header.Set("Content-Type", wire.ContentTypeNDJSON)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := cli.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s := &rawStream{t: t, pw: pw, resp: resp, answers: make(chan []byte, 1<<16)}
	done := make(chan struct{})
	if resp.StatusCode != http.StatusOK {
		close(done) // the caller reads the error
		close(s.answers)
	} else {
		go s.readAnswers(done)
	}
	t.Cleanup(func() {
		pw.Close()
		cancel()
		resp.Body.Close()
		<-done
	})
	return s
}

// readAnswers reads the answer's lines into s.answers until it ends.
func (s *rawStream) readAnswers(done chan<- struct{}) {
	defer close(done)
	defer close(s.answers)
	rd := bufio.NewReader(s.resp.Body)
	for {
		line, err := rd.ReadBytes('\n')
		if len(line) > 0 {
			s.answers <- line
		}
		if err != nil {
			return
		}
	}
}

func (s *rawStream) send(lines ...string) {
	s.t.Helper()
	for _, l := range lines {
		if _, err := io.WriteString(s.pw, l+"\n"); err != nil {
			s.t.Fatalf("writing line %.40q: %v", l, err)
		}
	}
}

// sendApart sends each line once the Ingester has seen the one before, so
// that each is an Ingest call of its own (lines that arrive together may
// share one).
func (s *rawStream) sendApart(f *fakeIngest, lines ...string) {
	s.t.Helper()
	for _, l := range lines {
		before := f.stat(func(f *fakeIngest) int { return f.calls })
		s.send(l)
		waitFor(s.t, "the line's Ingest call", func() bool { return f.stat(func(f *fakeIngest) int { return f.calls }) == before+1 })
	}
}

// next returns the next answer line, or ok=false at the end of the answer.
func (s *rawStream) next() (a wire.StreamAnswer, raw string, ok bool) {
	s.t.Helper()
	select {
	case line, ok := <-s.answers:
		if !ok {
			return a, "", false
		}
		if err := json.Unmarshal(line, &a); err != nil {
			s.t.Fatalf("answer %q: %v", line, err)
		}
		return a, string(line), true
	case <-time.After(10 * time.Second):
		s.t.Fatal("no answer line within 10 s")
	}
	return a, "", false
}

// expectAck reads the next answer: line acknowledged with the Seqs f gave
// the events ids.
func (s *rawStream) expectAck(f *fakeIngest, line int, ids ...string) {
	s.t.Helper()
	a, raw, ok := s.next()
	f.mu.Lock()
	var seqs []uint64
	for _, id := range ids {
		seqs = append(seqs, f.seqOf[id])
	}
	f.mu.Unlock()
	if !ok || a.Line != line || a.Error != nil || !slices.Equal(a.Seqs, seqs) || a.SafeSeq == 0 {
		s.t.Fatalf("answer %q, want line %d acknowledged at Seqs %v", raw, line, seqs)
	}
}

func (s *rawStream) expectError(line int, code, msg string) {
	s.t.Helper()
	a, raw, ok := s.next()
	if !ok || a.Line != line || a.Error == nil || a.Error.Code != code || (msg != "" && a.Error.Message != msg) || a.Seqs != nil {
		s.t.Fatalf("answer %q, want line %d refused with %s %q", raw, line, code, msg)
	}
}

func (s *rawStream) expectEnd() {
	s.t.Helper()
	if _, raw, ok := s.next(); ok {
		s.t.Fatalf("answer %q, want the end of the stream", raw)
	}
}

// event returns line n's k-th event with its id.
func streamEvent(n, k int) string { return fmt.Sprintf(`{"id":"l%d-%d","kind":"test"}`, n, k) }

// lineOf reads n out of an id "l<n>-<k>".
func lineOf(id string) int {
	var n, k int
	fmt.Sscanf(id, "l%d-%d", &n, &k)
	return n
}

// Lines commit out of order (the fake returns them last to first); the
// answers still come in line order, each with the Seqs of its own events.
func TestStream_acksInLineOrderWithTheirSeqs(t *testing.T) {
	const lines = 8
	var (
		mu      sync.Mutex
		arrived int
		gates   [lines + 2]chan struct{}
	)
	for i := range gates {
		gates[i] = make(chan struct{})
	}
	close(gates[lines+1])
	f := newFakeIngest(func(ctx context.Context, ids []string) error {
		n := lineOf(ids[0])
		mu.Lock()
		if arrived++; arrived == lines {
			close(gates[0])
		}
		mu.Unlock()
		<-gates[0]   // every line is in flight
		<-gates[n+1] // the line after this one has returned
		defer close(gates[n])
		return nil
	})
	srv := streamServer(t, f, nil)
	s := openRawStream(t, streamClient(t), srv.URL+"/v1/telemetry/stream?window=8", "")
	if s.resp.StatusCode != http.StatusOK || s.resp.Header.Get("Content-Type") != wire.ContentTypeNDJSON {
		t.Fatalf("open: %d %q", s.resp.StatusCode, s.resp.Header.Get("Content-Type"))
	}
	for n := 1; n <= lines; n++ {
		if n%2 == 1 {
			s.sendApart(f, streamEvent(n, 0)) // one event object
		} else {
			s.sendApart(f, "["+streamEvent(n, 0)+","+streamEvent(n, 1)+","+streamEvent(n, 2)+"]")
		}
	}
	s.pw.Close()
	for n := 1; n <= lines; n++ {
		var ids []string
		for k := 0; k < 3 && (k == 0 || n%2 == 0); k++ {
			ids = append(ids, fmt.Sprintf("l%d-%d", n, k))
		}
		s.expectAck(f, n, ids...)
	}
	s.expectEnd()
	var wantOrder []string
	for n := lines; n >= 1; n-- {
		wantOrder = append(wantOrder, fmt.Sprintf("l%d-0", n))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !slices.Equal(f.order, wantOrder) {
		t.Fatalf("the fake returned the lines in order %v, want %v (the test did not reorder)", f.order, wantOrder)
	}
}

// The handler submits each line without waiting for the lines before it to
// commit: the Ingester sees a window of calls in flight at once, each begun
// while the ones before it still wait.
func TestStream_pipelines(t *testing.T) {
	release := make(chan struct{})
	f := newFakeIngest(func(ctx context.Context, ids []string) error {
		<-release
		return nil
	})
	srv := streamServer(t, f, nil)
	s := openRawStream(t, streamClient(t), srv.URL+"/v1/telemetry/stream?window=16", "")
	for n := 1; n <= 16; n++ {
		s.sendApart(f, streamEvent(n, 0))
	}
	waitFor(t, "16 Ingest calls in flight", func() bool { return f.stat(func(f *fakeIngest) int { return f.inflight }) == 16 })
	if r := f.stat(func(f *fakeIngest) int { return f.returned }); r != 0 {
		t.Fatalf("%d calls returned before the release", r)
	}
	close(release)
	for n := 1; n <= 16; n++ {
		s.expectAck(f, n, fmt.Sprintf("l%d-0", n))
	}
	if f.stat(func(f *fakeIngest) int { return f.maxInflight }) != 16 {
		t.Fatalf("at most %d calls were in flight, want 16", f.maxInflight)
	}
	s.pw.Close()
	s.expectEnd()
}

// While its window is full, the handler reads nothing more: a client that
// keeps writing is held back (its writes block), and the Ingester sees no
// more than the window. Once the commits come, everything flows.
func TestStream_flowControlHoldsTheClientBack(t *testing.T) {
	const window, lines = 4, 1000
	release := make(chan struct{})
	f := newFakeIngest(func(ctx context.Context, ids []string) error {
		<-release
		return nil
	})
	srv := streamServer(t, f, nil)
	s := openRawStream(t, streamClient(t), fmt.Sprintf("%s/v1/telemetry/stream?window=%d", srv.URL, window), "")
	pad := strings.Repeat("x", 1000)
	var written atomic.Int64
	wrote := make(chan error, 1)
	go func() {
		for n := 1; n <= lines; n++ {
			k, err := fmt.Fprintf(s.pw, `{"id":"l%d-0","pad":"%s"}`+"\n", n, pad)
			written.Add(int64(k))
			if err != nil {
				wrote <- err
				return
			}
		}
		wrote <- s.pw.Close()
	}()
	inFlight := func() int { return f.stat(func(f *fakeIngest) int { return len(f.seqOf) }) } // one event a line
	waitFor(t, "a full window of lines submitted", func() bool { return inFlight() == window })
	// The writer blocks once the sockets' buffers are full: wait until
	// it has written nothing for 300 ms.
	last, since := written.Load(), time.Now()
	waitFor(t, "the client's writes to block", func() bool {
		if w := written.Load(); w != last {
			last, since = w, time.Now()
		}
		return time.Since(since) > 300*time.Millisecond
	})
	total := int64(lines * (len(pad) + 20))
	select {
	case err := <-wrote:
		t.Fatalf("the client wrote all %d lines (%v) while the server's window was full", lines, err)
	default:
	}
	if last > total/4 {
		t.Fatalf("the client got %d of ~%d bytes out while the window was full: the server kept reading", last, total)
	}
	if c := inFlight(); c != window {
		t.Fatalf("%d lines submitted with a window of %d", c, window)
	}
	t.Logf("held back after %d bytes (%d lines) of %d", last, last/int64(len(pad)+20), total)
	close(release)
	for n := 1; n <= lines; n++ {
		a, raw, ok := s.next()
		if !ok || a.Line != n || a.Error != nil {
			t.Fatalf("answer %q, want line %d acknowledged", raw, n)
		}
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	s.expectEnd()
	if m := f.stat(func(f *fakeIngest) int { return f.maxInflight }); m > window {
		t.Fatalf("%d Ingest calls in flight with a window of %d", m, window)
	}
}

// Lines that arrive together go to Ingest in one call, never larger than
// one POST may be (ingest/max_batch), and each line still gets its own Seqs.
func TestStream_linesThatArriveTogetherShareACall(t *testing.T) {
	var (
		mu    sync.Mutex
		sizes []int
	)
	f := newFakeIngest(func(ctx context.Context, ids []string) error {
		mu.Lock()
		sizes = append(sizes, len(ids))
		mu.Unlock()
		return nil
	})
	srv := streamServer(t, f, func(c *Config) { c.MaxEventsPerRequest = 10 })
	s := openRawStream(t, streamClient(t), srv.URL+"/v1/telemetry/stream", "")
	const lines = 40
	var all strings.Builder
	for n := 1; n <= lines; n++ {
		fmt.Fprintf(&all, "[%s,%s,%s]\n", streamEvent(n, 0), streamEvent(n, 1), streamEvent(n, 2))
	}
	if _, err := io.WriteString(s.pw, all.String()); err != nil { // one write: the lines arrive together
		t.Fatal(err)
	}
	s.pw.Close()
	for n := 1; n <= lines; n++ {
		s.expectAck(f, n, fmt.Sprintf("l%d-0", n), fmt.Sprintf("l%d-1", n), fmt.Sprintf("l%d-2", n))
	}
	s.expectEnd()
	mu.Lock()
	defer mu.Unlock()
	if len(sizes) >= lines {
		t.Errorf("%d Ingest calls for %d lines that arrived together", len(sizes), lines)
	}
	for _, n := range sizes {
		if n > 10 || n%3 != 0 {
			t.Errorf("an Ingest call of %d events (lines of 3, ingest/max_batch 10): %v", n, sizes)
		}
	}
}

// When a call of several lines is refused for one line's events (a 4xx:
// nothing was written), each line is sent alone: only that line is refused.
func TestStream_refusedCallFailsOnlyTheLineAtFault(t *testing.T) {
	f := newFakeIngest(func(ctx context.Context, ids []string) error {
		if slices.Contains(ids, "l2-0") {
			return fmt.Errorf("node: %w: 5000000 bytes (bound 4194304)", walrepl.ErrTooLarge)
		}
		return nil
	})
	srv := streamServer(t, f, nil)
	s := openRawStream(t, streamClient(t), srv.URL+"/v1/telemetry/stream", "")
	if _, err := io.WriteString(s.pw, streamEvent(1, 0)+"\n"+streamEvent(2, 0)+"\n"+streamEvent(3, 0)+"\n"); err != nil {
		t.Fatal(err)
	}
	_, _, msg := errStatus(fmt.Errorf("node: %w: 5000000 bytes (bound 4194304)", walrepl.ErrTooLarge))
	s.expectAck(f, 1, "l1-0")
	s.expectError(2, "too_large", msg)
	s.expectAck(f, 3, "l3-0")
	s.send(streamEvent(4, 0)) // the stream goes on
	s.expectAck(f, 4, "l4-0")
	s.pw.Close()
	s.expectEnd()
	f.mu.Lock()
	defer f.mu.Unlock()
	if want := [][]string{{"l1-0", "l2-0", "l3-0"}, {"l1-0"}, {"l2-0"}, {"l3-0"}, {"l4-0"}}; !slices.EqualFunc(f.callIDs, want, slices.Equal) {
		t.Fatalf("Ingest calls %v, want %v", f.callIDs, want)
	}
}

// A line the client got wrong is refused alone, with the code and message
// POST /v1/telemetry/events gives, nothing of it is written, and the lines
// after it commit. Each line counts as one ingest request in the metrics.
func TestStream_badLineIsRefusedAlone(t *testing.T) {
	f := newFakeIngest(nil)
	m := NewMetrics()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	srv := streamServer(t, f, func(c *Config) {
		c.MaxBodyBytes, c.MaxEventsPerRequest, c.Instruments = 120, 3, m
	})
	badJSON := `{"kind": oops}`
	tooMany := `[{"id":"x1"},{"id":"x2"},{"id":"x3"},{"id":"x4"}]`
	post := func(body string) wire.ErrorResponse {
		resp, err := http.Post(srv.URL+"/v1/telemetry/events", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var er wire.ErrorResponse
		json.NewDecoder(resp.Body).Decode(&er)
		return er
	}
	wantBad, wantMany := post(badJSON), post(tooMany)
	if wantBad.Error != "bad_json" || wantMany.Error != "bad_json" {
		t.Fatalf("POST answered %+v and %+v", wantBad, wantMany)
	}

	s := openRawStream(t, streamClient(t), srv.URL+"/v1/telemetry/stream", "")
	s.send(`{"id":"a"}`, badJSON, `{"id":"big","pad":"`+strings.Repeat("x", 200)+`"}`, "", "  ", tooMany, `[]`,
		`[{"id":"f"},{"id":"g"}]`+"\r", `{"id":"h"}`)
	s.pw.Close()
	s.expectAck(f, 1, "a")
	s.expectError(2, "bad_json", wantBad.Message)
	s.expectError(3, "too_large", "the line exceeds 120 bytes; send smaller batches (setting ingest/max_body_bytes)")
	s.expectError(4, "bad_json", wantMany.Message) // blank lines are not lines
	s.expectError(5, "bad_json", "")
	s.expectAck(f, 6, "f", "g")
	s.expectAck(f, 7, "h")
	s.expectEnd()
	f.mu.Lock()
	if ids := slices.Sorted(maps.Keys(f.seqOf)); !slices.Equal(ids, []string{"a", "f", "g", "h"}) {
		t.Fatalf("the Ingester got %v, want a, f, g and h only", ids)
	}
	f.mu.Unlock()
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"autonomy_ingest_requests_total", map[string]string{"outcome": "ok"}, 3},
		{"autonomy_ingest_requests_total", map[string]string{"outcome": "bad_json"}, 3 + 2}, // and the two POSTs
		{"autonomy_ingest_requests_total", map[string]string{"outcome": "too_large"}, 1},
		{"autonomy_ingest_events_total", map[string]string{"outcome": "ok"}, 4},
		{"autonomy_ingest_commit_latency_seconds", nil, 3},
		{"autonomy_http_requests_total", map[string]string{"route": "/v1/telemetry/stream", "method": "POST", "code": "200"}, 1},
	} {
		if got, ok := value(t, reg, tc.name, tc.labels); !ok || got != tc.want {
			t.Errorf("%s%v = %v (found %v), want %v", tc.name, tc.labels, got, ok, tc.want)
		}
	}
}

// An error that is not the line's fault ends the stream: that line and every
// later line in flight are answered (an ack for one that had committed, the
// same error for the others), the later lines' Ingest calls are cancelled,
// and the answer ends while the client's body is still open.
func TestStream_ingestErrorEndsTheStream(t *testing.T) {
	threeDone := make(chan struct{})
	var fourCtx atomic.Pointer[context.Context]
	f := newFakeIngest(nil)
	f.hook = func(ctx context.Context, ids []string) error {
		switch lineOf(ids[0]) {
		case 2:
			waitFor(t, "lines 3 and 4 in flight", func() bool { return f.stat(func(f *fakeIngest) int { return f.calls }) == 4 })
			<-threeDone
			return fmt.Errorf("node: %w", walrepl.ErrNotLeader)
		case 3:
			defer close(threeDone)
		case 4:
			fourCtx.Store(&ctx)
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	srv := streamServer(t, f, nil)
	s := openRawStream(t, streamClient(t), srv.URL+"/v1/telemetry/stream", "")
	s.sendApart(f, streamEvent(1, 0), streamEvent(2, 0), streamEvent(3, 0), streamEvent(4, 0))
	_, _, msg := errStatus(walrepl.ErrNotLeader)
	s.expectAck(f, 1, "l1-0")
	s.expectError(2, "not_leader", msg)
	s.expectAck(f, 3, "l3-0")
	s.expectError(4, "not_leader", msg)
	s.expectEnd() // the body (s.pw) is still open
	if ctx := fourCtx.Load(); ctx == nil || !errors.Is((*ctx).Err(), context.Canceled) {
		t.Fatalf("line 4's Ingest was not cancelled")
	}
}

// A commit that times out ends the stream as commit_timeout, the code POST
// answers, and lines in flight behind it get the same error.
func TestStream_commitTimeoutEndsTheStream(t *testing.T) {
	f := newFakeIngest(func(ctx context.Context, ids []string) error {
		if lineOf(ids[0]) == 1 {
			return nil
		}
		<-ctx.Done()
		return ctx.Err()
	})
	srv := streamServer(t, f, func(c *Config) { c.IngestTimeout = time.Second })
	s := openRawStream(t, streamClient(t), srv.URL+"/v1/telemetry/stream", "")
	s.sendApart(f, streamEvent(1, 0), streamEvent(2, 0), streamEvent(3, 0))
	_, _, msg := errStatus(context.DeadlineExceeded)
	s.expectAck(f, 1, "l1-0")
	s.expectError(2, "commit_timeout", msg)
	s.expectError(3, "commit_timeout", msg)
	s.expectEnd()
}

// The stream is for the operator role, on the leader; its refusals come back
// at once, before the client has sent anything.
func TestStream_authRedirectAndQuery(t *testing.T) {
	f := newFakeIngest(nil)
	toks := testTokens(t)
	leader := streamServer(t, f, func(c *Config) { c.Tokens = toks })
	cli := streamClient(t)
	for _, tc := range []struct {
		token, query string
		status       int
		code         string
	}{
		{"", "", http.StatusUnauthorized, "unauthorized"},
		{"viewer-token", "", http.StatusForbidden, "forbidden"},
		{"operator-token", "?window=0", http.StatusBadRequest, "bad_query"},
		{"operator-token", "?window=1025", http.StatusBadRequest, "bad_query"},
		{"operator-token", "", http.StatusOK, ""},
		{"admin-token", "?window=1024", http.StatusOK, ""},
	} {
		s := openRawStream(t, cli, leader.URL+"/v1/telemetry/stream"+tc.query, tc.token)
		if s.resp.StatusCode != tc.status {
			t.Fatalf("token %q query %q: %d, want %d", tc.token, tc.query, s.resp.StatusCode, tc.status)
		}
		if tc.status != http.StatusOK {
			var er wire.ErrorResponse
			if err := json.NewDecoder(s.resp.Body).Decode(&er); err != nil || er.Error != tc.code {
				t.Fatalf("token %q query %q: %+v %v, want %s", tc.token, tc.query, er, err, tc.code)
			}
			// A client that still ends its body cleanly (curl does) leaves
			// the server's connection in order.
			s.send(streamEvent(1, 0))
			s.pw.Close()
			continue
		}
		s.send(streamEvent(1, 0))
		s.pw.Close()
		a, raw, ok := s.next()
		if !ok || a.Line != 1 || a.Error != nil {
			t.Fatalf("token %q: answer %q", tc.token, raw)
		}
		s.expectEnd()
	}
	if c := f.stat(func(f *fakeIngest) int { return f.calls }); c != 2 {
		t.Fatalf("%d Ingest calls, want the 2 of the admitted streams", c)
	}

	follower := snapServer(t, snapBackend{who: new(string)})
	s := openRawStream(t, cli, follower.URL+"/v1/telemetry/stream?window=8", "operator-token")
	if s.resp.StatusCode != http.StatusTemporaryRedirect || s.resp.Header.Get("Location") != "http://n2:8888/v1/telemetry/stream?window=8" {
		t.Fatalf("follower: %d Location %q", s.resp.StatusCode, s.resp.Header.Get("Location"))
	}
}

// readStreamLine bounds a line, drops a long one whole, and keeps the
// stream's place after it.
func TestReadStreamLine(t *testing.T) {
	in := "short\n" + strings.Repeat("y", 10) + "\n" + strings.Repeat("z", 11) + "\n" + strings.Repeat("w", 100) + "\nlast"
	br := bufio.NewReaderSize(strings.NewReader(in), 16)
	type got struct {
		line    string
		tooLong bool
		err     error
	}
	var out []got
	for {
		line, tooLong, err := readStreamLine(br, 10)
		out = append(out, got{string(line), tooLong, err})
		if err != nil {
			break
		}
	}
	want := []got{{"short", false, nil}, {strings.Repeat("y", 10), false, nil}, {"", true, nil}, {"", true, nil}, {"last", false, io.EOF}}
	if !slices.Equal(out, want) {
		t.Fatalf("got %+v, want %+v", out, want)
	}
}

// The hand-written ack is what encoding/json reads as a StreamAnswer.
func TestAppendStreamAck(t *testing.T) {
	b := appendStreamAck(nil, 7, []uint64{18446744073709551615, 1}, 42)
	var a wire.StreamAnswer
	if err := json.Unmarshal(b, &a); err != nil || a.Line != 7 || !slices.Equal(a.Seqs, []uint64{18446744073709551615, 1}) ||
		a.SafeSeq != 42 || a.Error != nil || !bytes.HasSuffix(b, []byte("}\n")) {
		t.Fatalf("%q: %+v %v", b, a, err)
	}
}
