package node

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/autonomyops/orchestrator/api"
	"github.com/autonomyops/orchestrator/cluster"
	"github.com/autonomyops/orchestrator/walrepl"
)

// Planned failover bounds.
const (
	// failoverMaxLag: a target further behind than this is refused; it would
	// keep the cluster without a writer while it catches up.
	failoverMaxLag = 10000
	// failoverCatchUp bounds the wait for the target to fsync the tail.
	failoverCatchUp = 5 * time.Second
	// failoverKeyTTL bounds how long the "elect only the target" hint lives.
	failoverKeyTTL = 10 * time.Second
)

// candidates judges every other voter as a failover target.
func (n *Node) candidates(ctx context.Context) ([]api.FailoverCandidate, error) {
	voters, err := n.member.Voters(ctx)
	if err != nil {
		return nil, err
	}
	rs := n.replica.Status()
	last, _, _, _ := n.wal.Positions()
	peers := map[string]walrepl.PeerStatus{}
	for _, p := range rs.Peers {
		peers[p.Name] = p
	}
	var out []api.FailoverCandidate
	for _, v := range voters {
		if v == n.cfg.Name {
			continue
		}
		p := peers[v]
		c := api.FailoverCandidate{Name: v, FsyncedSeq: p.DurableSeq, Gossip: n.gossip.State(v)}
		if last > p.DurableSeq {
			c.Lag = last - p.DurableSeq
		}
		if p.Learner {
			c.Blockers = append(c.Blockers, "learner: still catching up after losing its WAL")
		}
		if c.Gossip != "alive" {
			c.Blockers = append(c.Blockers, fmt.Sprintf("not healthy in gossip (%s)", c.Gossip))
		}
		switch {
		case !p.Heard:
			c.Blockers = append(c.Blockers, "not answering replication")
		case p.SinceHeard > time.Second:
			c.Blockers = append(c.Blockers, fmt.Sprintf("not answering replication for %.1fs", p.SinceHeard.Seconds()))
		}
		if c.Lag > failoverMaxLag {
			c.Blockers = append(c.Blockers, fmt.Sprintf("lagging by %d frames (bound %d)", c.Lag, failoverMaxLag))
		}
		if p.Error != "" {
			c.Blockers = append(c.Blockers, "replication error: "+p.Error)
		}
		c.Eligible = len(c.Blockers) == 0
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Eligible != out[j].Eligible {
			return out[i].Eligible
		}
		return out[i].Lag < out[j].Lag
	})
	return out, nil
}

// Failover implements api.FailoverRunner: stop taking writes, wait until the target
// has fsynced everything, step down, and let only the target take over.
func (n *Node) Failover(ctx context.Context, req api.FailoverRequest, who string) (api.FailoverResponse, error) {
	resp := api.FailoverResponse{DryRun: req.DryRun, From: n.cfg.Name}
	rs := n.replica.Status()
	if rs.Role != walrepl.RoleLeader || !rs.EpochStarted {
		return resp, fmt.Errorf("%w: %s is not the serving leader", walrepl.ErrNotLeader, n.cfg.Name)
	}
	cands, err := n.candidates(ctx)
	if err != nil {
		return resp, err
	}
	resp.Candidates = cands
	var target *api.FailoverCandidate
	for i := range cands {
		if (req.To == "" && cands[i].Eligible) || cands[i].Name == req.To {
			target = &cands[i]
			break
		}
	}
	switch {
	case req.To == n.cfg.Name:
		return resp, fmt.Errorf("%w: %s already leads", api.ErrFailoverRefused, req.To)
	case target == nil && req.To != "":
		return resp, fmt.Errorf("%w: %q is not a voting member of this cluster", api.ErrFailoverRefused, req.To)
	case target == nil:
		return resp, fmt.Errorf("%w: no eligible candidate: %s", api.ErrFailoverRefused, describeBlockers(cands))
	case !target.Eligible:
		return resp, fmt.Errorf("%w: %s: %s", api.ErrFailoverRefused, target.Name, strings.Join(target.Blockers, "; "))
	}
	resp.To = target.Name
	if req.DryRun {
		return resp, nil
	}

	t0 := time.Now()
	revokeHint, err := n.member.PutFailoverHint(ctx, cluster.FailoverHint{To: target.Name, From: n.cfg.Name, Epoch: rs.Epoch}, failoverKeyTTL)
	if err != nil {
		return resp, err
	}
	abort := func(why error) (api.FailoverResponse, error) {
		n.replica.SetDraining(false)
		revokeHint()
		return resp, why
	}
	if !n.replica.SetDraining(true) {
		return abort(fmt.Errorf("%w: leadership ended before the handoff", walrepl.ErrNotLeader))
	}
	last, _, _, _ := n.wal.Positions()
	caught := false
	for deadline := time.Now().Add(failoverCatchUp); time.Now().Before(deadline) && ctx.Err() == nil; {
		for _, p := range n.replica.Status().Peers {
			if p.Name == target.Name && p.DurableSeq >= last {
				caught = true
			}
		}
		if caught {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !caught {
		return abort(fmt.Errorf("%w: %s did not fsync up to Seq=%d within %s; writes resume here", api.ErrFailoverRefused, target.Name, last, failoverCatchUp))
	}
	n.stepDown()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		n.mu.Lock()
		li := n.leader
		n.mu.Unlock()
		if li != nil && li.Epoch > rs.Epoch {
			resp.NewLeader, resp.NewEpoch = li.Name, li.Epoch
			if li.Name == target.Name {
				break
			}
		}
		select {
		case <-ctx.Done():
			return resp, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	resp.TookMs = time.Since(t0).Milliseconds()
	n.audit(ctx, "failover", who, map[string]any{"from": n.cfg.Name, "to": target.Name, "new_leader": resp.NewLeader,
		"old_epoch": rs.Epoch, "new_epoch": resp.NewEpoch, "took_ms": resp.TookMs})
	if resp.NewLeader != target.Name {
		return resp, fmt.Errorf("%w: leadership moved to %q, not %s", api.ErrFailoverRefused, resp.NewLeader, target.Name)
	}
	return resp, nil
}

func describeBlockers(cs []api.FailoverCandidate) string {
	var parts []string
	for _, c := range cs {
		parts = append(parts, c.Name+": "+strings.Join(c.Blockers, ", "))
	}
	if len(parts) == 0 {
		return "this cluster has no other voter"
	}
	return strings.Join(parts, "; ")
}

// stepAside reports whether a planned failover names another node that is
// alive, in which case this node must not lead now.
func (n *Node) stepAside(ctx context.Context) (string, bool) {
	h, ok := n.member.FailoverHint(ctx)
	if !ok || h.To == n.cfg.Name || h.To == "" {
		return "", false
	}
	return h.To, n.gossip.State(h.To) == "alive"
}

// clearFailoverHint removes the hint once its target leads.
func (n *Node) clearFailoverHint(ctx context.Context) {
	n.member.ClearFailoverHint(ctx, n.cfg.Name)
}
