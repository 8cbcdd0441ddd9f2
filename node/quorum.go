package node

import (
	"context"
	"sync"
	"time"

	"github.com/autonomyops/orchestrator/cluster"
	"github.com/sirupsen/logrus"
)

// What this node can tell about whether some leader can commit. Every
// operator surface reads it from here: /v1/health (reason no_quorum),
// /v1/ha/status (no leader shown), autonomy_cluster_has_leader, and the 307
// of a leader-only route (none without a committing leader).
//
// The evidence is etcd's, because leadership is etcd's: a leader that loses
// etcd's majority cannot renew its lease and stops within the TTL.
//   - etcd knows a raft leader (local state, no I/O). A member cut off from the
//     majority loses it within about one election timeout.
//   - a linearizable read of the leader key succeeded within quorumFresh.
//     Such a read needs the raft leader to confirm its term with a majority,
//     so the key it returns is held under a lease that is valid now.
//
// The serving leader itself also counts as evidence while its replica serves
// (a started epoch with a replication majority heard within QuorumTimeout);
// its lease is valid then, or Lead would have been cancelled.

// Probe timing: a probe every quorumProbeEvery, each bounded by
// quorumProbeTimeout; its answer counts for quorumFresh. With etcd's raft
// leader check on top, a node that lost the majority says so within about
// one etcd election timeout, and at the latest after quorumFresh.
const (
	quorumProbeEvery   = 200 * time.Millisecond
	quorumProbeTimeout = time.Second
	quorumFresh        = 2 * time.Second
)

// quorumView is the last successful probe.
type quorumView struct {
	mu     sync.Mutex
	okAt   time.Time           // when a linearizable read last succeeded
	leader *cluster.LeaderInfo // what it found under the leader key (nil: no holder)
	last   *cluster.LeaderInfo // the last leader any probe found (kept across no-quorum)
	ok     bool                // the judgement last logged, to log changes once
}

// probeQuorum runs the linearizable probe until ctx ends.
func (n *Node) probeQuorum(ctx context.Context) {
	t := time.NewTicker(quorumProbeEvery)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, quorumProbeTimeout)
		li, err := n.member.CurrentLeader(rctx)
		cancel()
		if err == nil {
			n.quorum.mu.Lock()
			n.quorum.okAt, n.quorum.leader = time.Now(), li
			if li != nil {
				n.quorum.last = li
			}
			n.quorum.mu.Unlock()
		}
		n.logQuorumChange()
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// logQuorumChange logs when the judgement flips, once per flip.
func (n *Node) logQuorumChange() {
	_, ok := n.committingLeader()
	n.quorum.mu.Lock()
	changed := ok != n.quorum.ok
	n.quorum.ok = ok
	n.quorum.mu.Unlock()
	if !changed {
		return
	}
	f := logrus.Fields{"etcd_raft_leader": n.member.HasRaftLeader()}
	if ok {
		n.log.WithFields(f).Info("QUORUM_OK: a leader can commit")
	} else {
		n.log.WithFields(f).Warn("QUORUM_LOST: this node cannot tell that any leader can commit")
	}
}

// committingLeader returns the leader that can commit as this node can tell,
// or false when it cannot tell that any can. The name comes from the leader
// key (the watch, else the probe); the judgement from the evidence above.
func (n *Node) committingLeader() (*cluster.LeaderInfo, bool) {
	if n.member == nil || !n.member.HasRaftLeader() {
		return nil, false
	}
	n.mu.Lock()
	watched := n.leader
	n.mu.Unlock()
	if n.replica != nil && n.replica.Serving() && watched != nil && watched.Name == n.cfg.Name {
		return watched, true
	}
	n.quorum.mu.Lock()
	fresh := !n.quorum.okAt.IsZero() && time.Since(n.quorum.okAt) < quorumFresh
	probed := n.quorum.leader
	n.quorum.mu.Unlock()
	if !fresh {
		return nil, false
	}
	// Both names come from etcd's committed state: the newer epoch wins
	// (the watch usually sees a new leader before the next probe does).
	switch {
	case watched != nil && (probed == nil || watched.Epoch >= probed.Epoch):
		return watched, true
	case probed != nil:
		return probed, true
	}
	return nil, false
}

// lastLeader is the last leader this node saw, committing or not.
func (n *Node) lastLeader() *cluster.LeaderInfo {
	n.quorum.mu.Lock()
	last := n.quorum.last
	n.quorum.mu.Unlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.leader != nil && (last == nil || n.leader.Epoch >= last.Epoch) {
		return n.leader
	}
	return last
}

// peerAliveWindow: a voter heard on the replication stream this recently is
// alive whatever gossip says.
const peerAliveWindow = time.Second

// reachability judges each named node alive or unreachable, as this node can
// tell: itself is alive; another node is alive while gossip sees it alive, or
// while this node (leading) heard it on the replication stream within
// peerAliveWindow. Anything else (suspect, dead, left, unknown to gossip) is
// unreachable.
func (n *Node) reachability(names []string) map[string]string {
	out := make(map[string]string, len(names))
	heard := map[string]bool{}
	if n.replica != nil {
		for _, p := range n.replica.Status().Peers {
			heard[p.Name] = p.Heard && p.SinceHeard < peerAliveWindow
		}
	}
	var gossiped map[string]cluster.PeerHealth
	if n.gossip != nil {
		gossiped = n.gossip.Peers()
	}
	for _, name := range names {
		g, ok := gossiped[name]
		switch {
		case name == n.cfg.Name, heard[name], ok && g.State == "alive":
			out[name] = "alive"
		default:
			out[name] = "unreachable"
		}
	}
	return out
}

// countServedEpochs counts leader changes as epochs that began serving: an
// epoch counts once its epoch-start frame is committed in this node's log
// (Seq ≤ safe_seq), which is what makes the epoch serve (DESIGN §6). A
// candidacy that never committed its epoch-start frame does not count, nor
// does a planned failover's walk through candidates that stepped aside. Only
// a rise of the newest committed epoch counts, once, however many epochs a
// node that was away catches up on; the epoch committed when the process
// started is the baseline.
func (n *Node) countServedEpochs(ctx context.Context) {
	newest := func() uint64 {
		safe := n.wal.SafeSeq()
		var e uint64
		for _, es := range n.wal.Epochs() {
			if es.FirstSeq > 0 && es.FirstSeq <= safe && es.Epoch > e {
				e = es.Epoch
			}
		}
		return e
	}
	seen := newest()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		if e := newest(); e > seen {
			seen = e
			n.metrics.leaderChanges.Add(1)
			n.log.WithField("epoch", e).Info("LEADER_EPOCH_SERVING: a new epoch's start is committed")
		}
	}
}
