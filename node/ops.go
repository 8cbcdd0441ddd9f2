package node

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/autonomyops/orchestrator/api"
	"github.com/autonomyops/orchestrator/walrepl"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcdSettings is the cluster settings store: keys under /autonomy/<c>/config/.
type etcdSettings struct{ n *Node }

// Settings implements api.Backend.
func (n *Node) Settings() api.SettingsStore { return etcdSettings{n} }

func (s etcdSettings) prefix() string { return s.n.member.Prefix() + "config/" }

func (s etcdSettings) List(ctx context.Context) ([]api.Setting, int64, error) {
	resp, err := s.n.member.Client().Get(ctx, s.prefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, 0, err
	}
	var out []api.Setting
	for _, kv := range resp.Kvs {
		out = append(out, api.Setting{Key: strings.TrimPrefix(string(kv.Key), s.prefix()), Value: json.RawMessage(kv.Value), Revision: kv.ModRevision})
	}
	return out, resp.Header.Revision, nil
}

func (s etcdSettings) Get(ctx context.Context, key string) (api.Setting, error) {
	resp, err := s.n.member.Client().Get(ctx, s.prefix()+key)
	if err != nil {
		return api.Setting{}, err
	}
	if len(resp.Kvs) == 0 {
		return api.Setting{}, fmt.Errorf("%w: no setting %q", api.ErrNotFound, key)
	}
	kv := resp.Kvs[0]
	return api.Setting{Key: key, Value: json.RawMessage(kv.Value), Revision: kv.ModRevision}, nil
}

// cmp returns the compare for If-Match rev (0: the key must not exist).
func (s etcdSettings) cmp(key string, rev int64) clientv3.Cmp {
	if rev == 0 {
		return clientv3.Compare(clientv3.CreateRevision(s.prefix()+key), "=", 0)
	}
	return clientv3.Compare(clientv3.ModRevision(s.prefix()+key), "=", rev)
}

func (s etcdSettings) mismatch(ctx context.Context, key string, want int64) error {
	cur, err := s.Get(ctx, key)
	have := "absent"
	if err == nil {
		have = fmt.Sprintf("revision %d", cur.Revision)
	}
	return fmt.Errorf("%w: %q is %s, not revision %d; read it again and retry with its revision", api.ErrRevisionMismatch, key, have, want)
}

func (s etcdSettings) Put(ctx context.Context, key string, value json.RawMessage, ifRev *int64) (api.Setting, error) {
	cli := s.n.member.Client()
	put := clientv3.OpPut(s.prefix()+key, string(value))
	if ifRev == nil {
		resp, err := cli.Put(ctx, s.prefix()+key, string(value))
		if err != nil {
			return api.Setting{}, err
		}
		return api.Setting{Key: key, Value: value, Revision: resp.Header.Revision}, nil
	}
	resp, err := cli.Txn(ctx).If(s.cmp(key, *ifRev)).Then(put).Commit()
	if err != nil {
		return api.Setting{}, err
	}
	if !resp.Succeeded {
		return api.Setting{}, s.mismatch(ctx, key, *ifRev)
	}
	return api.Setting{Key: key, Value: value, Revision: resp.Header.Revision}, nil
}

func (s etcdSettings) Delete(ctx context.Context, key string, ifRev *int64) (api.Setting, error) {
	cli := s.n.member.Client()
	ops := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(s.prefix()+key), ">", 0)}
	if ifRev != nil {
		ops = append(ops, s.cmp(key, *ifRev))
	}
	resp, err := cli.Txn(ctx).If(ops...).Then(clientv3.OpDelete(s.prefix() + key)).Commit()
	if err != nil {
		return api.Setting{}, err
	}
	if !resp.Succeeded {
		if _, err := s.Get(ctx, key); err != nil {
			return api.Setting{}, err
		}
		return api.Setting{}, s.mismatch(ctx, key, *ifRev)
	}
	return api.Setting{Key: key, Revision: resp.Header.Revision}, nil
}

// Audit implements api.Backend: records live in etcd under audit/, keyed by
// time so that listing them newest first is a reverse range read.
func (n *Node) Audit(ctx context.Context, rec api.AuditRecord) error {
	b, _ := json.Marshal(rec)
	key := fmt.Sprintf("%saudit/%020d-%s", n.member.Prefix(), rec.At.UnixNano(), rec.Node)
	_, err := n.member.Client().Put(ctx, key, string(b))
	return err
}

// AuditList implements api.Backend.
func (n *Node) AuditList(ctx context.Context, limit int) ([]api.AuditRecord, error) {
	resp, err := n.member.Client().Get(ctx, n.member.Prefix()+"audit/", clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(int64(limit)))
	if err != nil {
		return nil, err
	}
	var out []api.AuditRecord
	for _, kv := range resp.Kvs {
		var r api.AuditRecord
		if json.Unmarshal(kv.Value, &r) == nil {
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

// ReplicaHealth implements api.Backend, from the leader's safe_seq as last
// carried by its replication messages — live, not a published position.
func (n *Node) ReplicaHealth(maxLag uint64) (api.ReplicaHealth, bool) {
	rs := n.replica.Status()
	_, _, durable, _ := n.wal.Positions()
	h := api.ReplicaHealth{Status: "unavailable", Node: n.cfg.Name, Role: rs.Role, FsyncedSeq: durable,
		LeaderSafeSeq: rs.LeaderSafeSeq, MaxLag: maxLag, SinceLeaderMs: -1}
	if rs.SinceLeader > 0 {
		h.SinceLeaderMs = rs.SinceLeader.Milliseconds()
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
	if rs.SinceLeader == 0 || rs.SinceLeader > replicaHeardBound {
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
// memberView and compares it with gossip and the replication stream.
func (n *Node) etcdView(st *api.HAStatus, members []*etcdserverpb.Member, stale bool, err error) {
	view := &api.EtcdView{Stale: stale}
	if st.Leader != nil {
		view.Leader, view.Epoch = st.Leader.Name, st.Leader.Epoch
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
