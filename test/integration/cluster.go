//go:build integration

package integration

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Env is the suite's configuration, read from the environment.
type Env struct {
	Image     string
	Subnet    string // a /24; nodes get .11, .12, .13
	Root      string // host work directory: data dirs and tmpfs mounts
	Artifacts string // logs of failed scenarios
	Keep      bool   // leave a failed scenario's containers running
	SaveLogs  bool   // save the node logs of passed scenarios too (planted bugs a scenario missed)
}

func loadEnv() Env {
	e := Env{
		Image:     getenv("AUTONOMY_IT_IMAGE", "autonomy-orchestrator:dev"),
		Subnet:    getenv("AUTONOMY_IT_SUBNET", "172.28.61.0/24"),
		Root:      filepath.Join(os.TempDir(), "autonomy-it"),
		Artifacts: getenv("AUTONOMY_IT_ARTIFACTS", filepath.Join(os.TempDir(), "autonomy-it-artifacts")),
		Keep:      os.Getenv("AUTONOMY_IT_KEEP") == "1",
		SaveLogs:  os.Getenv("AUTONOMY_IT_SAVE_LOGS") == "1",
	}
	return e
}

func getenv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// nodeIP is the i-th node's address (1-based) in the subnet.
func (e Env) nodeIP(i int) (string, error) {
	_, n, err := net.ParseCIDR(e.Subnet)
	if err != nil {
		return "", fmt.Errorf("AUTONOMY_IT_SUBNET=%q: %w", e.Subnet, err)
	}
	ip := n.IP.To4()
	if ip == nil {
		return "", fmt.Errorf("AUTONOMY_IT_SUBNET=%q is not IPv4", e.Subnet)
	}
	return fmt.Sprintf("%d.%d.%d.%d", ip[0], ip[1], ip[2], 10+i), nil
}

// setupSuite removes stale leftovers and creates the labelled network.
func setupSuite(e Env) error {
	if _, err := docker("image", "inspect", e.Image); err != nil {
		return fmt.Errorf("image %s is missing: run `make image` (bash test/integration/build-image.sh): %w", e.Image, err)
	}
	for _, tool := range []string{"nsenter", "iptables", "tc"} {
		if _, err := run(context.Background(), "which", tool); err != nil {
			return fmt.Errorf("host tool %s is missing (build-image.sh installs it with apt-get): %w", tool, err)
		}
	}
	if err := removeStale(e.Root); err != nil {
		return fmt.Errorf("removing stale leftovers: %w", err)
	}
	os.RemoveAll(e.Root)
	if err := os.MkdirAll(e.Root, 0o755); err != nil {
		return err
	}
	_, err := docker("network", "create", "--driver", "bridge", "--subnet", e.Subnet,
		"--label", LabelKey+"="+LabelValue, NetName)
	return err
}

// teardownSuite removes everything the suite created.
func teardownSuite(e Env) {
	if err := removeStale(e.Root); err != nil {
		fmt.Fprintln(os.Stderr, "integration: teardown:", err)
	}
	os.RemoveAll(e.Root)
}

// unmountUnder unmounts every mount below root, deepest first.
func unmountUnder(root string) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	var mps []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && strings.HasPrefix(f[1], root+"/") {
			mps = append(mps, f[1])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(mps)))
	for _, mp := range mps {
		run(context.Background(), "umount", "-l", mp)
	}
}

// Cluster is the three containers of one scenario run.
type Cluster struct {
	Name  string
	env   Env
	dir   string
	image string
	Nodes []*Node
	logf  func(format string, args ...any)
}

// ClusterOptions shape a cluster before its first start.
type ClusterOptions struct {
	TmpfsNodes []string // nodes whose telemetry directory is a small tmpfs
	TmpfsSize  string   // e.g. "8m"
	// Env is set in every node's environment from the first start.
	Env map[string]string
}

// newCluster defines nodes n1..n3 with fresh data directories.
func newCluster(e Env, name string, logf func(string, ...any), opt ClusterOptions) (*Cluster, error) {
	c := &Cluster{Name: name, env: e, dir: filepath.Join(e.Root, name), image: e.Image, logf: logf}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, err
	}
	for i := 1; i <= 3; i++ {
		ip, err := e.nodeIP(i)
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("n%d", i)
		n := &Node{c: c, Name: name, IP: ip, Container: Prefix + name, DataDir: filepath.Join(c.dir, name),
			env: map[string]string{}}
		for k, v := range opt.Env {
			n.env[k] = v
		}
		if err := os.MkdirAll(n.DataDir, 0o700); err != nil {
			return nil, err
		}
		for _, t := range opt.TmpfsNodes {
			if t != name {
				continue
			}
			n.TmpfsDir = filepath.Join(c.dir, name+"-telemetry")
			if err := os.MkdirAll(n.TmpfsDir, 0o700); err != nil {
				return nil, err
			}
			if _, err := run(context.Background(), "mount", "-t", "tmpfs", "-o", "size="+opt.TmpfsSize+",mode=0700", "tmpfs", n.TmpfsDir); err != nil {
				return nil, err
			}
		}
		c.Nodes = append(c.Nodes, n)
	}
	return c, nil
}

func (c *Cluster) initialCluster() string {
	var parts []string
	for _, n := range c.Nodes {
		parts = append(parts, n.Name+"="+n.PeerURL())
	}
	return strings.Join(parts, ",")
}

// Node returns the node named name.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	panic("no node " + name)
}

// Others returns the nodes other than those given.
func (c *Cluster) Others(not ...*Node) []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		skip := false
		for _, x := range not {
			skip = skip || x == n
		}
		if !skip {
			out = append(out, n)
		}
	}
	return out
}

// parallel runs fn on each node at once and returns the first error.
func parallel(nodes []*Node, fn func(*Node) error) error {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = fn(n) }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// StartAll starts every node at once.
func (c *Cluster) StartAll() error { return parallel(c.Nodes, (*Node).Start) }

// Leaders returns the nodes whose /v1/health answers 200, with their health.
func (c *Cluster) Leaders(ctx context.Context) ([]*Node, []wire.Health) {
	var mu sync.Mutex
	var ns []*Node
	var hs []wire.Health
	parallel(c.Nodes, func(n *Node) error {
		code, h, err := n.Health(ctx)
		if err == nil && code == http.StatusOK {
			mu.Lock()
			ns, hs = append(ns, n), append(hs, h)
			mu.Unlock()
		}
		return nil
	})
	return ns, hs
}

// WaitLeader waits up to d until exactly one node, not among exclude,
// answers /v1/health 200 (and no excluded one does) and returns it.
func (c *Cluster) WaitLeader(d time.Duration, exclude ...*Node) (*Node, wire.Health, error) {
	deadline := time.Now().Add(d)
	for {
		ns, hs := c.Leaders(context.Background())
		if len(ns) == 1 {
			ok := true
			for _, x := range exclude {
				ok = ok && ns[0] != x
			}
			if ok {
				return ns[0], hs[0], nil
			}
		}
		if time.Now().After(deadline) {
			return nil, wire.Health{}, fmt.Errorf("no single leader (excluding %v) within %s; healthy now: %v", exclude, d, ns)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitHealthy waits until a leader serves and every running node answers
// /v1/health/live.
func (c *Cluster) WaitHealthy(d time.Duration) (*Node, error) {
	l, _, err := c.WaitLeader(d)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// WaitFormed waits until every node holds at least the first frame (the
// first leader's epoch-start frame): the cluster replicates to all three.
func (c *Cluster) WaitFormed(d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		var missing []string
		for _, n := range c.Nodes {
			ws, err := n.WALStatus(context.Background())
			if err != nil || ws.FsyncedSeq < 1 {
				missing = append(missing, fmt.Sprintf("%s (fsynced_seq %d, %v)", n.Name, ws.FsyncedSeq, err))
			}
		}
		if len(missing) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("within %s of start, not replicated to: %s", d, strings.Join(missing, ", "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Converged describes the cluster once every node has everything.
type Converged struct {
	Leader  *Node
	SafeSeq uint64
}

// WaitConverged waits until a single leader serves and every node reports
// the same safe_seq, with its last Seq equal to it (no uncommitted or
// divergent tail left), for two polls in a row.
func (c *Cluster) WaitConverged(d time.Duration) (Converged, error) {
	deadline := time.Now().Add(d)
	var last string
	stable := 0
	failedPolls := map[string]int{}
	for {
		l, _, lerr := c.WaitLeader(time.Until(deadline))
		if lerr != nil {
			return Converged{}, fmt.Errorf("not converged: %w (last: %s)", lerr, last)
		}
		var parts []string
		var safe uint64
		same := true
		for i, n := range c.Nodes {
			ws, err := n.WALStatus(context.Background())
			if err != nil {
				same = false
				parts = append(parts, fmt.Sprintf("%s: %v", n.Name, err))
				continue
			}
			parts = append(parts, fmt.Sprintf("%s: last=%d fsynced=%d safe=%d %s", n.Name, ws.LastSeq, ws.FsyncedSeq, ws.SafeSeq, ws.Failed))
			if ws.Failed != "" {
				// A failed WAL is final until the node restarts.
				if failedPolls[n.Name]++; failedPolls[n.Name] >= 10 {
					return Converged{}, fmt.Errorf("%s's WAL failed while converging: %s", n.Name, ws.Failed)
				}
			}
			if i == 0 {
				safe = ws.SafeSeq
			}
			same = same && ws.SafeSeq == safe && ws.LastSeq == ws.SafeSeq && ws.Failed == ""
		}
		last = strings.Join(parts, "; ")
		if same {
			stable++
			if stable >= 2 {
				return Converged{Leader: l, SafeSeq: safe}, nil
			}
		} else {
			stable = 0
		}
		if time.Now().After(deadline) {
			return Converged{}, fmt.Errorf("nodes did not converge within %s: %s", d, last)
		}
		for _, n := range c.Nodes {
			if st := n.State(); st.Exists && !st.Running {
				return Converged{}, fmt.Errorf("%s exited with status %d while converging: %s", n.Name, st.ExitCode, last)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Close removes the containers (after saving their logs when failed) and
// the data directories.
func (c *Cluster) Close(failed bool) string {
	var saved string
	if failed || c.env.SaveLogs {
		dir := filepath.Join(c.env.Artifacts, c.Name)
		os.MkdirAll(dir, 0o755)
		for _, n := range c.Nodes {
			os.WriteFile(filepath.Join(dir, n.Name+".log"), []byte(n.Logs()), 0o644)
		}
		saved = dir
		if failed && c.env.Keep {
			return saved
		}
	}
	var names []string
	for _, n := range c.Nodes {
		names = append(names, n.Container)
	}
	docker(append([]string{"rm", "-f", "-v"}, names...)...)
	unmountUnder(c.dir)
	os.RemoveAll(c.dir)
	return saved
}

// ReplaceEtcdMember removes the node's etcd member and adds it back, through
// another member: what a node whose data directory is lost needs before it
// can join again with --initial-cluster-state existing.
func (c *Cluster) ReplaceEtcdMember(via, victim *Node) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{via.EtcdURL()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ml, err := cli.MemberList(ctx)
	if err != nil {
		return fmt.Errorf("member list: %w", err)
	}
	for _, m := range ml.Members {
		if m.Name == victim.Name || (len(m.PeerURLs) > 0 && m.PeerURLs[0] == victim.PeerURL()) {
			if _, err := cli.MemberRemove(ctx, m.ID); err != nil {
				return fmt.Errorf("member remove: %w", err)
			}
		}
	}
	// Right after a removal etcd may call the cluster unhealthy for a
	// moment (strict reconfiguration check): retry.
	for {
		_, err := cli.MemberAdd(ctx, []string{victim.PeerURL()})
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("member add: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
