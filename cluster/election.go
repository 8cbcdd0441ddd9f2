package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// NodeInfo is what a node publishes about itself: under the leader key while
// it leads, and under members/<name> always.
type NodeInfo struct {
	Name       string `json:"name"`
	APIURL     string `json:"api_url"`
	ReplAddr   string `json:"repl_addr"`
	GossipAddr string `json:"gossip_addr,omitempty"`
}

// LeaderInfo is the current leader as etcd records it.
type LeaderInfo struct {
	NodeInfo
	Epoch uint64    `json:"epoch"`
	Since time.Time `json:"since"` // when this node first observed it
}

func (m *Member) leaderPrefix() string { return m.Prefix() + "leader" }

// Leadership is held while this node is the elected leader of one epoch.
type Leadership struct {
	Epoch  uint64
	sess   *concurrency.Session
	el     *concurrency.Election
	done   chan struct{} // closed by keep
	cancel context.CancelFunc
	once   sync.Once
}

// Done closes when the leadership is lost: etcd says the session's lease is
// gone, or it could not be confirmed in time, or Resign was called. The
// holder must stop acting as leader at once.
func (l *Leadership) Done() <-chan struct{} { return l.done }

// Resign gives leadership up and ends the session. Safe to call more than once.
func (l *Leadership) Resign(ctx context.Context) {
	l.once.Do(func() {
		l.cancel()
		<-l.done
		l.el.Resign(ctx)
		l.sess.Close()
	})
}

// keepAliveOnce is clientv3's KeepAliveOnce; a test replaces it to lose the
// answers.
var keepAliveOnce = func(ctx context.Context, c *clientv3.Client, id clientv3.LeaseID) (*clientv3.LeaseKeepAliveResponse, error) {
	return c.KeepAliveOnce(ctx, id)
}

// keep renews the leader lease until ctx ends or the lease is lost, then
// closes l.done.
//
// Each renewal is a keep-alive of its own, every quarter TTL, bounded by a
// quarter TTL. etcd's long-lived keep-alive stream is not used for this: a
// member whose raft leader was cut off or frozen forwards each renewal on it
// to that old leader and blocks the whole stream for seconds (FINDINGS F7),
// while a one-shot renewal after etcd's election reaches the new raft leader,
// which extended every lease when it took over. Only the raft leader renews,
// and only a lease that still lives, so an answered renewal proves the lease
// alive; "not found" proves it gone. Without an answer the leadership is
// held for up to two TTLs after the last answered renewal (etcd's client
// would give up after one), then lost. Holding on past a lease etcd has
// expired cannot lose data: a new leader's epoch fences this one (DESIGN §5).
func (l *Leadership) keep(ctx context.Context, m *Member, id clientv3.LeaseID, ttl time.Duration) {
	defer close(l.done)
	t := time.NewTicker(ttl / 4)
	defer t.Stop()
	renewed := time.Now() // Campaign's grant
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		rctx, cancel := context.WithTimeout(ctx, ttl/4)
		_, err := keepAliveOnce(rctx, m.client, id)
		cancel()
		switch {
		case err == nil:
			if silent := time.Since(renewed); silent >= ttl {
				m.log.WithFields(logrus.Fields{"lease": fmt.Sprintf("%x", int64(id)), "unanswered_ms": silent.Milliseconds()}).
					Warn("LEADER_LEASE_CONFIRMED: a renewal was answered again after more than a TTL; etcd still held the lease")
			}
			renewed = time.Now()
		case errors.Is(err, rpctypes.ErrLeaseNotFound), ctx.Err() != nil:
			return
		case time.Since(renewed) >= 2*ttl:
			return
		}
	}
}

// Campaign blocks until this node holds the leader key or ctx ends. The epoch
// is the leader key's CreateRevision plus the epoch base (image.go).
func (m *Member) Campaign(ctx context.Context, me NodeInfo) (*Leadership, error) {
	ttl := int(m.cfg.LeaderTTL / time.Second)
	sess, err := concurrency.NewSession(m.client, concurrency.WithTTL(ttl), concurrency.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("cluster: opening leader session: %w", err)
	}
	val, _ := json.Marshal(me)
	el := concurrency.NewElection(sess, m.leaderPrefix())
	if err := el.Campaign(ctx, string(val)); err != nil {
		sess.Close()
		return nil, fmt.Errorf("cluster: campaign: %w", err)
	}
	kctx, cancel := context.WithCancel(ctx)
	l := &Leadership{Epoch: m.epochOf(el.Rev()), sess: sess, el: el, done: make(chan struct{}), cancel: cancel}
	go l.keep(kctx, m, sess.Lease(), m.cfg.LeaderTTL)
	return l, nil
}

// RevokeLeader revokes the lease behind the current leader key if it still
// has the given epoch: a follower that sees the leader dead on every channel
// may call it to elect sooner. A wrong guess costs one election, never data.
func (m *Member) RevokeLeader(ctx context.Context, epoch uint64) error {
	resp, err := m.client.Get(ctx, m.leaderPrefix()+"/", append(clientv3.WithFirstCreate(), clientv3.WithPrefix())...)
	if err != nil {
		return err
	}
	if len(resp.Kvs) == 0 || m.epochOf(resp.Kvs[0].CreateRevision) != epoch {
		return nil
	}
	_, err = m.client.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease))
	return err
}

// suspectPrefix holds, per epoch, the voters that have not heard that
// epoch's leader on the replication stream lately.
func (m *Member) suspectPrefix(epoch uint64) string {
	return fmt.Sprintf("%ssuspect/%d/", m.Prefix(), epoch)
}

// Suspicion is the answer of SuspectLeader.
type Suspicion struct {
	Suspects []string // nodes that record not hearing the epoch's leader, this one included
	Voters   []string // etcd's voting members as this member last applied them
	Majority bool     // a majority of Voters are Suspects
	Lease    clientv3.LeaseID
}

// SuspectLeader records, under a fresh lease of ttl (whole seconds, at least
// one), that this node has not heard the leader of epoch lately, and reports
// which nodes record the same about that epoch now. The record and the read
// are one transaction, so of two followers that suspect at the same moment
// the second sees the first. The lease is for WithdrawSuspicion; the record
// also ends on its own.
func (m *Member) SuspectLeader(ctx context.Context, epoch uint64, ttl time.Duration) (Suspicion, error) {
	return m.suspectAs(ctx, m.cfg.Name, epoch, ttl)
}

func (m *Member) suspectAs(ctx context.Context, name string, epoch uint64, ttl time.Duration) (Suspicion, error) {
	var s Suspicion
	g, err := m.client.Grant(ctx, max(int64(ttl/time.Second), 1))
	if err != nil {
		return s, err
	}
	s.Lease = g.ID
	pre := m.suspectPrefix(epoch)
	resp, err := m.client.Txn(ctx).Then(
		clientv3.OpPut(pre+name, "", clientv3.WithLease(g.ID)),
		clientv3.OpGet(pre, clientv3.WithPrefix(), clientv3.WithKeysOnly()),
	).Commit()
	if err != nil {
		return s, err
	}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		s.Suspects = append(s.Suspects, strings.TrimPrefix(string(kv.Key), pre))
	}
	members, err := m.LocalMembers(ctx)
	if err != nil {
		return s, err
	}
	for _, mem := range members {
		if !mem.IsLearner && mem.Name != "" {
			s.Voters = append(s.Voters, mem.Name)
		}
	}
	s.Majority = isMajority(s.Suspects, s.Voters)
	return s, nil
}

// isMajority reports whether more than half of voters are among names.
func isMajority(names, voters []string) bool {
	agree := 0
	for _, v := range voters {
		if slices.Contains(names, v) {
			agree++
		}
	}
	return agree >= len(voters)/2+1
}

// WithdrawSuspicion ends a suspicion recorded by SuspectLeader: this node
// heard the leader again.
func (m *Member) WithdrawSuspicion(ctx context.Context, lease clientv3.LeaseID) error {
	_, err := m.client.Revoke(ctx, lease)
	return err
}

// WatchLeader sends the current leader (nil when there is none) now and at
// every change, until ctx ends. The channel is closed when ctx ends.
func (m *Member) WatchLeader(ctx context.Context) <-chan *LeaderInfo {
	out := make(chan *LeaderInfo, 1)
	go func() {
		defer close(out)
		var last *LeaderInfo
		for ctx.Err() == nil {
			resp, err := m.client.Get(ctx, m.leaderPrefix()+"/", append(clientv3.WithFirstCreate(), clientv3.WithPrefix())...)
			if err != nil {
				select { // cluster may not import walrepl.Sleep (DESIGN §2)
				case <-time.After(200 * time.Millisecond):
				case <-ctx.Done():
				}
				continue
			}
			var cur *LeaderInfo
			if len(resp.Kvs) > 0 {
				kv := resp.Kvs[0]
				cur = &LeaderInfo{Epoch: m.epochOf(kv.CreateRevision), Since: time.Now()}
				if err := json.Unmarshal(kv.Value, &cur.NodeInfo); err != nil {
					cur.Name = string(kv.Value)
				}
				if last != nil && last.Epoch == cur.Epoch {
					cur.Since = last.Since
				}
			}
			if (cur == nil) != (last == nil) || (cur != nil && cur.Epoch != last.Epoch) {
				select {
				case out <- cur:
				case <-ctx.Done():
					return
				}
			}
			last = cur
			wctx, cancel := context.WithCancel(ctx)
			wch := m.client.Watch(wctx, m.leaderPrefix()+"/", clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
			for wr := range wch {
				if wr.Err() != nil || len(wr.Events) > 0 {
					break
				}
			}
			cancel()
		}
	}()
	return out
}

// PutNodeInfo registers this node under members/<name>, for peers to find its
// API and replication addresses.
func (m *Member) PutNodeInfo(ctx context.Context, me NodeInfo) error {
	b, _ := json.Marshal(me)
	_, err := m.client.Put(ctx, m.Prefix()+"members/"+me.Name, string(b))
	return err
}

// NodeInfos returns every registered node, by name.
func (m *Member) NodeInfos(ctx context.Context) (map[string]NodeInfo, error) {
	return m.nodeInfos(ctx)
}

func (m *Member) nodeInfos(ctx context.Context, opts ...clientv3.OpOption) (map[string]NodeInfo, error) {
	resp, err := m.client.Get(ctx, m.Prefix()+"members/", append(opts, clientv3.WithPrefix())...)
	if err != nil {
		return nil, err
	}
	out := map[string]NodeInfo{}
	for _, kv := range resp.Kvs {
		var ni NodeInfo
		if json.Unmarshal(kv.Value, &ni) == nil && ni.Name != "" {
			out[ni.Name] = ni
		}
	}
	return out, nil
}

// Voters returns the names of etcd's voting members (learners excluded):
// the replication quorum is counted over them.
func (m *Member) Voters(ctx context.Context) ([]string, error) {
	resp, err := m.client.MemberList(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, mem := range resp.Members {
		if !mem.IsLearner && mem.Name != "" {
			out = append(out, mem.Name)
		}
	}
	return out, nil
}

// Members lists etcd's members.
func (m *Member) Members(ctx context.Context) ([]*etcdserverpb.Member, error) {
	resp, err := m.client.MemberList(ctx)
	if err != nil {
		return nil, err
	}
	return resp.Members, nil
}

// AddMember adds a voting etcd member at peerURL. The new node's WAL still
// joins as a learner (it counts for no replication majority until caught up).
func (m *Member) AddMember(ctx context.Context, peerURL string) (uint64, error) {
	if _, err := parseURL(peerURL); err != nil {
		return 0, fmt.Errorf("cluster: peer URL %q: %v", peerURL, err)
	}
	var id uint64
	err := retryMembership(ctx, func(retry bool) error {
		resp, err := m.client.MemberAdd(ctx, []string{peerURL})
		if err == nil {
			id = resp.Member.ID
			return nil
		}
		if retry && errors.Is(err, rpctypes.ErrPeerURLExist) {
			// An earlier attempt was applied although its answer was an
			// error (the raft leader changed meanwhile): that is the member.
			ms, lerr := m.Members(ctx)
			if lerr != nil {
				return lerr
			}
			for _, mem := range ms {
				if slices.Contains(mem.PeerURLs, peerURL) {
					id = mem.ID
					return nil
				}
			}
		}
		return err
	})
	return id, err
}

// RemoveMember removes the etcd member named name and its registration.
func (m *Member) RemoveMember(ctx context.Context, name string) error {
	var ms []*etcdserverpb.Member
	err := retryMembership(ctx, func(bool) (err error) {
		ms, err = m.Members(ctx)
		return err
	})
	if err != nil {
		return err
	}
	for _, mem := range ms {
		if mem.Name != name {
			continue
		}
		err := retryMembership(ctx, func(retry bool) error {
			_, err := m.client.MemberRemove(ctx, mem.ID)
			if retry && errors.Is(err, rpctypes.ErrMemberNotFound) {
				return nil // an earlier attempt was applied, its answer lost
			}
			return err
		})
		if err != nil {
			return err
		}
		// The registry entry goes too; the raft leader may still be moving
		// (the removed member may have been it), and a delete is idempotent.
		return retryMembership(ctx, func(bool) error {
			_, err := m.client.Delete(ctx, m.Prefix()+"members/"+name)
			return err
		})
	}
	return fmt.Errorf("cluster: no etcd member named %q", name)
}

// membershipRetryFor bounds how long a membership change is retried through
// transient etcd errors.
const membershipRetryFor = 15 * time.Second

// retryMembership runs a membership change until it succeeds, fails for a
// reason retrying cannot change, or membershipRetryFor has passed. Retried:
// etcd's answers while its raft leadership moves (a member that just died
// may have been the raft leader: "leader changed", "no leader", the
// timeouts a lost leader causes) and its strict reconfiguration check right
// after a removal ("unhealthy cluster" until every remaining member is
// connected). op learns whether an earlier attempt failed that way: such an
// attempt may have been applied even so, which op must accept.
func retryMembership(ctx context.Context, op func(retry bool) error) error {
	deadline := time.Now().Add(membershipRetryFor)
	for retry := false; ; retry = true {
		err := op(retry)
		if err == nil || !transientMembershipError(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return err
		}
	}
}

func transientMembershipError(err error) bool {
	for _, t := range []error{rpctypes.ErrUnhealthy, rpctypes.ErrLeaderChanged, rpctypes.ErrNoLeader,
		rpctypes.ErrTimeout, rpctypes.ErrTimeoutDueToLeaderFail, rpctypes.ErrTimeoutDueToConnectionLost} {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// EpochFloor returns the highest leader epoch the cluster may already have
// used: the current leader key's epoch, or with no leader, the store's
// revision (every later leader key is created above it).
func (m *Member) EpochFloor(ctx context.Context) (uint64, error) {
	resp, err := m.client.Get(ctx, m.leaderPrefix()+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return 0, err
	}
	if len(resp.Kvs) > 0 {
		return m.epochOf(resp.Kvs[0].CreateRevision), nil
	}
	return m.epochOf(resp.Header.Revision), nil
}

// WALPos is the highest Seq a node was seen to hold durably, for one WAL id:
// a lower bound the node must still meet when it restarts on that WAL.
type WALPos struct {
	WALID   string `json:"wal_id"`
	Durable uint64 `json:"durable"`
}

// RecordWALPositions raises the recorded positions of several nodes in one
// etcd transaction (one write, fsynced once by each member, however many
// nodes moved): a record is never lowered for the same WAL id, and a new
// WAL id replaces it. The transaction applies only if no record changed
// since it was read, so two leaders overlapping for a moment cannot lower
// one another's records. It returns how many records it wrote.
func (m *Member) RecordWALPositions(ctx context.Context, pos map[string]WALPos) (int, error) {
	prefix := m.Prefix() + "walpos/"
	resp, err := m.client.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	cur := map[string]*mvccpb.KeyValue{}
	for _, kv := range resp.Kvs {
		cur[string(kv.Key)] = kv
	}
	var cmps []clientv3.Cmp
	var puts []clientv3.Op
	for name, p := range pos {
		key := prefix + name
		kv := cur[key]
		if kv != nil {
			var old WALPos
			if json.Unmarshal(kv.Value, &old) == nil && old.WALID == p.WALID && old.Durable >= p.Durable {
				continue
			}
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision))
		} else {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key), "=", 0))
		}
		b, _ := json.Marshal(p)
		puts = append(puts, clientv3.OpPut(key, string(b)))
	}
	if len(puts) == 0 {
		return 0, nil
	}
	tr, err := m.client.Txn(ctx).If(cmps...).Then(puts...).Commit()
	if err != nil || !tr.Succeeded {
		return 0, err // a record moved under us: the next round reads it again
	}
	return len(puts), nil
}

// WALPosOf returns name's recorded position, if any.
func (m *Member) WALPosOf(ctx context.Context, name string) (WALPos, bool, error) {
	resp, err := m.client.Get(ctx, m.Prefix()+"walpos/"+name)
	if err != nil || len(resp.Kvs) == 0 {
		return WALPos{}, false, err
	}
	var p WALPos
	if err := json.Unmarshal(resp.Kvs[0].Value, &p); err != nil {
		return WALPos{}, false, nil
	}
	return p, true, nil
}

// CurrentLeader reads the leader key linearizably. It succeeds only while
// etcd has a raft leader that hears a majority (a linearizable read needs the
// leader to confirm its term with a quorum), so a success is this node's
// evidence that the leader it names holds a valid lease right now. It returns
// nil without error when nobody holds the key.
func (m *Member) CurrentLeader(ctx context.Context) (*LeaderInfo, error) {
	resp, err := m.client.Get(ctx, m.leaderPrefix()+"/", append(clientv3.WithFirstCreate(), clientv3.WithPrefix())...)
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	kv := resp.Kvs[0]
	li := &LeaderInfo{Epoch: m.epochOf(kv.CreateRevision), Since: time.Now()}
	if err := json.Unmarshal(kv.Value, &li.NodeInfo); err != nil {
		li.Name = string(kv.Value)
	}
	return li, nil
}

// HasRaftLeader reports whether this etcd member currently knows a raft
// leader. A member cut off from the majority loses it within about one
// election timeout (pre-vote on a follower, check-quorum on the old leader).
// It reads local state only and never blocks.
func (m *Member) HasRaftLeader() bool { return m.etcd.Server.Leader() != 0 }

// LocalMembers lists etcd's members as this member last applied them
// (a serializable read): it answers without a quorum, possibly stale.
func (m *Member) LocalMembers(ctx context.Context) ([]*etcdserverpb.Member, error) {
	resp, err := m.client.MemberList(ctx, clientv3.WithSerializable())
	if err != nil {
		return nil, err
	}
	return resp.Members, nil
}

// LocalNodeInfos is NodeInfos from this member's local copy (a serializable
// read): the last registry it saw, available without a quorum.
func (m *Member) LocalNodeInfos(ctx context.Context) (map[string]NodeInfo, error) {
	return m.nodeInfos(ctx, clientv3.WithSerializable())
}
