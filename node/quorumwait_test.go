package node_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/node/proctest"
)

// notifySocket is a fake systemd notify socket: it records every datagram
// the process sends to $NOTIFY_SOCKET.
type notifySocket struct {
	path string
	conn *net.UnixConn
	mu   sync.Mutex
	msgs []string
}

func newNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	// A short path: a unix socket path is limited to 107 bytes, and
	// t.TempDir() is long.
	dir, err := os.MkdirTemp("", "sdnotify")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &notifySocket{path: filepath.Join(dir, "notify.sock")}
	s.conn, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: s.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.conn.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := s.conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, string(buf[:n]))
			s.mu.Unlock()
		}
	}()
	return s
}

// messages returns every datagram received so far.
func (s *notifySocket) messages() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.msgs...)
}

// waitFor waits until some datagram contains want and returns it.
func (s *notifySocket) waitFor(t *testing.T, want string, d time.Duration, logs func() string) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		for _, m := range s.messages() {
			if strings.Contains(m, want) {
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no sd_notify datagram with %q within %s; got %q\nlogs:\n%s", want, d, s.messages(), logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// countLines counts the log lines that contain every one of subs.
func countLines(logs string, subs ...string) int {
	n := 0
	for _, l := range strings.Split(logs, "\n") {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(l, s)
		}
		if all {
			n++
		}
	}
	return n
}

// TestServe_WaitingForPeersSaysSo is issue 16's "a fresh node waiting for
// peers says so in systemctl status and in one log line": the first node of
// a new three-node cluster, started alone under a fake systemd notify
// socket, sends STATUS=waiting for quorum (1 of 3 reachable) and logs
// WAITING_FOR_QUORUM once (not at every probe) while it waits; once a second
// node is up it reaches its quorum, logs QUORUM_REACHED and sends READY=1
// with a new STATUS.
func TestServe_WaitingForPeersSaysSo(t *testing.T) {
	c := proctest.NewCluster(t, 3)
	n1, n2 := c.Nodes[0], c.Nodes[1]
	sock := newNotifySocket(t)
	n1.Env = append(n1.Env, "NOTIFY_SOCKET="+sock.path)
	n1.Start()

	status := sock.waitFor(t, "STATUS=waiting for quorum (1 of 3 reachable)", 20*time.Second, n1.Logs)
	for _, want := range []string{"2 needed", "n2 (127.0.0.1:", "n3 (127.0.0.1:"} {
		if !strings.Contains(status, want) {
			t.Errorf("STATUS %q does not say %q", status, want)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for countLines(n1.Logs(), "WAITING_FOR_QUORUM", "1 of 3 reachable") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no WAITING_FOR_QUORUM log line:\n%s", n1.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Several probes later: still one line, one STATUS, and not ready.
	time.Sleep(4 * time.Second)
	logs := n1.Logs()
	if k := countLines(logs, "WAITING_FOR_QUORUM"); k != 1 {
		t.Fatalf("%d WAITING_FOR_QUORUM lines while nothing changed, want 1:\n%s", k, logs)
	}
	if l := countLines(logs, "WAITING_FOR_QUORUM", `"level":"warning"`, `"reachable":1`, `"members":3`, `"needed":2`); l != 1 {
		t.Errorf("the WAITING_FOR_QUORUM line lacks its fields (level warning, reachable, members, needed):\n%s", logs)
	}
	var waiting, ready int
	for _, m := range sock.messages() {
		if strings.Contains(m, "STATUS=waiting for quorum") {
			waiting++
		}
		if strings.Contains(m, "READY=1") {
			ready++
		}
	}
	if waiting != 1 || ready != 0 {
		t.Fatalf("while waiting: %d waiting STATUS and %d READY datagrams, want 1 and 0: %q", waiting, ready, sock.messages())
	}

	// A second node: the quorum forms; the first node says so and is ready.
	n2.Start()
	msg := sock.waitFor(t, "READY=1", 60*time.Second, func() string { return n1.Logs() + "\n--- n2\n" + n2.Logs() })
	if !strings.Contains(msg, "STATUS=ready: quorum reached, API on "+n1.URL()) {
		t.Errorf("READY datagram %q does not set the ready STATUS", msg)
	}
	logs = n1.Logs()
	if countLines(logs, "QUORUM_REACHED") != 1 {
		t.Errorf("no QUORUM_REACHED line after the quorum formed:\n%s", logs)
	}
	if k := countLines(logs, "WAITING_FOR_QUORUM", "1 of 3 reachable"); k != 1 {
		t.Errorf("%d WAITING_FOR_QUORUM lines for 1 of 3, want 1", k)
	}
}
