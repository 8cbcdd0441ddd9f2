//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Ports every node uses on its own address.
const (
	PortAPI        = 8888
	PortEtcdClient = 2379
	PortEtcdPeer   = 2380
	PortRepl       = 7400
	PortGossip     = 7946
)

// Node is one container of the cluster: a fixed name and address, a host
// data directory bind-mounted at /data that survives restarts, and the
// settings of its next start.
type Node struct {
	c         *Cluster
	Name      string // n1, n2, n3
	IP        string
	Container string
	DataDir   string // host directory mounted at /data

	// TmpfsDir, when set, is a host tmpfs mounted at /data/telemetry (the
	// WAL's directory): the disk-full faults fill it.
	TmpfsDir string

	mu       sync.Mutex
	env      map[string]string // container environment for the next start
	existing bool              // start with --initial-cluster-state existing
	gen      int               // incarnation, bumped by every start
	history  strings.Builder   // logs of earlier incarnations
}

// URL is the node's API base URL.
func (n *Node) URL() string { return fmt.Sprintf("http://%s:%d", n.IP, PortAPI) }

// PeerURL is the node's etcd peer URL.
func (n *Node) PeerURL() string { return fmt.Sprintf("http://%s:%d", n.IP, PortEtcdPeer) }

// EtcdURL is the node's etcd client URL.
func (n *Node) EtcdURL() string { return fmt.Sprintf("http://%s:%d", n.IP, PortEtcdClient) }

func (n *Node) String() string { return n.Name }

// SetEnv sets (or with v == "" removes) an environment variable of the next start.
func (n *Node) SetEnv(k, v string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if v == "" {
		delete(n.env, k)
	} else {
		n.env[k] = v
	}
}

// SetExisting makes the next starts join with --initial-cluster-state existing.
func (n *Node) SetExisting(b bool) {
	n.mu.Lock()
	n.existing = b
	n.mu.Unlock()
}

// Gen is the node's incarnation: it changes at every start.
func (n *Node) Gen() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.gen
}

func (n *Node) args() []string {
	a := []string{"serve", "--name", n.Name, "--data-dir", "/data",
		"--listen", fmt.Sprintf("%s:%d", n.IP, PortAPI),
		"--advertise-url", n.URL(),
		"--etcd-client-url", n.EtcdURL(),
		"--etcd-peer-url", n.PeerURL(),
		"--repl-addr", fmt.Sprintf("%s:%d", n.IP, PortRepl),
		"--gossip-addr", fmt.Sprintf("%s:%d", n.IP, PortGossip),
		"--initial-cluster", n.c.initialCluster(),
		// Small WAL segments, so that the disk scenarios (bit flip, torn
		// tail, rolled-back copy) run on a chain of segment files.
		"--wal-segment-bytes", "262144"}
	if n.existing {
		a = append(a, "--initial-cluster-state", "existing")
	}
	return a
}

// Start (re)creates the node's container with its current settings: the old
// container, if any, is removed first and its logs kept.
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.removeLocked()
	a := []string{"run", "-d", "--init", "--name", n.Container, "--hostname", n.Name,
		"--label", LabelKey + "=" + LabelValue, "--label", LabelKey + ".scenario=" + n.c.Name,
		"--network", NetName, "--ip", n.IP, "--stop-timeout", "10",
		"-v", n.DataDir + ":/data"}
	if n.TmpfsDir != "" {
		a = append(a, "-v", n.TmpfsDir+":/data/telemetry")
	}
	keys := make([]string, 0, len(n.env))
	for k := range n.env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		a = append(a, "-e", k+"="+n.env[k])
	}
	a = append(a, n.c.image)
	a = append(a, n.args()...)
	if _, err := docker(a...); err != nil {
		return fmt.Errorf("starting %s: %w", n.Name, err)
	}
	n.gen++
	env := ""
	if len(keys) > 0 {
		env = fmt.Sprintf(" env=%v", n.env)
	}
	n.c.logf("%s: started (incarnation %d%s)", n.Name, n.gen, env)
	return nil
}

// removeLocked removes the container, keeping its logs in the history.
func (n *Node) removeLocked() {
	st, err := docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", n.Container)
	if err != nil {
		return // no such container
	}
	logs := containerLogs(n.Container)
	fmt.Fprintf(&n.history, "----- %s incarnation %d (%s) -----\n%s\n", n.Name, n.gen, st, logs)
	docker("rm", "-f", "-v", n.Container)
}

func containerLogs(name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "docker", "logs", name).CombinedOutput()
	return string(out)
}

// Logs returns the logs of every incarnation so far, the current one last.
func (n *Node) Logs() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.history.String() + fmt.Sprintf("----- %s incarnation %d (current) -----\n", n.Name, n.gen) + containerLogs(n.Container)
}

// CurrentLogs returns the logs of the current incarnation.
func (n *Node) CurrentLogs() string { return containerLogs(n.Container) }

// Kill sends SIGKILL (docker kill): the process dies at once, whatever it was
// doing; the data directory stays.
func (n *Node) Kill() error {
	if _, err := docker("kill", "-s", "KILL", n.Container); err != nil && !strings.Contains(err.Error(), "is not running") {
		return err
	}
	n.c.logf("%s: killed", n.Name)
	return nil
}

// Stop stops the node gracefully (SIGTERM, then SIGKILL after 10 s).
func (n *Node) Stop() error {
	_, err := docker("stop", "-t", "10", n.Container)
	n.c.logf("%s: stopped", n.Name)
	return err
}

// Pause freezes every process of the container (cgroup freezer).
func (n *Node) Pause() error {
	_, err := docker("pause", n.Container)
	n.c.logf("%s: paused", n.Name)
	return err
}

// Unpause thaws the container.
func (n *Node) Unpause() error {
	_, err := docker("unpause", n.Container)
	if err != nil && strings.Contains(err.Error(), "is not paused") {
		err = nil
	}
	n.c.logf("%s: unpaused", n.Name)
	return err
}

// ContainerState is what docker inspect says about the container.
type ContainerState struct {
	Exists, Running, Paused bool
	ExitCode, Pid           int
}

// State inspects the container.
func (n *Node) State() ContainerState {
	out, err := docker("inspect", "-f", "{{.State.Running}} {{.State.Paused}} {{.State.ExitCode}} {{.State.Pid}}", n.Container)
	if err != nil {
		return ContainerState{}
	}
	f := strings.Fields(out)
	if len(f) != 4 {
		return ContainerState{}
	}
	code, _ := strconv.Atoi(f[2])
	pid, _ := strconv.Atoi(f[3])
	return ContainerState{Exists: true, Running: f[0] == "true", Paused: f[1] == "true", ExitCode: code, Pid: pid}
}

// Running reports whether the container runs (paused counts as running).
func (n *Node) Running() bool { return n.State().Running }

// WaitExit waits up to d for the container to stop and returns its exit
// status, or false if it still runs.
func (n *Node) WaitExit(d time.Duration) (int, bool) {
	deadline := time.Now().Add(d)
	for {
		st := n.State()
		if st.Exists && !st.Running {
			return st.ExitCode, true
		}
		if time.Now().After(deadline) {
			return 0, false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Pid is the host pid of the container's init: the handle for nsenter.
func (n *Node) Pid() (int, error) {
	st := n.State()
	if !st.Running || st.Pid == 0 {
		return 0, fmt.Errorf("%s is not running", n.Name)
	}
	return st.Pid, nil
}

// WALPath is the host path of the node's telemetry.wal.
func (n *Node) WALPath() string { return filepath.Join(n.TelemetryDir(), "telemetry.wal") }

// TelemetryDir is the host path of the node's telemetry directory.
func (n *Node) TelemetryDir() string {
	if n.TmpfsDir != "" {
		return n.TmpfsDir
	}
	return filepath.Join(n.DataDir, "telemetry")
}

// PersistedSafeSeq reads telemetry.safe_seq from the (stopped) node's disk.
func (n *Node) PersistedSafeSeq() (uint64, error) {
	b, err := os.ReadFile(filepath.Join(n.TelemetryDir(), "telemetry.safe_seq"))
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// Ctl runs autonomyctl from the image against the (stopped) node's data
// directory, e.g. Ctl("wal", "reset", "--data-dir", "/data", "--yes").
func (n *Node) Ctl(args ...string) (string, error) {
	a := []string{"run", "--rm", "--label", LabelKey + "=" + LabelValue, "--network", "none",
		"-v", n.DataDir + ":/data"}
	if n.TmpfsDir != "" {
		a = append(a, "-v", n.TmpfsDir+":/data/telemetry")
	}
	a = append(a, "--entrypoint", "/usr/bin/autonomyctl", n.c.image)
	return docker(append(a, args...)...)
}
