package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/autonomyops/orchestrator/api"
	"github.com/autonomyops/orchestrator/cluster"
	"github.com/autonomyops/orchestrator/walrepl"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

// etcdSettings is the cluster settings store (cluster.Member's config/
// keys) in the API's shapes and errors.
type etcdSettings struct{ n *Node }

func (s etcdSettings) List(ctx context.Context) ([]api.Setting, int64, error) {
	all, rev, err := s.n.member.Settings(ctx)
	if err != nil {
		return nil, 0, err
	}
	var out []api.Setting
	for _, st := range all {
		out = append(out, api.Setting{Key: st.Key, Value: json.RawMessage(st.Value), Revision: st.Revision})
	}
	return out, rev, nil
}

func (s etcdSettings) Get(ctx context.Context, key string) (api.Setting, error) {
	st, ok, err := s.n.member.Setting(ctx, key)
	if err != nil {
		return api.Setting{}, err
	}
	if !ok {
		return api.Setting{}, fmt.Errorf("%w: no setting %q", api.ErrNotFound, key)
	}
	return api.Setting{Key: key, Value: json.RawMessage(st.Value), Revision: st.Revision}, nil
}

// mapErr turns cluster's conditional-write errors into the API's, saying
// what the key holds now.
func (s etcdSettings) mapErr(ctx context.Context, key string, want *int64, err error) error {
	switch {
	case errors.Is(err, cluster.ErrNotFound):
		return fmt.Errorf("%w: no setting %q", api.ErrNotFound, key)
	case errors.Is(err, cluster.ErrRevisionMismatch) && want != nil:
		cur, gerr := s.Get(ctx, key)
		have := "absent"
		if gerr == nil {
			have = fmt.Sprintf("revision %d", cur.Revision)
		}
		return fmt.Errorf("%w: %q is %s, not revision %d; read it again and retry with its revision", api.ErrRevisionMismatch, key, have, *want)
	}
	return err
}

func (s etcdSettings) Put(ctx context.Context, key string, value json.RawMessage, ifRev *int64) (api.Setting, error) {
	rev, err := s.n.member.PutSetting(ctx, key, value, ifRev)
	if err != nil {
		return api.Setting{}, s.mapErr(ctx, key, ifRev, err)
	}
	return api.Setting{Key: key, Value: value, Revision: rev}, nil
}

func (s etcdSettings) Delete(ctx context.Context, key string, ifRev *int64) (api.Setting, error) {
	rev, err := s.n.member.DeleteSetting(ctx, key, ifRev)
	if err != nil {
		return api.Setting{}, s.mapErr(ctx, key, ifRev, err)
	}
	return api.Setting{Key: key, Revision: rev}, nil
}

// Audit implements api.AuditLog: records live in etcd (cluster.Member.PutAudit).
func (n *Node) Audit(ctx context.Context, rec api.AuditRecord) error {
	b, _ := json.Marshal(rec)
	return n.member.PutAudit(ctx, rec.At, rec.Node, b)
}

// AuditList implements api.AuditLog.
func (n *Node) AuditList(ctx context.Context, limit int) ([]api.AuditRecord, error) {
	recs, err := n.member.AuditRecords(ctx, limit)
	if err != nil {
		return nil, err
	}
	var out []api.AuditRecord
	for _, b := range recs {
		var r api.AuditRecord
		if json.Unmarshal(b, &r) == nil {
			out = append(out, r)
		}
	}
	return out, nil
}

// audit records a node-initiated action (a WAL reset at start).
func (n *Node) audit(ctx context.Context, action, who string, details map[string]any) {
	rec := api.AuditRecord{At: time.Now().UTC(), Who: who, Action: action, Node: n.cfg.Name, Details: details}
	if err := n.Audit(ctx, rec); err != nil {
		n.log.WithError(err).WithField("action", action).Error("AUDIT_WRITE_FAILED")
	}
}

// replicaHeardBound: a follower that has not heard the leader for longer is
// not a trustworthy read replica.
const replicaHeardBound = 3 * time.Second

// ReplicaHealth implements api.ClusterView, from the leader's safe_seq as last
// carried by its replication messages — live, not a published position.
func (n *Node) ReplicaHealth(maxLag uint64) (api.ReplicaHealth, bool) {
	rs := n.replica.Status()
	_, _, durable, _ := n.wal.Positions()
	h := api.ReplicaHealth{Status: "unavailable", Node: n.cfg.Name, Role: rs.Role, FsyncedSeq: durable,
		LeaderSafeSeq: rs.LeaderSafeSeq, MaxLag: maxLag, SinceLeaderMs: -1}
	since, heard := sinceLeaderHeard(rs)
	if heard {
		h.SinceLeaderMs = since.Milliseconds()
	}
	if rs.LeaderSafeSeq > durable {
		h.Lag = rs.LeaderSafeSeq - durable
	}
	switch {
	case rs.Role == walrepl.RoleLearner:
		h.Reasons = append(h.Reasons, "learner")
	case rs.Role != walrepl.RoleFollower:
		h.Reasons = append(h.Reasons, "not_follower")
	}
	if !heard || since > replicaHeardBound {
		h.Reasons = append(h.Reasons, "leader_not_heard")
	}
	if h.Lag > maxLag {
		h.Reasons = append(h.Reasons, "lagging")
	}
	if n.wal.Err() != nil {
		h.Reasons = append(h.Reasons, "wal_failed")
	}
	ok := len(h.Reasons) == 0
	if ok {
		h.Status = "ok"
	}
	return h, ok
}

// etcdView sets etcd's side of ha status from the member list read by
// memberView and the leader key's holder (leaseHolder; nil when this node
// cannot tell), and compares it with gossip and the replication stream.
func (n *Node) etcdView(st *api.HAStatus, holder *cluster.LeaderInfo, members []*etcdserverpb.Member, stale bool, err error) {
	view := &api.EtcdView{Stale: stale}
	if holder != nil {
		view.Leader, view.Epoch = holder.Name, holder.Epoch
	}
	if err != nil {
		st.Disagreements = append(st.Disagreements, "etcd member list unavailable: "+err.Error())
		st.Etcd = view
		return
	}
	inEtcd := map[string]bool{}
	for _, m := range members {
		view.Members = append(view.Members, api.EtcdMember{Name: m.Name, ID: fmt.Sprintf("%x", m.ID), Learner: m.IsLearner, PeerURLs: m.PeerURLs})
		inEtcd[m.Name] = true
	}
	sort.Slice(view.Members, func(i, j int) bool { return view.Members[i].Name < view.Members[j].Name })
	st.Etcd = view
	for _, m := range st.Members {
		switch {
		case view.Leader == m.Name && (m.GossipState == "dead" || m.GossipState == "suspect"):
			st.Disagreements = append(st.Disagreements, fmt.Sprintf("etcd says %s holds the leader key (epoch %d) but gossip sees it %s", m.Name, view.Epoch, m.GossipState))
		case m.Role == walrepl.RoleLeader && view.Leader != "" && view.Leader != m.Name:
			st.Disagreements = append(st.Disagreements, fmt.Sprintf("gossip says %s is leader but etcd's leader key is held by %s", m.Name, view.Leader))
		case m.GossipState == "unknown" && m.Name != n.cfg.Name:
			st.Disagreements = append(st.Disagreements, fmt.Sprintf("%s is an etcd member but not in gossip", m.Name))
		}
	}
	for name, g := range n.gossip.Peers() {
		if !inEtcd[name] && g.State == "alive" {
			st.Disagreements = append(st.Disagreements, fmt.Sprintf("%s is alive in gossip but not an etcd member", name))
		}
	}
	for _, p := range n.replica.Status().Peers {
		if g, ok := n.gossip.Peers()[p.Name]; ok && g.State == "alive" && (!p.Heard || p.SinceHeard > 2*time.Second) {
			st.Disagreements = append(st.Disagreements, fmt.Sprintf("%s is alive in gossip but not answering replication", p.Name))
		}
	}
}
