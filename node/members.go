package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/autonomyops/orchestrator/api"
	"github.com/autonomyops/orchestrator/cluster"
)

// Members implements api.Membership.
func (n *Node) Members(ctx context.Context) ([]api.ClusterMember, error) {
	ms, err := n.member.Members(ctx)
	if err != nil {
		return nil, err
	}
	infos, err := n.member.NodeInfos(ctx)
	if err != nil {
		return nil, err
	}
	var out []api.ClusterMember
	for _, m := range ms {
		cm := api.ClusterMember{Name: m.Name, ID: fmt.Sprintf("%x", m.ID), PeerURLs: m.PeerURLs, Started: m.Name != ""}
		if ni, ok := infos[m.Name]; ok {
			cm.APIURL, cm.ReplAddr = ni.APIURL, ni.ReplAddr
		}
		out = append(out, cm)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// AddMember implements api.Membership: it adds a voting etcd member. The new
// node's WAL joins as a learner and counts for no replication majority until
// it holds the committed history (DESIGN §6 rule 7).
func (n *Node) AddMember(ctx context.Context, req api.AddMemberRequest, who string) (api.AddMemberResponse, error) {
	ms, err := n.member.Members(ctx)
	if err != nil {
		return api.AddMemberResponse{}, err
	}
	var initial []string
	for _, m := range ms {
		if m.Name == req.Name {
			return api.AddMemberResponse{}, fmt.Errorf("%w: %q is already a member; remove it first to replace it", api.ErrRevisionMismatch, req.Name)
		}
		if m.Name != "" && len(m.PeerURLs) > 0 {
			initial = append(initial, m.Name+"="+m.PeerURLs[0])
		}
	}
	id, err := n.member.AddMember(ctx, req.PeerURL)
	if err != nil {
		return api.AddMemberResponse{}, fmt.Errorf("adding %s at %s: %w", req.Name, req.PeerURL, err)
	}
	initial = append(initial, req.Name+"="+req.PeerURL)
	sort.Strings(initial)
	n.audit(ctx, "member_add", who, map[string]any{"name": req.Name, "peer_url": req.PeerURL})
	return api.AddMemberResponse{
		Member:         api.ClusterMember{Name: req.Name, ID: fmt.Sprintf("%x", id), PeerURLs: []string{req.PeerURL}},
		InitialCluster: strings.Join(initial, ","),
	}, nil
}

// RemoveMember implements api.Membership.
func (n *Node) RemoveMember(ctx context.Context, name, who string) error {
	if name == n.cfg.Name {
		return fmt.Errorf("%w: %s is the leader; run `autonomyctl ha failover` first", api.ErrFailoverRefused, name)
	}
	undo, err := n.member.BeginVoterRemoval(ctx, name)
	if errors.Is(err, cluster.ErrVoterChangePending) {
		return fmt.Errorf("%w: %v", api.ErrRevisionMismatch, err)
	}
	if err != nil {
		return err
	}
	if err := n.member.RemoveMember(ctx, name); err != nil {
		undo()
		if strings.Contains(err.Error(), "no etcd member named") {
			return fmt.Errorf("%w: %v", api.ErrNotFound, err)
		}
		return err
	}
	n.audit(ctx, "member_remove", who, map[string]any{"name": name})
	return nil
}

// watchMembership ends the current leadership when the voters or their
// replication addresses change, so the next epoch starts with the new set
// (one election per membership change; membership changes are rare).
func (n *Node) watchMembership(ctx context.Context, voters []string, peers map[string]string, stop func()) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		v, p, err := n.peerSet(ctx)
		if err != nil {
			continue
		}
		addrs := map[string]string{}
		for _, pe := range p {
			addrs[pe.Name] = pe.Addr
		}
		if !slices.Equal(v, voters) || !mapsEqual(addrs, peers) {
			n.log.WithField("voters", v).Warn("MEMBERSHIP_CHANGED: starting a new epoch with the new voters")
			stop()
			return
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// recordEpochVoters records in etcd, once this leader's epoch serves, the
// voters it began with: a voter removal is allowed only while the voters are
// those of the newest started epoch (cluster.VoterRecord).
func (n *Node) recordEpochVoters(ctx context.Context, epoch uint64, voters []string) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		if rs := n.replica.Status(); !n.replica.Serving() || rs.Epoch != epoch {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := n.member.RecordEpochVoters(rctx, epoch, voters)
		cancel()
		if err == nil {
			return
		}
	}
}
