package node

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/autonomyops/orchestrator/node/proctest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestLiveness_silentMajority: a leader that answers nothing — frozen here,
// as a cut cable or a killed container also answers nothing, with no reset —
// is deposed when a majority of the voters record that they do not hear it
// (witness silent_majority), long before its lease TTL (10 s here) and before
// gossip declares it dead. A follower that alone stops hearing the leader
// (frozen, then thawed) never deposes it. etcd's raft leader is moved away
// from the frozen node first, so that etcd's own election does not decide
// which witness is first.
func TestLiveness_silentMajority(t *testing.T) {
	c := proctest.NewCluster(t, 3, "--leader-ttl", "10s")
	c.Start()
	leader, lh := stableLeader(t, c)
	var follower *proctest.Node
	for _, n := range c.Nodes {
		if n != leader {
			follower = n
		}
	}

	// One follower alone: etcd's raft leader on the replication leader, the
	// follower frozen for three times the silence that starts a suspicion.
	moveEtcdLeader(t, c, leader)
	follower.Signal(syscall.SIGSTOP)
	time.Sleep(3 * leaderSilence)
	follower.Signal(syscall.SIGCONT)
	time.Sleep(3 * leaderSilence) // the thawed follower judges what it missed
	if code, h := leader.Health(); code != http.StatusOK || h.Epoch != lh.Epoch || len(revocations(c, lh.Epoch)) > 0 {
		t.Fatalf("one follower that stopped hearing the leader deposed it: leader %s now %d epoch %d (was %d)\n%s",
			leader.Name, code, h.Epoch, lh.Epoch, revocations(c, 0))
	}

	// The leader: etcd's raft leader elsewhere, the leader frozen.
	moveEtcdLeader(t, c, follower)
	leader.Signal(syscall.SIGSTOP)
	defer leader.Signal(syscall.SIGCONT)
	frozen := time.Now()
	var next *proctest.Node
	for next == nil && time.Since(frozen) < 8*time.Second { // within the 10 s TTL
		for _, n := range c.Nodes {
			if n == leader {
				continue // a frozen node's Health would hang
			}
			if code, h := n.Health(); code == http.StatusOK && h.Epoch > lh.Epoch {
				next = n
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if next == nil {
		for _, n := range c.Nodes {
			if n != leader {
				t.Logf("%s's log:\n%s", n.Name, tail(n.Logs(), 30))
			}
		}
		t.Fatalf("no new leader within 8 s of freezing %s (lease TTL 10 s)", leader.Name)
	}
	witnesses := revocations(c, lh.Epoch)
	if len(witnesses) == 0 || !strings.Contains(witnesses[0], `"witness":"silent_majority"`) {
		t.Fatalf("%s took over %s after the freeze; the first revocation should be by silent_majority, got:\n%s",
			next.Name, time.Since(frozen).Round(time.Millisecond), strings.Join(witnesses, "\n"))
	}
	t.Logf("%s serving %s after %s was frozen: %s", next.Name, time.Since(frozen).Round(time.Millisecond), leader.Name, witnesses[0])
}

// moveEtcdLeader makes to's etcd member the raft leader of c.
func moveEtcdLeader(t *testing.T, c *proctest.Cluster, to *proctest.Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ep := func(n *proctest.Node) string { return fmt.Sprintf("http://127.0.0.1:%d", n.Ports.EtcdClient) }
	for ctx.Err() == nil {
		for _, n := range c.Nodes {
			cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep(n)}, DialTimeout: 2 * time.Second})
			if err != nil {
				continue
			}
			st, err := cli.Status(ctx, ep(n))
			if err == nil && st.Leader == st.Header.MemberId { // n leads etcd
				if n == to {
					cli.Close()
					return
				}
				if target, err := cli.Status(ctx, ep(to)); err == nil {
					cli.MoveLeader(ctx, target.Header.MemberId)
				}
			}
			cli.Close()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("etcd's raft leader could not be moved to %s", to.Name)
}

// revocations are the LEADER_LEASE_REVOKED lines of every node's log, of
// one epoch (0: all).
func revocations(c *proctest.Cluster, epoch uint64) []string {
	var out []string
	for _, n := range c.Nodes {
		for _, line := range strings.Split(n.Logs(), "\n") {
			if strings.Contains(line, "LEADER_LEASE_REVOKED") && (epoch == 0 || strings.Contains(line, fmt.Sprintf(`"epoch":%d,`, epoch))) {
				out = append(out, n.Name+": "+line)
			}
		}
	}
	return out
}

// stableLeader waits for a leader that keeps its epoch for two seconds: the
// test's faults start from a settled cluster, not from start-up elections.
func stableLeader(t *testing.T, c *proctest.Cluster) (*proctest.Node, wire.Health) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		l := c.WaitLeader(60 * time.Second)
		_, h := l.Health()
		time.Sleep(2 * time.Second)
		if code, h2 := l.Health(); code == http.StatusOK && h2.Epoch == h.Epoch {
			return l, h
		}
	}
	t.Fatal("no leader kept its epoch for two seconds within a minute")
	return nil, wire.Health{}
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
