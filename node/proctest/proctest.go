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

	"github.com/autonomyops/orchestrator/api"
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

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Node is one autonomy-orchestrator process definition and, while started,
// its process.
type Node struct {
	t       testing.TB
	Name    string
	DataDir string
	Ports   struct{ API, EtcdClient, EtcdPeer, Repl, Gossip int }
	Extra   []string // extra serve flags
	Env     []string // extra environment, KEY=VALUE

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
func (n *Node) URL() string { return fmt.Sprintf("http://127.0.0.1:%d", n.Ports.API) }

// PeerURL is the node's etcd peer URL.
func (n *Node) PeerURL() string { return fmt.Sprintf("http://127.0.0.1:%d", n.Ports.EtcdPeer) }

// Args are the serve arguments.
func (n *Node) Args() []string {
	a := []string{"serve", "--name", n.Name, "--data-dir", n.DataDir,
		"--listen", fmt.Sprintf("127.0.0.1:%d", n.Ports.API),
		"--etcd-client-url", fmt.Sprintf("http://127.0.0.1:%d", n.Ports.EtcdClient),
		"--etcd-peer-url", n.PeerURL(),
		"--repl-addr", fmt.Sprintf("127.0.0.1:%d", n.Ports.Repl),
		"--gossip-addr", fmt.Sprintf("127.0.0.1:%d", n.Ports.Gossip)}
	return append(a, n.Extra...)
}

// Start starts the process (it must not be running).
func (n *Node) Start() {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	cmd := exec.Command(Binary(n.t), n.Args()...)
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
func (n *Node) Health() (int, api.Health) {
	var h api.Health
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
func AllEvents(t testing.TB, base string) []api.Event {
	t.Helper()
	var out []api.Event
	after := uint64(0)
	for {
		resp, err := Client.Get(fmt.Sprintf("%s/v1/telemetry/events?after_seq=%d&limit=10000", base, after))
		if err != nil {
			t.Fatal(err)
		}
		var er api.EventsResponse
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
func AllFrames(t testing.TB, base string) []api.Frame {
	t.Helper()
	var out []api.Frame
	after := uint64(0)
	for {
		resp, err := Client.Get(fmt.Sprintf("%s/v1/wal/inspect?after_seq=%d&limit=10000", base, after))
		if err != nil {
			t.Fatal(err)
		}
		var ir api.InspectResponse
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
