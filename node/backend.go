package node

import (
	"context"
	"sort"
	"time"

	"github.com/autonomyops/orchestrator/api"
	"github.com/autonomyops/orchestrator/cluster"
	"github.com/autonomyops/orchestrator/walrepl"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

// The node plays these of the API's roles (api.Backends).
var (
	_ api.NodeState      = (*Node)(nil)
	_ api.ClusterView    = (*Node)(nil)
	_ api.Ingester       = (*Node)(nil)
	_ api.AuditLog       = (*Node)(nil)
	_ api.Membership     = (*Node)(nil)
	_ api.FailoverRunner = (*Node)(nil)
	_ api.Log            = (*walrepl.WAL)(nil)
)

// Serving implements api.NodeState.
func (n *Node) Serving() bool {
	if !n.replica.Serving() {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.leader != nil && n.leader.Name == n.cfg.Name
}

// NodeName implements api.NodeState.
func (n *Node) NodeName() string { return n.cfg.Name }

// Leader implements api.NodeState: where a follower redirects leader-only
// requests, the holder of the leader key under a valid lease as this node can
// tell (leaseHolder). It answers for itself: 503 while it does not serve yet,
// except member add and remove, which a candidate waiting for voters takes.
// When this node's own etcd probe has no fresh answer (just started, or etcd
// slow to confirm a read), the leader it follows on the replication stream
// still counts while it shows that leader serving (followedLeader). None
// otherwise, so that a follower cut off from the majority answers 503
// no_leader instead of redirecting to a leader that may be gone. /v1/health
// names a leader only when etcd's evidence holds and it serves
// (committingLeader).
func (n *Node) Leader() (string, string, bool) {
	li, ok := n.leaseHolder()
	if !ok {
		li, ok = n.followedLeader()
	}
	if !ok {
		return "", "", false
	}
	return li.Name, li.APIURL, true
}

// Health implements api.NodeState. It is 200 only on the leader that holds
// the leader token, has committed its epoch-start frame and hears a majority.
// Every other node says why it cannot commit, with reason codes
// (docs/autonomyctl.md): first, on a node that does not lead, no_quorum when
// it cannot tell that etcd has a quorum holding the leader key, or
// leader_not_serving when the key's holder does not serve as it can tell
// (committingLeader); then its own role's reason. Leader and LeaderURL name
// only a leader that can commit.
func (n *Node) Health() (api.Health, bool) {
	rs := n.replica.Status()
	last, _, _, safe := n.wal.Positions()
	h := api.Health{Status: "unavailable", Role: rs.Role, Node: n.cfg.Name, Epoch: rs.Epoch, SafeSeq: safe, LastSeq: last,
		WAL: "ok", Version: Version}
	li, holder, committing := n.leadership()
	if committing {
		h.Leader, h.LeaderURL = li.Name, li.APIURL
		if rs.Role != walrepl.RoleLeader {
			h.Epoch = li.Epoch
		}
	}
	n.mu.Lock()
	holdsToken := n.leader != nil && n.leader.Name == n.cfg.Name && n.leader.Epoch == rs.Epoch
	n.mu.Unlock()
	if err := n.wal.Err(); err != nil {
		h.WAL = "failed"
		h.Reasons = append(h.Reasons, "wal_failed")
	}
	leading := rs.Role == walrepl.RoleLeader || rs.Role == walrepl.RoleCandidate
	switch {
	case leading || committing:
	case holder == nil:
		h.Reasons = append(h.Reasons, "no_quorum")
	default:
		h.Reasons = append(h.Reasons, "leader_not_serving")
	}
	switch {
	case rs.Role == walrepl.RoleLearner:
		h.Reasons = append(h.Reasons, "learner")
	case !leading:
		h.Reasons = append(h.Reasons, "not_leader")
		if rs.Unconfirmed {
			// Restarted, and no leader has confirmed its log yet (rule 13):
			// it counts toward no election majority of restarted nodes.
			h.Reasons = append(h.Reasons, "unconfirmed")
		}
	case !rs.EpochStarted:
		h.Reasons = append(h.Reasons, "epoch_not_started")
	case !rs.QuorumOK:
		h.Reasons = append(h.Reasons, "no_quorum")
	case !holdsToken:
		h.Reasons = append(h.Reasons, "leader_token_not_held")
	}
	if n.transport != nil {
		if r := n.transport.LastRefusal(); !r.At.IsZero() && time.Since(r.At) < protocolWarning {
			h.Warnings = append(h.Warnings, "peer_protocol_unsupported")
			if !leading {
				h.Reasons = append(h.Reasons, "peer_protocol_unsupported")
			}
		}
	}
	ok := len(h.Reasons) == 0
	if ok {
		h.Status = "ok"
	}
	return h, ok
}

// protocolWarning is how long a refused peer (REPL_PROTOCOL_UNSUPPORTED)
// stays in /v1/health's warnings. A leader tries every peer at each epoch
// start and a follower hears a leader's promise round at each, so a peer
// that still speaks another version renews it.
const protocolWarning = time.Minute

// HAStatus implements api.ClusterView. Leader is set only while some leader can
// commit as this node can tell; otherwise LastLeader names the last one seen.
// The members come from a quorum read of etcd when there is a quorum, else
// from this node's local copy (the last registry it saw), so that every known
// member is listed under quorum loss too, each judged alive or unreachable.
func (n *Node) HAStatus(ctx context.Context) api.HAStatus {
	rs := n.replica.Status()
	last, _, durable, safe := n.wal.Positions()
	out := api.HAStatus{Node: n.cfg.Name, Role: rs.Role, SafeSeq: safe}
	li, holder, committing := n.leadership()
	if committing {
		out.Leader = leaderRef(li)
	} else if ll := n.lastLeader(); ll != nil {
		out.LastLeader = leaderRef(ll)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ms, infos, stale, merr := n.memberView(ctx, holder != nil)
	var voters []string
	for _, m := range ms {
		if !m.IsLearner && m.Name != "" {
			voters = append(voters, m.Name)
		}
	}
	sort.Strings(voters)
	reach := n.reachability(voters)
	peers := map[string]walrepl.PeerStatus{}
	for _, p := range rs.Peers {
		peers[p.Name] = p
	}
	gossiped := n.gossip.Peers()
	alive := 0
	for _, name := range voters {
		m := api.Member{Name: name, APIURL: infos[name].APIURL, Role: walrepl.RoleFollower, GossipState: "unknown", State: reach[name]}
		if m.State == "alive" {
			alive++
		}
		if g, ok := gossiped[name]; ok {
			m.GossipState, m.LastSeq, m.FsyncedSeq, m.FailHard, m.Version = g.State, g.LastSeq, g.FsyncedSeq, g.FailHard, g.Version
			// A dead node keeps the positions it was last seen with; the
			// role it last gossiped (leader, say) is history, not its role.
			if g.Role != "" && g.State == "alive" {
				m.Role = g.Role
			}
			m.Learner = g.Role == walrepl.RoleLearner && g.State == "alive"
		}
		if out.Leader != nil && out.Leader.Name == name && m.Role != walrepl.RoleLeader {
			m.Role = walrepl.RoleLeader
		}
		if name == n.cfg.Name {
			m.Role, m.LastSeq, m.FsyncedSeq, m.Learner, m.Version = rs.Role, last, durable, rs.Learner, Version
			if err := n.wal.Err(); err != nil {
				m.FailHard = err.Error()
			}
		} else if p, ok := peers[name]; ok {
			// The leader's own view of a follower is fresher than gossip.
			m.FsyncedSeq, m.Learner = max(m.FsyncedSeq, p.DurableSeq), p.Learner
			if p.Learner {
				m.Role = walrepl.RoleLearner
			}
		}
		// A node's last Seq is never below what it has fsynced. Gossip's
		// LastSeq can be older than the leader's fresh view of FsyncedSeq
		// (by one heartbeat): the fresher one bounds both.
		m.LastSeq = max(m.LastSeq, m.FsyncedSeq)
		if safe > m.FsyncedSeq {
			m.Lag = safe - m.FsyncedSeq
		}
		out.Members = append(out.Members, m)
	}
	// Healthy counts the rows whose STATE is alive, on every node, so that the
	// summary agrees with the table. (The leader's own commit check, which
	// /v1/health reports, waits longer before it counts a voter out.)
	out.Quorum = api.Quorum{Size: len(voters)/2 + 1, Healthy: alive}
	n.etcdView(&out, holder, ms, stale, merr)
	return out
}

func leaderRef(li *cluster.LeaderInfo) *api.LeaderRef {
	return &api.LeaderRef{Name: li.Name, APIURL: li.APIURL, Epoch: li.Epoch, Since: li.Since}
}

// memberView reads etcd's members and the registry: by quorum reads while a
// leader can commit, else (or when those fail) from this member's local copy,
// with stale set.
func (n *Node) memberView(ctx context.Context, quorum bool) ([]*etcdserverpb.Member, map[string]cluster.NodeInfo, bool, error) {
	if quorum {
		qctx, cancel := context.WithTimeout(ctx, quorumProbeTimeout)
		ms, err := n.member.Members(qctx)
		var infos map[string]cluster.NodeInfo
		if err == nil {
			infos, err = n.member.NodeInfos(qctx)
		}
		cancel()
		if err == nil {
			return ms, infos, false, nil
		}
	}
	ms, err := n.member.LocalMembers(ctx)
	if err != nil {
		return nil, nil, true, err
	}
	infos, _ := n.member.LocalNodeInfos(ctx)
	return ms, infos, true, nil
}
