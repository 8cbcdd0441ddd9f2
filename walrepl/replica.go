package walrepl

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/sirupsen/logrus"
)

// Roles a Replica reports.
const (
	RoleFollower  = "follower"
	RoleCandidate = "candidate" // elected, running the promise round
	RoleLeader    = "leader"
	RoleLearner   = "learner"
)

// Replication errors.
var (
	ErrNotLeader       = errors.New("walrepl: not leader")
	ErrEpochNotStarted = errors.New("walrepl: leader epoch not started yet")
	ErrStaleEpoch      = errors.New("walrepl: epoch is not above the promised epoch")
	ErrDeposed         = errors.New("walrepl: deposed by a higher epoch")
	ErrNoQuorum        = errors.New("walrepl: no majority of voters reachable")
	ErrIsLearner       = errors.New("walrepl: this node is a learner and cannot lead")
	// ErrUnknownOutcome: leadership ended after the frames were written but
	// before they were known to be committed. They may or may not survive.
	ErrUnknownOutcome = errors.New("walrepl: leadership lost before commit; outcome unknown")
)

// ReplicaConfig configures a Replica.
type ReplicaConfig struct {
	Name      string
	WAL       *WAL
	Transport Transport // nil only for a single-node cluster
	Logger    logrus.FieldLogger
	// HeartbeatInterval is how often an idle leader sends an empty append.
	HeartbeatInterval time.Duration
	// QuorumTimeout: a leader that has not heard a majority of voters within
	// it reports no quorum and steps down (DESIGN §6 rule 8).
	QuorumTimeout time.Duration
	// PromiseTimeout bounds the promise round and the tail fetch.
	PromiseTimeout time.Duration
	// MaxBatchBytes bounds one append message's frames.
	MaxBatchBytes int
	// MaxInflight bounds the frames sent to a follower and not yet acked.
	MaxInflight uint64
	// JoinAsLearner marks a freshly created or reset WAL as a learner
	// (DESIGN §6 rule 7). Persisted; cleared once caught up.
	JoinAsLearner bool
	// NewLog says the WAL was created by this process (WAL.Open reported
	// Created): it holds no frame, so it cannot lack one it acknowledged,
	// and it starts confirmed (DESIGN §6 rule 13). Every other start is
	// unconfirmed until a leader confirms its log: the disk may be an old
	// copy of itself.
	NewLog bool
	// MinEpoch is the highest leader epoch the cluster may already have
	// used (the current leader key's epoch, read from etcd at start). It is
	// persisted as the promised epoch if higher: a node whose WAL and promise
	// were lost must not be recruited by a deposed leader of an older epoch,
	// which could then count it toward a majority.
	MinEpoch uint64
	// Clock is the monotonic clock every timeout uses; tests inject one.
	Clock Clock
}

// DefaultReplicaConfig returns timing suited to a LAN.
func DefaultReplicaConfig(name string, w *WAL, t Transport) ReplicaConfig {
	return ReplicaConfig{
		Name:              name,
		WAL:               w,
		Transport:         t,
		Logger:            logrus.StandardLogger(),
		HeartbeatInterval: 50 * time.Millisecond,
		QuorumTimeout:     1500 * time.Millisecond,
		PromiseTimeout:    3 * time.Second,
		MaxBatchBytes:     1 << 20,
		MaxInflight:       16384,
		Clock:             SystemClock{},
	}
}

// Validate reports the first setting that would make a Replica misbehave,
// saying which and what to set instead. NewReplica calls it.
func (c *ReplicaConfig) Validate() error {
	switch {
	case c.Name == "":
		return errors.New("walrepl: ReplicaConfig.Name is empty; set the node's name")
	case c.WAL == nil:
		return errors.New("walrepl: ReplicaConfig.WAL is nil; open the node's WAL first (walrepl.Open)")
	case c.HeartbeatInterval <= 0:
		return fmt.Errorf("walrepl: ReplicaConfig.HeartbeatInterval is %s; it must be positive (default %s)", c.HeartbeatInterval, 50*time.Millisecond)
	case c.QuorumTimeout <= c.HeartbeatInterval:
		return fmt.Errorf("walrepl: ReplicaConfig.QuorumTimeout %s must exceed HeartbeatInterval %s, or a leader steps down between two heartbeats",
			c.QuorumTimeout, c.HeartbeatInterval)
	case c.PromiseTimeout <= 0:
		return fmt.Errorf("walrepl: ReplicaConfig.PromiseTimeout is %s; it must be positive (default %s)", c.PromiseTimeout, 3*time.Second)
	case c.MaxBatchBytes <= 0:
		return fmt.Errorf("walrepl: ReplicaConfig.MaxBatchBytes is %d; it must be positive (default %d)", c.MaxBatchBytes, 1<<20)
	case c.MaxInflight == 0:
		return errors.New("walrepl: ReplicaConfig.MaxInflight is 0; it must be positive (default 16384)")
	}
	return nil
}

// PeerStatus is the leader's view of one follower.
type PeerStatus struct {
	walID      [16]byte
	Name       string        `json:"name"`
	WALID      string        `json:"wal_id,omitempty"` // the follower's WAL id, from its acks
	Connected  bool          `json:"connected"`
	Learner    bool          `json:"learner"`
	DurableSeq uint64        `json:"fsynced_seq"`
	SinceHeard time.Duration `json:"since_heard_ns"`
	Heard      bool          `json:"heard"`
	Error      string        `json:"error,omitempty"`
}

// ReplicaStatus is a snapshot for health and status endpoints.
type ReplicaStatus struct {
	Role          string        `json:"role"`
	Epoch         uint64        `json:"epoch"` // epoch led or followed
	Leader        string        `json:"leader,omitempty"`
	EpochStarted  bool          `json:"epoch_started"`
	QuorumOK      bool          `json:"quorum_ok"`
	QuorumSize    int           `json:"quorum_size"`
	Healthy       int           `json:"healthy"`
	Promised      uint64        `json:"promised_epoch"`
	Learner       bool          `json:"learner"`
	Unconfirmed   bool          `json:"unconfirmed,omitempty"` // restarted; no leader has confirmed its log yet
	LearnerUntil  uint64        `json:"learner_until,omitempty"`
	LeaderSafeSeq uint64        `json:"leader_safe_seq"` // follower: as last heard from the leader
	SinceLeader   time.Duration `json:"since_leader_ns"`
	Peers         []PeerStatus  `json:"peers,omitempty"`
}

// epochStartPayload is the barrier frame's JSON.
func epochStartPayload(leader string, epoch uint64) []byte {
	b, _ := json.Marshal(struct {
		Leader string `json:"leader"`
		Epoch  uint64 `json:"epoch"`
	}{leader, epoch})
	return b
}

// epochAtIn looks seq up in an epoch history (0 when seq is 0 or before it).
func epochAtIn(h []EpochStart, seq uint64) uint64 {
	i := sort.Search(len(h), func(i int) bool { return h[i].FirstSeq > seq })
	if i == 0 || seq == 0 {
		return 0
	}
	return h[i-1].Epoch
}

// matchPoint returns the highest Seq at which the log with history a and
// last Seq aLast agrees with the log (b, bLast). Agreement is prefix-closed
// (a frame is identified by its Seq and epoch, and followers check the frame
// before every batch), so a binary search finds it.
//
// Below either log's base both logs hold (or held) the same committed frames:
// retention only trims committed frames. So the search starts at the higher
// base - 1, and base-1 itself is compared by the epochs the bases recorded.
func matchPoint(a []EpochStart, aLast, aBase, aBaseEpoch uint64, b []EpochStart, bLast, bBase, bBaseEpoch uint64) uint64 {
	lo := max(aBase, bBase, 1) - 1
	hi := min(aLast, bLast)
	if hi < lo {
		return hi // one log ends below the other's base: it matches to its end
	}
	at := func(h []EpochStart, base, baseEpoch, s uint64) uint64 {
		if s > 0 && s == base-1 {
			return baseEpoch
		}
		return epochAtIn(h, s)
	}
	// The first s in [lo, hi] where the epochs differ; the match is just
	// below it. A difference at lo itself answers lo-1, below one log's base:
	// the leader then rebases that follower.
	n := sort.Search(int(hi-lo)+1, func(i int) bool {
		s := lo + uint64(i)
		return at(a, aBase, aBaseEpoch, s) != at(b, bBase, bBaseEpoch, s)
	})
	return lo + uint64(n) - 1
}

// better reports whether tail (e1, s1) is more up to date than (e2, s2).
func better(e1, s1, e2, s2 uint64) bool {
	return e1 > e2 || (e1 == e2 && s1 > s2)
}

// Clock is the monotonic clock. SystemClock uses Go's monotonic readings;
// tests inject their own to prove wall-clock jumps change nothing.
type Clock interface {
	Now() time.Time
	Since(time.Time) time.Duration
}

// SystemClock is the real clock.
type SystemClock struct{}

func (SystemClock) Now() time.Time                  { return time.Now() }
func (SystemClock) Since(t time.Time) time.Duration { return time.Since(t) }
