package node

import (
	"context"
	"sync"
	"time"

	"github.com/autonomyops/orchestrator/cluster"
	"github.com/autonomyops/orchestrator/walrepl"
	"github.com/sirupsen/logrus"
)

// What this node can tell about whether some leader can commit. Every
// operator surface reads it from here: /v1/health (reasons no_quorum and
// leader_not_serving, and the leader it names), /v1/ha/status (no leader
// shown), autonomy_cluster_has_leader, and the 307 of a leader-only route.
//
// Two judgements, one on the other:
//   - leaseHolder: etcd has a quorum and the leader key is held under a valid
//     lease, and by whom. Followers redirect leader-only requests to the
//     holder (it answers for itself, and a candidate takes member add and
//     remove); without one they answer 503 no_leader.
//   - committingLeader: that holder also serves, as this node can tell
//     (leaderServes): its epoch has started and it hears a replication
//     majority. A holder that does not serve commits nothing: a candidate
//     taking over, or waiting for every voter after a restart of the whole
//     cluster (DESIGN §6 rule 13).
//
// The lease evidence is etcd's, because leadership is etcd's: a leader that
// loses etcd's majority cannot renew its lease and stops within about two
// TTLs (one without a renewal, then up to one more asking etcd whether the
// lease still lives: cluster.Leadership.keep).
//   - etcd knows a raft leader (local state, no I/O). A member cut off from the
//     majority loses it within about one election timeout.
//   - a linearizable read of the leader key succeeded within quorumFresh.
//     Such a read needs the raft leader to confirm its term with a majority,
//     so the key it returns is held under a lease that is valid now.
//
// The serving leader itself also counts as evidence while its replica serves
// (a started epoch with a replication majority heard within QuorumTimeout):
// that majority has promised no newer epoch, so no other leader commits.

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

// logQuorumChange logs when the lease judgement flips, once per flip: etcd's
// quorum, not the brief gap of every election while a new leader takes over.
func (n *Node) logQuorumChange() {
	_, ok := n.leaseHolder()
	n.quorum.mu.Lock()
	changed := ok != n.quorum.ok
	n.quorum.ok = ok
	n.quorum.mu.Unlock()
	if !changed {
		return
	}
	f := logrus.Fields{"etcd_raft_leader": n.member.HasRaftLeader()}
	if ok {
		n.log.WithFields(f).Info("QUORUM_OK: etcd has a quorum and the leader key is held under a valid lease")
	} else {
		n.log.WithFields(f).Warn("QUORUM_LOST: this node cannot tell that etcd has a quorum and the leader key a valid lease: no leader can commit, as it can tell")
	}
}

// leaseHolder returns the holder of the leader key when this node can tell
// that it holds it under a valid lease (the evidence above), or false when
// it cannot tell that anyone does. The name comes from the leader key (the
// watch, else the probe).
func (n *Node) leaseHolder() (*cluster.LeaderInfo, bool) {
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

// committingLeader returns the leader that can commit as this node can tell:
// the lease holder, when it serves (leaderServes).
func (n *Node) committingLeader() (li *cluster.LeaderInfo, ok bool) {
	li, _, ok = n.leadership()
	return li, ok
}

// leadership returns the lease holder (nil: this node cannot tell that the
// key is held), and whether it serves; committing is the holder when it
// does.
func (n *Node) leadership() (committing, holder *cluster.LeaderInfo, serving bool) {
	holder, ok := n.leaseHolder()
	if !ok {
		return nil, nil, false
	}
	if !n.leaderServes(holder) {
		return nil, holder, false
	}
	return holder, holder, true
}

// leaderServes tells whether the lease holder li serves, as this node can
// tell. This node itself: its replica serves. Another node: either witness
// suffices. Gossip: li, alive, last said it serves in li's epoch
// (cluster.Health.Serving). The replication stream: this node follows li's
// epoch, heard li within peerAliveWindow, and li's safe_seq covers that
// epoch's start frame in this node's log. The stream covers what gossip
// cannot say yet (it lags a new epoch by a few hundred milliseconds) or at
// all (a holder of an older version, gossip cut off); gossip covers a node
// that does not follow the stream (a learner still catching up, a follower
// cut off from the leader's replication). A candidate that never started its
// epoch has neither. Gossip is advice for status and routing (DESIGN §6
// rule 9): nothing commits or elects on this.
func (n *Node) leaderServes(li *cluster.LeaderInfo) bool {
	if li.Name == n.cfg.Name {
		return n.replica != nil && n.replica.Serving()
	}
	var g *cluster.PeerHealth
	if n.gossip != nil {
		if p, ok := n.gossip.Peers()[li.Name]; ok {
			g = &p
		}
	}
	var rs walrepl.ReplicaStatus
	if n.replica != nil {
		rs = n.replica.Status()
	}
	var epochs []walrepl.EpochStart
	if n.wal != nil {
		epochs = n.wal.Epochs()
	}
	return servesAsSeen(li, g, rs, epochs)
}

// followedLeader is the leader key's holder as this node last watched it,
// when this node follows it on the replication stream and that stream shows
// it serving now (servesAsSeen without gossip: heard within peerAliveWindow,
// its safe_seq past its epoch's start frame). Routing only: a leader that
// streams to this node was heard a moment ago, whatever this node's own etcd
// probe says yet.
func (n *Node) followedLeader() (*cluster.LeaderInfo, bool) {
	n.mu.Lock()
	watched := n.leader
	n.mu.Unlock()
	if watched == nil || watched.Name == n.cfg.Name || n.replica == nil || n.wal == nil {
		return nil, false
	}
	if servesAsSeen(watched, nil, n.replica.Status(), n.wal.Epochs()) {
		return watched, true
	}
	return nil, false
}

// servesAsSeen is leaderServes' judgement of another node from what this one
// sees: g is li's gossip (nil: never seen), rs and epochs this node's replica
// status and epoch history.
func servesAsSeen(li *cluster.LeaderInfo, g *cluster.PeerHealth, rs walrepl.ReplicaStatus, epochs []walrepl.EpochStart) bool {
	if g != nil && g.State == "alive" && g.Epoch == li.Epoch && g.Serving == cluster.ServingYes {
		return true
	}
	since, heard := sinceLeaderHeard(rs)
	if rs.Epoch != li.Epoch || rs.Leader != li.Name || !heard || since >= peerAliveWindow {
		return false
	}
	for _, es := range epochs {
		if es.Epoch == li.Epoch {
			return es.FirstSeq > 0 && rs.LeaderSafeSeq >= es.FirstSeq
		}
	}
	return false
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
