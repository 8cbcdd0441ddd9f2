package node

import (
	"context"
	"errors"
	"net"
	"syscall"
	"time"

	"github.com/autonomyops/orchestrator/cluster"
	"github.com/autonomyops/orchestrator/walrepl"
	"github.com/sirupsen/logrus"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// selfHealth is what this node gossips.
func (n *Node) selfHealth() cluster.Health {
	rs := n.replica.Status()
	last, _, durable, _ := n.wal.Positions()
	h := cluster.Health{Name: n.cfg.Name, APIURL: n.cfg.APIURL(), Role: rs.Role, Epoch: rs.Epoch, LastSeq: last, FsyncedSeq: durable,
		Serving: cluster.ServingNo, Version: Version}
	if n.Serving() {
		h.Serving = cluster.ServingYes
	}
	if err := n.wal.Err(); err != nil {
		h.FailHard = err.Error()
	}
	return h
}

// joinGossip joins the gossip addresses registered in etcd that memberlist
// does not know yet, now and every few seconds.
func (n *Node) joinGossip(ctx context.Context) {
	for {
		infos, err := n.member.NodeInfos(ctx)
		if err == nil {
			known := n.gossip.Peers()
			var addrs []string
			for name, ni := range infos {
				if p, ok := known[name]; (!ok || p.State != "alive") && name != n.cfg.Name && ni.GossipAddr != "" {
					addrs = append(addrs, ni.GossipAddr)
				}
			}
			if len(addrs) > 0 {
				if _, err := n.gossip.Join(addrs); err != nil {
					n.log.WithError(err).Debug("GOSSIP_JOIN")
				}
			}
		}
		select {
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
			return
		}
	}
}

// leaderSilence is how long a follower must not have heard the leader on the
// replication stream before it may revoke the leader's lease. The leader
// sends a heartbeat every 50 ms; 400 ms deposed leaders that a loaded 2-core
// host had only starved (make test and make bench beside each other), so the
// silence is longer than etcd's own election timeout (500 ms).
const leaderSilence = 600 * time.Millisecond

// refusedSilence is the silence after which a refused replication port alone
// deposes the leader (a process that died on a host that still answers).
const refusedSilence = 200 * time.Millisecond

// suspectEvery is how often a follower that still does not hear the leader
// records its suspicion again (a fresh lease, one transaction), and
// suspectTimeout bounds one attempt: while etcd elects a new raft leader (the
// silent leader's node held it) a proposal waits for nothing, so attempts are
// short and frequent, and the first one after etcd's election counts.
const (
	suspectEvery   = 100 * time.Millisecond
	suspectTimeout = 300 * time.Millisecond
)

// detectLeaderDeath shortens failover: when the replication stream has been
// silent for leaderSilence and a second witness agrees, this follower revokes
// the leader's lease so the election need not wait for the TTL. The
// witnesses, first match wins:
//
//   - port_refused: the leader's replication port refuses connections (its
//     process is gone and its host answers);
//   - gossip_dead: memberlist declared the leader dead (or never saw a leader
//     this node has heard);
//   - silent_majority: a majority of the voters record in etcd that they
//     have not heard this epoch's leader either. A killed container, a cut
//     cable and a frozen VM answer nothing, so this is the witness that
//     counts there; one follower cut off alone never makes a majority.
//
// A wrong guess costs an election, never data: the epochs keep the WAL safe
// whatever this decides (DESIGN §5).
func (n *Node) detectLeaderDeath(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	var (
		revoked uint64
		sus     suspicion
	)
	defer sus.withdraw(n)
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		n.mu.Lock()
		li := n.leader
		n.mu.Unlock()
		if li == nil || li.Name == n.cfg.Name || li.Epoch == revoked {
			sus.withdraw(n)
			continue
		}
		rs := n.replica.Status()
		if rs.Role == walrepl.RoleLeader || rs.Role == walrepl.RoleCandidate {
			sus.withdraw(n)
			continue
		}
		since, heard := sinceLeaderHeard(rs)
		silentFor := func(d time.Duration) bool {
			heardWithin := rs.Epoch == li.Epoch && heard && since < d
			return !heardWithin && time.Since(li.Since) >= d
		}
		if !silentFor(refusedSilence) {
			sus.withdraw(n)
			continue
		}
		// A refused port is proof on its own that the leader's process is
		// gone: it needs only a short silence. The other witnesses need
		// the full one.
		refused := portRefuses(li.ReplAddr)
		if !refused && !silentFor(leaderSilence) {
			sus.withdraw(n)
			continue
		}
		gs := n.gossip.State(li.Name)
		heardEver := rs.Epoch == li.Epoch && heard
		var witness string
		var suspects []string
		switch {
		case refused:
			witness = "port_refused"
		case gs == "dead" || (gs == "unknown" && heardEver):
			witness = "gossip_" + gs
		case time.Since(sus.at) >= suspectEvery:
			// A leader this node never heard in its epoch (it was elected
			// and died before its first message, as a new leader that
			// crashes writing its epoch-start frame does) is silent too, but
			// give it twice the time since the key was seen: a leader
			// connects to its followers only after its promise round.
			if !heardEver && time.Since(li.Since) < 2*leaderSilence {
				continue
			}
			var ok bool
			suspects, ok = sus.record(ctx, n, li.Epoch)
			if ok {
				witness = "silent_majority"
			}
		}
		if witness == "" {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := n.member.RevokeLeader(rctx, li.Epoch)
		cancel()
		if err == nil {
			revoked = li.Epoch // else retry at the next tick (etcd may be electing)
		}
		n.log.WithFields(logrus.Fields{"leader": li.Name, "epoch": li.Epoch, "witness": witness, "gossip": gs,
			"suspects": suspects, "since_heard_ms": rs.SinceLeader.Milliseconds(), "error": errString(err)}).Warn("LEADER_LEASE_REVOKED")
	}
}

// suspicion is this follower's record in etcd that it does not hear the
// leader of an epoch (cluster.Member.SuspectLeader).
type suspicion struct {
	lease clientv3.LeaseID
	at    time.Time // of the last record
}

// record records the suspicion again and reports whether a majority of the
// voters now records it.
func (s *suspicion) record(ctx context.Context, n *Node, epoch uint64) ([]string, bool) {
	s.at = time.Now()
	rctx, cancel := context.WithTimeout(ctx, suspectTimeout)
	defer cancel()
	got, err := n.member.SuspectLeader(rctx, epoch, time.Second)
	if got.Lease != 0 {
		s.lease = got.Lease // the newest; older ones end on their own
	}
	return got.Suspects, err == nil && got.Majority
}

// withdraw ends the current record, if any: the leader is heard again, or
// another leader took over.
func (s *suspicion) withdraw(n *Node) {
	if s.lease == 0 {
		return
	}
	rctx, cancel := context.WithTimeout(context.Background(), time.Second)
	n.member.WithdrawSuspicion(rctx, s.lease)
	cancel()
	*s = suspicion{}
}

// sinceLeaderHeard returns how long ago this node last heard a leader on the
// replication stream, and whether it has heard one. walrepl measures
// ReplicaStatus.SinceLeader in its core's time, which moves at each tick
// (every 10 ms or so): a message received since the last tick is 0 old, the
// same value as "never heard". LeaderSafeSeq tells them apart: only the
// current epoch's append messages set it, and a leader's safe_seq is above 0
// from its first commit on (its epoch-start frame).
func sinceLeaderHeard(rs walrepl.ReplicaStatus) (time.Duration, bool) {
	return rs.SinceLeader, rs.SinceLeader > 0 || rs.LeaderSafeSeq > 0
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// portRefuses reports whether a TCP connection to addr is actively refused:
// nothing listens there, as after the process died. A timeout (partition,
// frozen process) is not a refusal.
func portRefuses(addr string) bool {
	if addr == "" {
		return false
	}
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// walPosInterval is how often the leader records positions in etcd: one
// transaction a second at most, and none while no voter's committed
// position moved. A disk rolled back to a copy older than the last record
// is recognised at once (WAL_ROLLED_BACK); the guarantee does not rest on
// the record but on confirmation after a restart (DESIGN §6 rule 13,
// docs/decisions.md), so the record can be cheap.
const walPosInterval = time.Second

// recordWALPositions, on the leader, records in etcd the highest committed
// Seq each voter was seen to hold durably (per WAL id), so that a node
// restarted on an old copy of its disk is recognised (node.Run).
func (n *Node) recordWALPositions(ctx context.Context) {
	t := time.NewTicker(walPosInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		if !n.replica.Serving() {
			continue
		}
		if walrepl.Failpoint("walpos-record") != nil {
			continue // test-only: scenario 25 runs without this detector
		}
		// Only committed positions: a committed frame is never truncated, so
		// a node below its record really lost acknowledged data.
		_, _, durable, safe := n.wal.Positions()
		pos := map[string]cluster.WALPos{n.cfg.Name: {WALID: walrepl.IDString(n.wal.ID()), Durable: min(durable, safe)}}
		for _, p := range n.replica.Status().Peers {
			if p.WALID != "" && !p.Learner {
				pos[p.Name] = cluster.WALPos{WALID: p.WALID, Durable: min(p.DurableSeq, safe)}
			}
		}
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		n.member.RecordWALPositions(rctx, pos)
		cancel()
	}
}
