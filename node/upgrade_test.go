package node_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/node/proctest"
)

// previousRelease is the release a rolling upgrade starts from: the build CI
// passed before the replication handshake carried a protocol version (its
// messages carry none: version 1) and before the segmented WAL. Tagged
// v0.1.0. When a release is cut, this moves to it (docs/operations.md,
// "Upgrades": N-1 to N is supported).
const previousRelease = "a7dc634a"

// TestUpgrade_rollingFromThePreviousRelease upgrades a live three-node
// cluster of the previous release to this tree one node at a time under
// write load, as docs/operations.md "Upgrades" tells an operator to: stop a
// follower, start the new binary on its data dir, wait until it is a
// caught-up follower again, next; the leader last. Nothing acknowledged is
// lost, and every node ends with the same frames.
func TestUpgrade_rollingFromThePreviousRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the previous release from git history (about a minute); run without -short")
	}
	old := proctest.BuildAt(t, previousRelease)
	c := proctest.NewCluster(t, 3)
	for _, n := range c.Nodes {
		n.Bin = old
	}
	c.Start()
	leader := c.WaitLeader(60 * time.Second)
	w := proctest.NewWriter(c)
	stop := startLoad(w, 2, "upgrade")
	time.Sleep(time.Second)
	order := []*proctest.Node{}
	for _, n := range c.Nodes {
		if n != leader {
			order = append(order, n)
		}
	}
	order = append(order, leader)
	start := time.Now()
	for _, n := range order {
		if code := n.Stop(); code != 0 {
			t.Fatalf("stopping %s (previous release): exit %d\n%s", n.Name, code, tailLines(n.Logs(), 30))
		}
		n.Bin = ""
		n.Start()
		waitCaughtUp(t, c, n, 60*time.Second)
		time.Sleep(500 * time.Millisecond) // writes go on with the new node in the quorum
	}
	took := time.Since(start)
	time.Sleep(time.Second)
	stop()
	c.WaitLeader(30 * time.Second)
	waitConverged(t, c, 30*time.Second)
	acked := w.Snapshot()
	c.CheckAllNodes(acked)
	fmt.Printf("rolling upgrade %s -> this tree: 3 nodes in %s under load, acked=%d lost=0\n", previousRelease, took.Round(100*time.Millisecond), len(acked))
}

// waitCaughtUp waits until n is a follower or the leader (not a learner),
// holds the cluster's safe_seq as some other node reported it when n
// started, and a leader has confirmed its log (no "unconfirmed" reason), as
// docs/operations.md "Upgrades" tells an operator to wait.
func waitCaughtUp(t *testing.T, c *proctest.Cluster, n *proctest.Node, d time.Duration) {
	t.Helper()
	var target uint64
	for _, o := range c.Nodes {
		if o == n {
			continue
		}
		if _, h := o.Health(); h.SafeSeq > target {
			target = h.SafeSeq
		}
	}
	deadline := time.Now().Add(d)
	for {
		_, h := n.Health()
		if (h.Role == "follower" || h.Role == "leader") && h.SafeSeq >= target && h.LastSeq >= target && !slices.Contains(h.Reasons, "unconfirmed") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s (restarted) did not catch up to safe_seq %d within %s: %+v\n%s", n.Name, target, d, h, tailLines(n.Logs(), 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
