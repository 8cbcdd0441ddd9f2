//go:build integration

package integration

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Failpoint is one fault (etcd tests/robustness/failpoint style): Inject
// breaks something, Heal undoes it. Both are safe to call when the target
// has since been restarted or stopped.
type Failpoint interface {
	Name() string
	Inject() error
	Heal() error
}

func names(ns []*Node) string {
	var s []string
	for _, n := range ns {
		s = append(s, n.Name)
	}
	return strings.Join(s, ",")
}

// ---- processes ----

// KillFP kills the nodes (SIGKILL, all at once); Heal starts them again on
// the same data directories.
type KillFP struct{ Nodes []*Node }

func (f KillFP) Name() string  { return "kill(" + names(f.Nodes) + ")" }
func (f KillFP) Inject() error { return parallel(f.Nodes, (*Node).Kill) }
func (f KillFP) Heal() error   { return parallel(f.Nodes, (*Node).Start) }

// StopFP stops the nodes gracefully (SIGTERM); Heal starts them.
type StopFP struct{ Nodes []*Node }

func (f StopFP) Name() string  { return "stop(" + names(f.Nodes) + ")" }
func (f StopFP) Inject() error { return parallel(f.Nodes, (*Node).Stop) }
func (f StopFP) Heal() error   { return parallel(f.Nodes, (*Node).Start) }

// PauseFP freezes the nodes (docker pause); Heal thaws them.
type PauseFP struct{ Nodes []*Node }

func (f PauseFP) Name() string  { return "pause(" + names(f.Nodes) + ")" }
func (f PauseFP) Inject() error { return parallel(f.Nodes, (*Node).Pause) }
func (f PauseFP) Heal() error   { return parallel(f.Nodes, (*Node).Unpause) }

// ---- network ----

// DisconnectFP takes the node off the network (docker network disconnect):
// it reaches nothing and nothing reaches it, the test's clients included.
type DisconnectFP struct{ Node *Node }

func (f DisconnectFP) Name() string { return "disconnect(" + f.Node.Name + ")" }
func (f DisconnectFP) Inject() error {
	_, err := docker("network", "disconnect", "-f", NetName, f.Node.Container)
	return err
}
func (f DisconnectFP) Heal() error {
	_, err := docker("network", "connect", "--ip", f.Node.IP, NetName, f.Node.Container)
	if err != nil && strings.Contains(err.Error(), "already exists") {
		err = nil
	}
	return err
}

// Rule is one iptables DROP rule in a node's network namespace. Peers are
// the other end; Port, when set, matches that TCP port on the peer's side
// (PeerPort) or on this node's side.
type Rule struct {
	In       bool // INPUT (packets from the peers) or OUTPUT (packets to them)
	Peers    []*Node
	Port     int
	PeerPort bool // Port is the peer's port (dport for OUTPUT, sport for INPUT)
}

func (r Rule) args(chain string) [][]string {
	var out [][]string
	for _, p := range r.Peers {
		a := []string{"-A", chain}
		if r.In {
			a = append(a, "-s", p.IP)
		} else {
			a = append(a, "-d", p.IP)
		}
		if r.Port != 0 {
			// OUTPUT to the peer's port is --dport; INPUT from it is --sport.
			flag := "--sport"
			if r.In != r.PeerPort {
				flag = "--dport"
			}
			a = append(a, "-p", "tcp", flag, fmt.Sprint(r.Port))
		}
		out = append(out, append(a, "-j", "DROP"))
	}
	return out
}

var chainSeq atomic.Int64

// IPTablesFP installs DROP rules inside one node's network namespace from
// the host (nsenter), in a chain of its own hooked into INPUT and OUTPUT;
// Heal removes the chain. The host's clients are never matched unless a
// rule names them.
type IPTablesFP struct {
	Label string
	Node  *Node
	Rules []Rule
	chain string
	pid   int

	extra      func(chain string) [][]string // more rules, as iptables arguments
	outputOnly bool                          // hook the chain into OUTPUT only
}

// NewIPTables builds an iptables fault.
func NewIPTables(label string, n *Node, rules ...Rule) *IPTablesFP {
	return &IPTablesFP{Label: label, Node: n, Rules: rules, chain: fmt.Sprintf("AIT-%d", chainSeq.Add(1))}
}

func (f *IPTablesFP) Name() string { return f.Label }

func (f *IPTablesFP) Inject() error {
	pid, err := f.Node.Pid()
	if err != nil {
		return err
	}
	f.pid = pid
	cmds := [][]string{{"-N", f.chain}}
	for _, r := range f.Rules {
		cmds = append(cmds, r.args(f.chain)...)
	}
	if f.extra != nil {
		cmds = append(cmds, f.extra(f.chain)...)
	}
	if !f.outputOnly {
		cmds = append(cmds, []string{"-I", "INPUT", "1", "-j", f.chain})
	}
	cmds = append(cmds, []string{"-I", "OUTPUT", "1", "-j", f.chain})
	for _, a := range cmds {
		if _, err := nsenter(pid, "iptables", append([]string{"-w"}, a...)...); err != nil {
			return err
		}
	}
	return nil
}

func (f *IPTablesFP) Heal() error {
	pid, err := f.Node.Pid()
	if err != nil || pid != f.pid {
		return nil // the container was restarted or stopped: its namespace, rules included, is gone
	}
	cmds := [][]string{{"-D", "INPUT", "-j", f.chain}, {"-D", "OUTPUT", "-j", f.chain}, {"-F", f.chain}, {"-X", f.chain}}
	if f.outputOnly {
		cmds = cmds[1:]
	}
	for _, a := range cmds {
		if _, err := nsenter(pid, "iptables", append([]string{"-w"}, a...)...); err != nil {
			return err
		}
	}
	return nil
}

// Isolate cuts n from the given peers in both directions, on every port.
func Isolate(n *Node, peers ...*Node) *IPTablesFP {
	return NewIPTables(fmt.Sprintf("isolate(%s|%s)", n.Name, names(peers)), n, Rule{In: true, Peers: peers}, Rule{In: false, Peers: peers})
}

// CutPorts cuts n from the peers on the given TCP ports (of either side),
// both directions.
func CutPorts(n *Node, peers []*Node, ports ...int) *IPTablesFP {
	var rules []Rule
	for _, p := range ports {
		rules = append(rules,
			Rule{In: true, Peers: peers, Port: p, PeerPort: true}, Rule{In: true, Peers: peers, Port: p},
			Rule{In: false, Peers: peers, Port: p, PeerPort: true}, Rule{In: false, Peers: peers, Port: p})
	}
	return NewIPTables(fmt.Sprintf("cut-ports(%s|%s %v)", n.Name, names(peers), ports), n, rules...)
}

// NetemFP adds delay (± uniform jitter) and random loss to every packet a
// node sends to another node, on every node, so every link gets it both
// ways; the test's clients are not slowed. It uses tc netem when the kernel
// has it, and otherwise an iptables NFQUEUE rule with a userspace delayer
// (nfqueue.go) plus the iptables statistic match for loss.
type NetemFP struct {
	Nodes             []*Node
	DelayMs, JitterMs int
	LossPct           float64
	how               string
	pids              map[*Node]int
	queues            []*delayQueue
	rules             []*IPTablesFP
}

func (f *NetemFP) Name() string {
	return fmt.Sprintf("netem(%s delay=%dms±%dms loss=%g%%)", names(f.Nodes), f.DelayMs, f.JitterMs, f.LossPct)
}

// How says which mechanism the last Inject used.
func (f *NetemFP) How() string { return f.how }

func (f *NetemFP) Inject() error {
	f.pids = map[*Node]int{}
	for _, n := range f.Nodes {
		pid, err := n.Pid()
		if err != nil {
			return err
		}
		f.pids[n] = pid
	}
	first := f.Nodes[0]
	_, err := nsenter(f.pids[first], "tc", "qdisc", "replace", "dev", "eth0", "root", "netem",
		"delay", fmt.Sprintf("%dms", f.DelayMs), fmt.Sprintf("%dms", f.JitterMs), "loss", fmt.Sprintf("%g%%", f.LossPct))
	if err == nil {
		f.how = "tc netem"
		for _, n := range f.Nodes[1:] {
			if _, err := nsenter(f.pids[n], "tc", "qdisc", "replace", "dev", "eth0", "root", "netem",
				"delay", fmt.Sprintf("%dms", f.DelayMs), fmt.Sprintf("%dms", f.JitterMs), "loss", fmt.Sprintf("%g%%", f.LossPct)); err != nil {
				return err
			}
		}
		return nil
	}
	if !strings.Contains(err.Error(), "qdisc kind is unknown") {
		return err
	}
	f.how = "iptables NFQUEUE delayer + statistic loss (this kernel has no sch_netem)"
	for _, n := range f.Nodes {
		q, err := openDelayQueue(f.pids[n], 7, time.Duration(f.DelayMs)*time.Millisecond, time.Duration(f.JitterMs)*time.Millisecond)
		if err != nil {
			return fmt.Errorf("%s: %w", n.Name, err)
		}
		f.queues = append(f.queues, q)
		peers := n.c.Others(n)
		fp := NewIPTables("delay("+n.Name+")", n)
		fp.extra = func(chain string) [][]string {
			var out [][]string
			for _, p := range peers {
				out = append(out,
					[]string{"-A", chain, "-d", p.IP, "-m", "statistic", "--mode", "random", "--probability", fmt.Sprintf("%g", f.LossPct/100), "-j", "DROP"},
					[]string{"-A", chain, "-d", p.IP, "-j", "NFQUEUE", "--queue-num", "7", "--queue-bypass"})
			}
			return out
		}
		fp.outputOnly = true
		if err := fp.Inject(); err != nil {
			return err
		}
		f.rules = append(f.rules, fp)
	}
	return nil
}

func (f *NetemFP) Heal() error {
	if f.how == "tc netem" {
		for _, n := range f.Nodes {
			pid, err := n.Pid()
			if err != nil || pid != f.pids[n] {
				continue
			}
			if _, err := nsenter(pid, "tc", "qdisc", "del", "dev", "eth0", "root"); err != nil {
				return err
			}
		}
		return nil
	}
	var errs []error
	for _, r := range f.rules {
		errs = append(errs, r.Heal())
	}
	for _, q := range f.queues {
		q.close()
	}
	f.rules, f.queues = nil, nil
	return errors.Join(errs...)
}

// ---- disk ----

// DiskFullFP fills the node's small tmpfs telemetry directory (the node
// must have been created with one) until writes fail with ENOSPC; Heal
// deletes the filler.
type DiskFullFP struct{ Node *Node }

func (f DiskFullFP) Name() string { return "disk-full(" + f.Node.Name + ")" }
func (f DiskFullFP) filler() string {
	return filepath.Join(f.Node.TmpfsDir, "zz-filler")
}

func (f DiskFullFP) Inject() error {
	if f.Node.TmpfsDir == "" {
		return errors.New("disk-full needs a node created with a tmpfs telemetry directory")
	}
	fh, err := os.OpenFile(f.filler(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer fh.Close()
	buf := make([]byte, 64<<10)
	for _, size := range []int{64 << 10, 4 << 10, 512, 64, 1} {
		for {
			if _, err := fh.Write(buf[:size]); err != nil {
				if errors.Is(err, syscall.ENOSPC) {
					break
				}
				return err
			}
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(f.Node.TmpfsDir, &st); err == nil && st.Bavail != 0 {
		return fmt.Errorf("disk-full: %d blocks still free after filling", st.Bavail)
	}
	return nil
}

func (f DiskFullFP) Heal() error {
	err := os.Remove(f.filler())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// ---- test-only failpoints of the write path ----

// EnvFailpointFP restarts the node with AUTONOMY_FAILPOINTS=Spec (the image
// is built with -tags failpoints); Heal restarts it without.
type EnvFailpointFP struct {
	Node *Node
	Spec string // e.g. "wal-before-fsync=sleep(200ms)" or "wal-after-fsync=crash"
}

func (f EnvFailpointFP) Name() string { return fmt.Sprintf("failpoint(%s %s)", f.Node.Name, f.Spec) }
func (f EnvFailpointFP) Inject() error {
	f.Node.SetEnv("AUTONOMY_FAILPOINTS", f.Spec)
	return f.Node.Start()
}
func (f EnvFailpointFP) Heal() error {
	f.Node.SetEnv("AUTONOMY_FAILPOINTS", "")
	return f.Node.Start()
}

// DataEditFP stops the node (SIGKILL), applies Edit to its host data
// directory, and leaves it stopped; Heal starts it.
type DataEditFP struct {
	Label string
	Node  *Node
	Edit  func(n *Node) error
}

func (f DataEditFP) Name() string { return f.Label + "(" + f.Node.Name + ")" }
func (f DataEditFP) Inject() error {
	if err := f.Node.Kill(); err != nil {
		return err
	}
	if _, ok := f.Node.WaitExit(20e9); !ok {
		return fmt.Errorf("%s still runs after kill", f.Node.Name)
	}
	return f.Edit(f.Node)
}
func (f DataEditFP) Heal() error { return f.Node.Start() }

// copyDir copies a directory tree (regular files and directories only).
func copyDir(src, dst string) error {
	return filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, info.Mode().Perm())
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}
