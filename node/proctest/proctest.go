// Package proctest runs real autonomy-orchestrator processes on loopback for
// tests: build the binary once, start nodes with free ports, kill -9, SIGSTOP,
// restart on the same data dir, and talk to their API.
package proctest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/autonomyops/orchestrator/test/checker"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds autonomy-orchestrator once per test process and returns its
// path. Set AUTONOMY_TEST_BINARY to use a prebuilt one.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if p := os.Getenv("AUTONOMY_TEST_BINARY"); p != "" {
			binPath = p
			return
		}
		dir, err := os.MkdirTemp("", "autonomy-bin-*")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "autonomy-orchestrator")
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		cmd := exec.Command("go", "build", "-o", binPath, "./node/cmd/autonomy-orchestrator")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// BuildAt builds autonomy-orchestrator as it was at a git revision of this
// repository (a tag or a commit), for upgrade tests, and returns its path.
// The build is cached under the system temp dir by commit, so a second run
// costs nothing. It needs the repository's history (a full clone).
func BuildAt(t testing.TB, rev string) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("git", "-C", root, "rev-parse", "--verify", rev+"^{commit}").CombinedOutput()
	if err != nil {
		t.Fatalf("revision %s is not in this clone (%v: %s): an upgrade test builds the previous release from the "+
			"repository's history; fetch it (git fetch --unshallow --tags) and run again", rev, err, bytes.TrimSpace(out))
	}
	commit := strings.TrimSpace(string(out))
	bin := filepath.Join(os.TempDir(), "autonomy-orchestrator-"+commit)
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	src := t.TempDir()
	archive := exec.Command("git", "-C", root, "archive", "--format=tar", commit)
	untar := exec.Command("tar", "-x", "-C", src)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	untar.Stdin = pipe
	if err := untar.Start(); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	archive.Stderr = &stderr
	if err := archive.Run(); err != nil {
		t.Fatalf("git archive %s: %v %s", commit, err, stderr.Bytes())
	}
	if err := untar.Wait(); err != nil {
		t.Fatalf("extracting %s: %v", commit, err)
	}
	tmp := bin + ".tmp"
	build := exec.Command("go", "build", "-o", tmp, "./node/cmd/autonomy-orchestrator")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", rev, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

var (
	portsMu sync.Mutex
	given   = map[int]bool{}
)

// FreePort returns a loopback port that was free a moment ago and that this
// process has not handed out before (the kernel may offer a just-closed
// port again, and one node needs five distinct ones).
func FreePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !given[p] {
			given[p] = true
			return p
		}
	}
}

// Node is one autonomy-orchestrator process definition and, while started,
// its process.
type Node struct {
	t       testing.TB
	Name    string
	DataDir string
	Ports   struct{ API, EtcdClient, EtcdPeer, Repl, Gossip int }
	Extra   []string // extra serve flags
	// Bin is the binary to run; "" means this tree's (Binary).
	Bin string
	Env []string // extra environment, KEY=VALUE
	// APIScheme and PeerScheme are "http" (default) or "https".
	APIScheme, PeerScheme string

	mu     sync.Mutex
	cmd    *exec.Cmd
	logs   *bytes.Buffer
	exited chan struct{}
	code   int
}

// NewNode allocates ports and a data dir for a node.
func NewNode(t testing.TB, name string) *Node {
	n := &Node{t: t, Name: name, DataDir: filepath.Join(t.TempDir(), name)}
	n.Ports.API, n.Ports.EtcdClient, n.Ports.EtcdPeer = FreePort(t), FreePort(t), FreePort(t)
	n.Ports.Repl, n.Ports.Gossip = FreePort(t), FreePort(t)
	t.Cleanup(func() { n.Kill() })
	return n
}

// URL is the node's API base URL.
func (n *Node) URL() string {
	return fmt.Sprintf("%s://127.0.0.1:%d", scheme(n.APIScheme), n.Ports.API)
}

// PeerURL is the node's etcd peer URL.
func (n *Node) PeerURL() string {
	return fmt.Sprintf("%s://127.0.0.1:%d", scheme(n.PeerScheme), n.Ports.EtcdPeer)
}

// ReplAddr is the node's replication address.
func (n *Node) ReplAddr() string { return fmt.Sprintf("127.0.0.1:%d", n.Ports.Repl) }

func scheme(s string) string {
	if s == "" {
		return "http"
	}
	return s
}

// Args are the serve arguments.
func (n *Node) Args() []string {
	a := []string{"serve", "--name", n.Name, "--data-dir", n.DataDir,
		"--listen", fmt.Sprintf("127.0.0.1:%d", n.Ports.API),
		"--etcd-client-url", fmt.Sprintf("http://127.0.0.1:%d", n.Ports.EtcdClient),
		"--etcd-peer-url", n.PeerURL(),
		"--repl-addr", n.ReplAddr(),
		"--gossip-addr", fmt.Sprintf("127.0.0.1:%d", n.Ports.Gossip)}
	return append(a, n.Extra...)
}

// Start starts the process (it must not be running).
func (n *Node) Start() {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	bin := n.Bin
	if bin == "" {
		bin = Binary(n.t)
	}
	cmd := exec.Command(bin, n.Args()...)
	cmd.Env = append(os.Environ(), n.Env...)
	logs := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, &lockedWriter{mu: &n.mu, w: logs}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("starting %s: %v", n.Name, err)
	}
	exited := make(chan struct{})
	n.cmd, n.logs, n.exited = cmd, logs, exited
	go func() {
		err := cmd.Wait()
		n.mu.Lock()
		n.code = cmd.ProcessState.ExitCode()
		if err != nil && n.code == 0 {
			n.code = -1
		}
		n.mu.Unlock()
		close(exited)
	}()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Logs returns everything the current (or last) process wrote.
func (n *Node) Logs() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.logs == nil {
		return ""
	}
	return n.logs.String()
}

// Running reports whether the process is alive.
func (n *Node) Running() bool {
	n.mu.Lock()
	ex := n.exited
	n.mu.Unlock()
	if ex == nil {
		return false
	}
	select {
	case <-ex:
		return false
	default:
		return true
	}
}

// Wait waits for the process to exit and returns its exit status (-1 on timeout).
func (n *Node) Wait(d time.Duration) int {
	n.mu.Lock()
	ex := n.exited
	n.mu.Unlock()
	if ex == nil {
		return -1
	}
	select {
	case <-ex:
	case <-time.After(d):
		return -1
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.code
}

// Signal sends sig to the process if it runs.
func (n *Node) Signal(sig syscall.Signal) {
	n.mu.Lock()
	cmd := n.cmd
	n.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		cmd.Process.Signal(sig)
	}
}

// Kill sends SIGKILL (after SIGCONT, in case it is stopped) and waits.
func (n *Node) Kill() {
	if !n.Running() {
		return
	}
	n.Signal(syscall.SIGKILL)
	n.Signal(syscall.SIGCONT)
	n.Wait(10 * time.Second)
}

// Stop sends SIGTERM and returns the exit status.
func (n *Node) Stop() int {
	n.Signal(syscall.SIGTERM)
	return n.Wait(30 * time.Second)
}

// Client is an HTTP client that does not follow redirects.
var Client = &http.Client{
	Timeout:       15 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// Health returns the node's /v1/health status code and body.
func (n *Node) Health() (int, wire.Health) {
	var h wire.Health
	resp, err := Client.Get(n.URL() + "/v1/health")
	if err != nil {
		return 0, h
	}
	defer resp.Body.Close()
	json.NewDecoder(resp.Body).Decode(&h)
	return resp.StatusCode, h
}

// WaitHealthy waits until /v1/health answers 200, failing the test after d.
func (n *Node) WaitHealthy(d time.Duration) {
	n.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if code, _ := n.Health(); code == http.StatusOK {
			return
		}
		if !n.Running() {
			n.t.Fatalf("%s exited (status %d) while waiting for health:\n%s", n.Name, n.Wait(0), n.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	n.t.Fatalf("%s not healthy within %s:\n%s", n.Name, d, n.Logs())
}

// Post posts a body to path and returns status and body.
func Post(ctx context.Context, url, body string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	resp, err := Client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// AllEvents reads every committed event from a node's API, paging by Seq.
func AllEvents(t testing.TB, base string) []wire.Event {
	t.Helper()
	var out []wire.Event
	after := uint64(0)
	for {
		resp, err := Client.Get(fmt.Sprintf("%s/v1/telemetry/events?after_seq=%d&limit=10000", base, after))
		if err != nil {
			t.Fatal(err)
		}
		var er wire.EventsResponse
		err = json.NewDecoder(resp.Body).Decode(&er)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET events: status %d err %v", resp.StatusCode, err)
		}
		if len(er.Events) == 0 {
			return out
		}
		out = append(out, er.Events...)
		after = er.Events[len(er.Events)-1].Seq
	}
}

// AllFrames reads every committed frame of a node's own WAL via /v1/wal/inspect.
func AllFrames(t testing.TB, base string) []wire.Frame {
	t.Helper()
	var out []wire.Frame
	after := uint64(0)
	for {
		resp, err := Client.Get(fmt.Sprintf("%s/v1/wal/inspect?after_seq=%d&limit=10000", base, after))
		if err != nil {
			t.Fatal(err)
		}
		var ir wire.InspectResponse
		err = json.NewDecoder(resp.Body).Decode(&ir)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET inspect: status %d err %v", resp.StatusCode, err)
		}
		// inspect returns the newest `limit` frames after after_seq; with a
		// full page, continue from its last Seq.
		out = append(out, ir.Frames...)
		if len(ir.Frames) < 10000 {
			return out
		}
		after = ir.Frames[len(ir.Frames)-1].Seq
	}
}

// Cluster is a set of nodes bootstrapped together.
type Cluster struct {
	t     testing.TB
	Nodes []*Node
}

// NewCluster defines n nodes named n1..nN wired with --initial-cluster and
// extra serve flags; call Start to run them.
func NewCluster(t testing.TB, n int, extra ...string) *Cluster {
	c := &Cluster{t: t}
	var initial []string
	for i := 1; i <= n; i++ {
		nd := NewNode(t, fmt.Sprintf("n%d", i))
		c.Nodes = append(c.Nodes, nd)
		initial = append(initial, nd.Name+"="+nd.PeerURL())
	}
	for _, nd := range c.Nodes {
		nd.Extra = append([]string{"--initial-cluster", strings.Join(initial, ",")}, extra...)
	}
	return c
}

// UseTLS switches every node's API and etcd peer URLs to https (the caller
// adds the certificate flags) and rewrites --initial-cluster to match.
func (c *Cluster) UseTLS() {
	var initial []string
	for _, n := range c.Nodes {
		n.APIScheme, n.PeerScheme = "https", "https"
		initial = append(initial, n.Name+"="+n.PeerURL())
	}
	for _, n := range c.Nodes {
		n.Extra[1] = strings.Join(initial, ",")
	}
}

// Start starts every node.
func (c *Cluster) Start() {
	for _, n := range c.Nodes {
		n.Start()
	}
}

// Node returns the node named name.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	c.t.Fatalf("no node %s", name)
	return nil
}

// Leaders returns the running nodes whose /v1/health answers 200.
func (c *Cluster) Leaders() []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		if code, _ := n.Health(); code == http.StatusOK {
			out = append(out, n)
		}
	}
	return out
}

// WaitLeader waits until exactly one running node answers /v1/health 200
// and returns it.
func (c *Cluster) WaitLeader(d time.Duration) *Node {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if ls := c.Leaders(); len(ls) == 1 {
			c.waitAPIs(deadline)
			return ls[0]
		}
		time.Sleep(50 * time.Millisecond)
	}
	var logs strings.Builder
	for _, n := range c.Nodes {
		fmt.Fprintf(&logs, "--- %s\n%s\n", n.Name, tail(n.Logs(), 40))
	}
	c.t.Fatalf("no single leader within %s\n%s", d, logs.String())
	return nil
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// Writer posts events with unique ids to whichever node leads, following
// redirects and rotating on errors, and records what was acknowledged.
type Writer struct {
	c       *Cluster
	mu      sync.Mutex
	Acked   map[string]uint64 // id → Seq
	Unknown map[string]bool   // sent, outcome unknown
	okTimes [][2]time.Time    // (request sent, acknowledged)
}

// NewWriter returns a writer over c.
func NewWriter(c *Cluster) *Writer {
	return &Writer{c: c, Acked: map[string]uint64{}, Unknown: map[string]bool{}}
}

// Write tries to get one event acknowledged until ctx ends; it returns its
// Seq, or 0 if it never was.
func (w *Writer) Write(ctx context.Context, id string) uint64 {
	body := fmt.Sprintf(`{"id":%q,"kind":"load","agent":"w"}`, id)
	target := ""
	for i := 0; ctx.Err() == nil; i++ {
		sent := time.Now()
		if target == "" {
			target = w.c.Nodes[i%len(w.c.Nodes)].URL()
		}
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		req, _ := http.NewRequestWithContext(rctx, http.MethodPost, target+"/v1/telemetry/events", strings.NewReader(body))
		resp, err := Client.Do(req)
		if err != nil {
			cancel()
			w.mu.Lock()
			w.Unknown[id] = true
			w.mu.Unlock()
			target = ""
			time.Sleep(20 * time.Millisecond)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		switch resp.StatusCode {
		case http.StatusOK:
			var ir wire.IngestResponse
			if json.Unmarshal(b, &ir) != nil || len(ir.Seqs) != 1 {
				w.c.t.Errorf("bad ingest answer %s", b)
				return 0
			}
			w.mu.Lock()
			w.Acked[id] = ir.Seqs[0]
			delete(w.Unknown, id)
			w.okTimes = append(w.okTimes, [2]time.Time{sent, time.Now()})
			w.mu.Unlock()
			return ir.Seqs[0]
		case http.StatusTemporaryRedirect:
			if loc := resp.Header.Get("Location"); loc != "" {
				target = strings.TrimSuffix(loc, "/v1/telemetry/events")
				continue
			}
			target = ""
		default:
			if resp.StatusCode == http.StatusServiceUnavailable {
				w.mu.Lock()
				w.Unknown[id] = true
				w.mu.Unlock()
			}
			target = ""
			time.Sleep(20 * time.Millisecond)
		}
	}
	return 0
}

// FirstOKAfter returns when the first request sent after t was
// acknowledged: the end of a failover as a client sees it.
func (w *Writer) FirstOKAfter(t time.Time) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ok := range w.okTimes {
		if ok[0].After(t) {
			return ok[1], true
		}
	}
	return time.Time{}, false
}

// Snapshot copies the acknowledged set.
func (w *Writer) Snapshot() map[string]uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]uint64, len(w.Acked))
	for k, v := range w.Acked {
		out[k] = v
	}
	return out
}

// CheckAllNodes checks every running node's committed log with the
// project's history checker (test/checker): each acknowledged event is
// present exactly once at its Seq on every node, the nodes hold identical
// frames where their logs overlap, and each log is well formed (no Seq gap,
// epochs that begin with their epoch-start frame and never go back, one
// leader an epoch). The history is partial: only the acknowledged events
// are listed, and the logs may be trimmed by retention.
func (c *Cluster) CheckAllNodes(acked map[string]uint64) {
	c.t.Helper()
	logs := map[string][]wire.Frame{}
	for _, n := range c.Nodes {
		if n.Running() {
			logs[n.Name] = AllFrames(c.t, n.URL())
		}
	}
	events := make([]checker.Event, 0, len(acked))
	for id, seq := range acked {
		events = append(events, checker.Event{ID: id, Outcome: checker.OK, Seq: seq})
	}
	for _, e := range checker.CheckWith(logs, events, checker.Options{Partial: true}).Errors {
		c.t.Error(e)
	}
}

// waitAPIs waits, until deadline at most, for every running node's API port
// to accept connections: a leader can serve before a slower node has opened
// its API (a node with an empty WAL first waits for its peers to register),
// and tests address every node right after WaitLeader.
func (c *Cluster) waitAPIs(deadline time.Time) {
	for _, n := range c.Nodes {
		for n.Running() && time.Now().Before(deadline) {
			conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", n.Ports.API), time.Second)
			if err == nil {
				conn.Close()
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
