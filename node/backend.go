package node

import (
	"context"
	"time"

	"github.com/autonomyops/orchestrator/api"
	"github.com/autonomyops/orchestrator/walrepl"
)

// The node is the API's Backend.
var _ api.Backend = (*Node)(nil)

// Serving implements api.Backend.
func (n *Node) Serving() bool {
	if !n.replica.Serving() {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.leader != nil && n.leader.Name == n.cfg.Name
}

// NodeName implements api.Backend.
func (n *Node) NodeName() string { return n.cfg.Name }

// WAL implements api.Backend.
func (n *Node) WAL() *walrepl.WAL { return n.wal }

// Fleet implements api.Backend.
func (n *Node) Fleet() *api.Fleet { return n.fleet }

// Leader implements api.Backend: the leader as etcd records it.
func (n *Node) Leader() (string, string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.leader == nil {
		return "", "", false
	}
	return n.leader.Name, n.leader.APIURL, true
}

// Health implements api.Backend. It is 200 only on the leader that holds
// the leader token, has committed its epoch-start frame and hears a majority.
func (n *Node) Health() (api.Health, bool) {
	rs := n.replica.Status()
	last, _, _, safe := n.wal.Positions()
	h := api.Health{Status: "unavailable", Role: rs.Role, Node: n.cfg.Name, Epoch: rs.Epoch, SafeSeq: safe, LastSeq: last,
		WAL: "ok", Version: Version}
	n.mu.Lock()
	if n.leader != nil {
		h.Leader, h.LeaderURL = n.leader.Name, n.leader.APIURL
		if rs.Role != walrepl.RoleLeader {
			h.Epoch = n.leader.Epoch
		}
	}
	holdsToken := n.leader != nil && n.leader.Name == n.cfg.Name && n.leader.Epoch == rs.Epoch
	n.mu.Unlock()
	if err := n.wal.Err(); err != nil {
		h.WAL = "failed"
		h.Reasons = append(h.Reasons, "wal_fail_hard")
	}
	switch {
	case rs.Role != walrepl.RoleLeader && rs.Role != walrepl.RoleCandidate:
		h.Reasons = append(h.Reasons, "not_leader")
	case !rs.EpochStarted:
		h.Reasons = append(h.Reasons, "epoch_not_started")
	case !rs.QuorumOK:
		h.Reasons = append(h.Reasons, "no_quorum")
	case !holdsToken:
		h.Reasons = append(h.Reasons, "leader_token_not_held")
	}
	ok := len(h.Reasons) == 0
	if ok {
		h.Status = "ok"
	}
	return h, ok
}

// HAStatus implements api.Backend.
func (n *Node) HAStatus(ctx context.Context) api.HAStatus {
	rs := n.replica.Status()
	last, _, durable, safe := n.wal.Positions()
	out := api.HAStatus{Node: n.cfg.Name, Role: rs.Role, SafeSeq: safe}
	n.mu.Lock()
	if n.leader != nil {
		out.Leader = &api.LeaderRef{Name: n.leader.Name, APIURL: n.leader.APIURL, Epoch: n.leader.Epoch, Since: n.leader.Since}
	}
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	voters, _ := n.member.Voters(ctx)
	infos, _ := n.member.NodeInfos(ctx)
	peers := map[string]walrepl.PeerStatus{}
	for _, p := range rs.Peers {
		peers[p.Name] = p
	}
	gossiped := n.gossip.Peers()
	for _, name := range voters {
		m := api.Member{Name: name, APIURL: infos[name].APIURL, Role: walrepl.RoleFollower, GossipState: "unknown"}
		if g, ok := gossiped[name]; ok {
			m.GossipState, m.LastSeq, m.FsyncedSeq, m.FailHard = g.State, g.LastSeq, g.FsyncedSeq, g.FailHard
			if g.Role != "" {
				m.Role = g.Role
			}
			m.Learner = g.Role == walrepl.RoleLearner
		}
		if out.Leader != nil && out.Leader.Name == name && m.Role != walrepl.RoleLeader {
			m.Role = walrepl.RoleLeader
		}
		if name == n.cfg.Name {
			m.Role, m.LastSeq, m.FsyncedSeq, m.Learner = rs.Role, last, durable, rs.Learner
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
		if safe > m.FsyncedSeq {
			m.Lag = safe - m.FsyncedSeq
		}
		out.Members = append(out.Members, m)
	}
	out.Quorum = api.Quorum{Size: len(voters)/2 + 1, Healthy: rs.Healthy}
	if rs.Role != walrepl.RoleLeader {
		out.Quorum.Healthy = 0 // only the leader measures it
	}
	n.etcdView(ctx, &out)
	return out
}
