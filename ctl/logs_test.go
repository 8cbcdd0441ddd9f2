package ctl_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/autonomyops/orchestrator/ctl"
)

// syncBuffer is a bytes.Buffer safe for a running command and a test
// reading it at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// asyncRun is a command running in the background (logs --follow).
type asyncRun struct {
	out, errOut *syncBuffer
	cancel      context.CancelFunc
	done        chan int
}

func startCLI(t *testing.T, args ...string) *asyncRun {
	t.Helper()
	r := &asyncRun{out: &syncBuffer{}, errOut: &syncBuffer{}, done: make(chan int, 1)}
	cli := &ctl.CLI{Stdout: r.out, Stderr: r.errOut, Getenv: func(string) string { return "" }, ConfigDir: t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	r.cancel = cancel
	go func() { r.done <- cli.Run(ctx, args) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// wait returns the exit status once the command ends by itself.
func (r *asyncRun) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case code := <-r.done:
		r.done <- code // for the cleanup
		t.Logf("exit %d\nstdout:\n%s\nstderr:\n%s", code, r.out.String(), r.errOut.String())
		checkPrintedHints(t, r.errOut.String())
		return code
	case <-time.After(d):
		t.Fatalf("the command did not end within %s\nstdout:\n%s\nstderr:\n%s", d, r.out.String(), r.errOut.String())
		return -1
	}
}

// stop cancels the command (as SIGINT would) and returns its exit status.
func (r *asyncRun) stop(t *testing.T) int {
	t.Helper()
	r.cancel()
	return r.wait(t, 10*time.Second)
}

// waitSeq waits until the table output shows Seq seq.
func (r *asyncRun) waitSeq(t *testing.T, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		for _, s := range tableSeqs(r.out.String()) {
			if s == seq {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Seq %d never printed\nstdout:\n%s\nstderr:\n%s", seq, r.out.String(), r.errOut.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// tableSeqs returns the SEQ column of `logs` table output.
func tableSeqs(out string) []uint64 {
	var seqs []uint64
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if n, err := strconv.ParseUint(f[0], 10, 64); err == nil {
			seqs = append(seqs, n)
		}
	}
	return seqs
}

func seqRange(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func logEvent(seq uint64) wire.Event {
	kind := "telemetry"
	if seq%3 == 0 {
		kind = "error"
	}
	return wire.Event{Seq: seq, Epoch: 7, TS: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(seq) * time.Second),
		Event: json.RawMessage(fmt.Sprintf(`{"agent":"robot-%d","kind":%q,"n":%d}`, seq%2+1, kind, seq))}
}

// streamEvents writes events from..to as NDJSON, with a keepalive line
// between them, and flushes.
func streamEvents(w http.ResponseWriter, from, to uint64) {
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/x-ndjson")
	}
	for s := from; s <= to; s++ {
		b, _ := json.Marshal(logEvent(s))
		fmt.Fprintf(w, "%s\n\n", b)
	}
	w.(http.Flusher).Flush()
}

func afterSeq(r *http.Request) uint64 {
	n, _ := strconv.ParseUint(r.URL.Query().Get("after_seq"), 10, 64)
	return n
}

// resetConn aborts the answer as a crashed node would: the client reads
// "connection reset by peer".
func resetConn(t *testing.T, w http.ResponseWriter) {
	w.(http.Flusher).Flush()
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // close with RST
	}
	conn.Close()
}

// holdOpen keeps a follow stream open with keepalives until the client goes.
func holdOpen(w http.ResponseWriter, r *http.Request) {
	for {
		select {
		case <-r.Context().Done():
			return
		case <-time.After(50 * time.Millisecond):
			if _, err := w.Write([]byte("\n")); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	}
}

// The acceptance: logs --follow keeps going through a leader kill
// without loss or duplicate. node-a streams 1..5 and dies (RST, then nothing
// listens); node-b answers 503 no_leader while "the election" runs, then
// leads and streams from the after_seq it is given — replaying two events
// already printed, which the CLI must not print again.
func TestLogs_followSurvivesLeaderChange(t *testing.T) {
	a := newFakeNode(t, "node-a", nil)
	b := newFakeNode(t, "node-b", a)
	var bLeads atomic.Bool
	var bHits atomic.Int32
	var bAfter atomic.Uint64
	proceed := make(chan struct{})

	a.setOverride("/v1/logs", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("follow") != "true" {
			t.Errorf("follow not asked: %s", r.URL.RawQuery)
		}
		streamEvents(w, afterSeq(r)+1, 5)
		<-proceed
		a.srv.Listener.Close() // node-a is gone: new connections are refused
		resetConn(t, w)
	})
	b.setOverride("/v1/health", func(w http.ResponseWriter, r *http.Request) {
		if bLeads.Load() {
			writeJSON(w, 200, wire.Health{Status: "ok", Role: "leader", Node: "node-b", Epoch: 8, WAL: "ok"})
			return
		}
		writeJSON(w, 503, wire.Health{Status: "unavailable", Role: "follower", Node: "node-b", WAL: "ok", Reasons: []string{"not_leader"}})
	})
	b.setOverride("/v1/logs", func(w http.ResponseWriter, r *http.Request) {
		if !bLeads.Load() {
			if bHits.Add(1) >= 2 {
				bLeads.Store(true) // elected after a couple of attempts
			}
			writeJSON(w, 503, wire.ErrorResponse{Error: "no_leader", Message: "no leader is known"})
			return
		}
		after := afterSeq(r)
		bAfter.Store(after)
		streamEvents(w, after-1, 10) // after-1 and after were printed already
		holdOpen(w, r)
	})

	run := startCLI(t, "logs", "--follow", "--endpoints", a.URL()+","+b.URL())
	run.waitSeq(t, 5)
	close(proceed)
	run.waitSeq(t, 10)
	if code := run.stop(t); code != ctl.ExitInterrupted {
		t.Fatalf("exit %d, want %d after the interrupt", code, ctl.ExitInterrupted)
	}
	got := tableSeqs(run.out.String())
	if fmt.Sprint(got) != fmt.Sprint(seqRange(1, 10)) {
		t.Fatalf("printed Seqs %v, want each of 1..10 exactly once, in order", got)
	}
	if bAfter.Load() != 5 {
		t.Fatalf("node-b was asked after_seq=%d, want 5 (the last Seq printed)", bAfter.Load())
	}
	errOut := run.errOut.String()
	mustContain(t, "stderr", errOut, "interrupted (connection reset by peer)", "resume after Seq 5", "resumed from "+b.URL()+" after Seq 5")
	if strings.Contains(errOut, "hint: re-run") {
		t.Fatalf("the runbook's hint is for giving up only:\n%s", errOut)
	}
	mustContain(t, "stdout", run.out.String(), "SEQ", "TIME", "KIND", "AGENT", "EVENT", "robot-1", "error", `{"agent":"robot-2","kind":"telemetry","n":1}`)
}

// -o json passes the server's NDJSON lines through, deduplicated the same way.
func TestLogs_followJSONAcrossServerEnd(t *testing.T) {
	n := newFakeNode(t, "node-a", nil)
	var hits atomic.Int32
	var afters sync.Map
	n.setOverride("/v1/logs", func(w http.ResponseWriter, r *http.Request) {
		k := hits.Add(1)
		afters.Store(k, afterSeq(r))
		switch k {
		case 1:
			streamEvents(w, 1, 3) // then ends the stream: this node stopped leading
		default:
			streamEvents(w, afterSeq(r)+1, 6)
			holdOpen(w, r)
		}
	})
	run := startCLI(t, "logs", "-f", "-o", "json", "--endpoints", n.URL())
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(run.out.String(), "\n") < 6 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	run.stop(t)
	var seqs []uint64
	for _, l := range strings.Split(strings.TrimSpace(run.out.String()), "\n") {
		var ev wire.Event
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("stdout line %q is not an wire.Event: %v", l, err)
		}
		want, _ := json.Marshal(logEvent(ev.Seq))
		if l != string(want) {
			t.Fatalf("line changed on the way:\n got %s\nwant %s", l, want)
		}
		seqs = append(seqs, ev.Seq)
	}
	if fmt.Sprint(seqs) != fmt.Sprint(seqRange(1, 6)) {
		t.Fatalf("Seqs %v, want 1..6", seqs)
	}
	if v, _ := afters.Load(int32(2)); v != uint64(3) {
		t.Fatalf("the reconnect asked after_seq=%v, want 3", v)
	}
	mustContain(t, "stderr", run.errOut.String(), "the leader ended the stream")
}

// A leader that goes silent (stopped, or cut off without a reset) is left
// after --idle-timeout, and the stream resumes.
func TestLogs_idleStreamIsResumed(t *testing.T) {
	n := newFakeNode(t, "node-a", nil)
	var hits atomic.Int32
	n.setOverride("/v1/logs", func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			streamEvents(w, 1, 2)
			<-r.Context().Done() // silence: no keepalive
			return
		}
		streamEvents(w, afterSeq(r)+1, 4)
		holdOpen(w, r)
	})
	run := startCLI(t, "logs", "--follow", "--idle-timeout", "300ms", "--endpoints", n.URL())
	run.waitSeq(t, 4)
	run.stop(t)
	if got := tableSeqs(run.out.String()); fmt.Sprint(got) != fmt.Sprint(seqRange(1, 4)) {
		t.Fatalf("Seqs %v", got)
	}
	mustContain(t, "stderr", run.errOut.String(), "not even a keepalive")
}

// When no leader can be streamed from for --retry-for, the command gives up
// with the runbook's two lines (section 4, "During log streaming"), adapted
// to autonomyctl, and says how to resume exactly.
func TestLogs_givesUpWithRunbookMessage(t *testing.T) {
	n := newFakeNode(t, "node-a", nil)
	proceed := make(chan struct{})
	n.setOverride("/v1/logs", func(w http.ResponseWriter, r *http.Request) {
		streamEvents(w, 1, 3)
		<-proceed
		n.srv.Listener.Close()
		resetConn(t, w)
	})
	run := startCLI(t, "logs", "--follow", "--retry-for", "600ms", "--kind", "error", "--endpoints", n.URL())
	run.waitSeq(t, 3)
	t0 := time.Now()
	close(proceed)
	code := run.wait(t, 15*time.Second)
	if code != ctl.ExitUnreachable {
		t.Fatalf("exit %d, want %d", code, ctl.ExitUnreachable)
	}
	if d := time.Since(t0); d < 500*time.Millisecond {
		t.Fatalf("gave up after %s, before --retry-for", d)
	}
	errOut := run.errOut.String()
	i := strings.Index(errOut, "logs: stream interrupted (connection reset by peer)\nhint: re-run 'autonomyctl logs --follow' to reconnect\n")
	if i < 0 {
		t.Fatalf("the runbook's message is missing:\n%s", errOut)
	}
	mustContain(t, "stderr", errOut[i:], "autonomyctl logs --follow --kind error --after-seq 3", "connection refused")
	if got := tableSeqs(run.out.String()); fmt.Sprint(got) != fmt.Sprint(seqRange(1, 3)) {
		t.Fatalf("Seqs %v", got)
	}
}

// Without --follow: committed events after --after-seq, filters passed on,
// keepalives ignored, then the command ends.
func TestLogs_once(t *testing.T) {
	n := newFakeNode(t, "node-a", nil)
	n.setOverride("/v1/logs", func(w http.ResponseWriter, r *http.Request) {
		streamEvents(w, afterSeq(r)+1, 6)
	})
	tc := newTestCLI(t)
	code, out, _ := tc.run(t, "logs", "--after-seq", "3", "--kind", "error", "--agent", "robot-1", "--endpoints", n.URL())
	if code != ctl.ExitOK {
		t.Fatalf("exit %d", code)
	}
	if got := tableSeqs(out); fmt.Sprint(got) != fmt.Sprint(seqRange(4, 6)) {
		t.Fatalf("Seqs %v", got)
	}
	q := n.lastRequest().URL.Query()
	if q.Get("after_seq") != "3" || q.Get("kind") != "error" || q.Get("agent") != "robot-1" || q.Has("follow") {
		t.Fatalf("query %v", q)
	}
	if acc := n.lastRequest().Header.Get("Accept"); acc != wire.ContentTypeNDJSON {
		t.Fatalf("Accept %q", acc)
	}
}

// Nothing reachable at the start: the usual transport error and hints, at
// once — not a retry loop.
func TestLogs_unreachableFailsFast(t *testing.T) {
	dead, port := refusedURL(t)
	tc := newTestCLI(t)
	t0 := time.Now()
	code, _, errOut := tc.run(t, "logs", "--follow", "--endpoints", dead)
	if code != ctl.ExitUnreachable || time.Since(t0) > 3*time.Second {
		t.Fatalf("exit %d after %s", code, time.Since(t0))
	}
	mustContain(t, "stderr", errOut, fmt.Sprintf(`Get "%s/v1/logs?follow=true": dial tcp 127.0.0.1:%d: connect: connection refused`, dead, port),
		"hint: cannot reach the orchestrator")
}

// An answer that retrying cannot change (401, 403, 400) ends the command.
func TestLogs_authErrorNotRetried(t *testing.T) {
	n := newFakeNode(t, "node-a", nil)
	n.setOverride("/v1/logs", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 403, wire.ErrorResponse{Error: "forbidden", Message: "role viewer, operator needed"})
	})
	tc := newTestCLI(t)
	code, _, errOut := tc.run(t, "logs", "--follow", "--endpoints", n.URL())
	if code != ctl.ExitHTTP || n.hitCount("/v1/logs") != 1 {
		t.Fatalf("exit %d, %d attempts", code, n.hitCount("/v1/logs"))
	}
	mustContain(t, "stderr", errOut, "403 forbidden: role viewer, operator needed", "role is too small")
}
