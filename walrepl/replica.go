package walrepl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
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

// Replica runs the replication protocol for this node's WAL: as leader of
// an epoch (Lead) or as follower (HandleStream, HandlePromise, HandleFetch).
type Replica struct {
	cfg ReplicaConfig
	wal *WAL
	log logrus.FieldLogger

	// logMu owns the right to change the log: follower appends and
	// truncations, leader appends, and the promise. Holding it while
	// checking the epoch and appending makes "reject smaller epochs" atomic
	// with the write it guards.
	logMu sync.Mutex

	mu        sync.Mutex
	st        promiseState // persisted; changed under logMu and mu
	role      string
	epoch     uint64
	leader    string
	lead      *leaderRun // non-nil while leading
	candidate *leaderRun // non-nil from this node's own promise until Lead ends
	matched   uint64     // follower: highest Seq known to match the leader's log
	// confirmed: since this process started, a leader of a started epoch
	// has seen this log hold everything committed (confirmUntil, the first
	// safe_seq such a leader sent), or this node started an epoch itself.
	// Until then it may be a rolled-back disk (DESIGN §6 rule 13). In memory
	// only: every restart starts unconfirmed.
	confirmed    bool
	confirmUntil uint64
	leaderSafe   uint64
	leaderHeard  time.Time
}

// NewReplica loads the promise state of cfg.WAL's directory.
func NewReplica(cfg ReplicaConfig) (*Replica, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = logrus.StandardLogger()
	}
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	st, err := loadState(cfg.WAL.Dir())
	if err != nil {
		return nil, err
	}
	changed := false
	if cfg.JoinAsLearner && !st.Learner {
		st.Learner, st.LearnerUntil, changed = true, 0, true
	}
	if cfg.MinEpoch > st.PromisedEpoch {
		st.PromisedEpoch, changed = cfg.MinEpoch, true
	}
	if changed {
		if err := saveState(cfg.WAL.Dir(), st); err != nil {
			return nil, fmt.Errorf("walrepl: persisting replication state: %w", err)
		}
	}
	r := &Replica{cfg: cfg, wal: cfg.WAL, log: cfg.Logger.WithField("node", cfg.Name), st: st, role: RoleFollower,
		confirmed: cfg.NewLog}
	if st.Learner {
		r.role = RoleLearner
		r.log.WithField("promised_epoch", st.PromisedEpoch).Warn("WAL_LEARNER: this node counts toward no majority until it has caught up")
	}
	return r, nil
}

// Status returns a snapshot of the replica's state.
func (r *Replica) Status() ReplicaStatus {
	r.mu.Lock()
	s := ReplicaStatus{
		Role:          r.role,
		Epoch:         r.epoch,
		Leader:        r.leader,
		Promised:      r.st.PromisedEpoch,
		Learner:       r.st.Learner,
		Unconfirmed:   !r.confirmed,
		LearnerUntil:  r.st.LearnerUntil,
		LeaderSafeSeq: r.leaderSafe,
	}
	if !r.leaderHeard.IsZero() {
		s.SinceLeader = r.cfg.Clock.Since(r.leaderHeard)
	}
	lr := r.lead
	r.mu.Unlock()
	if lr != nil {
		lr.fillStatus(&s)
	}
	return s
}

// promiseLocked raises the promised epoch durably. logMu must be held.
func (r *Replica) promiseLocked(epoch uint64) error {
	r.mu.Lock()
	st := r.st
	r.mu.Unlock()
	if epoch <= st.PromisedEpoch {
		return nil
	}
	st.PromisedEpoch = epoch
	if err := saveState(r.wal.Dir(), st); err != nil {
		return fmt.Errorf("walrepl: persisting promised epoch %d: %w", epoch, err)
	}
	r.mu.Lock()
	r.st = st
	r.mu.Unlock()
	return nil
}

func (r *Replica) promised() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st.PromisedEpoch
}

// tail makes everything queued durable and reports the log's tail. logMu
// must be held, so the tail cannot grow meanwhile.
func (r *Replica) tailLocked(ctx context.Context) (last, lastEpoch uint64, epochs []EpochStart, err error) {
	last, lastEpoch, _, _ = r.wal.Positions()
	if err := r.wal.WaitDurable(ctx, last); err != nil {
		return 0, 0, nil, err
	}
	return last, lastEpoch, r.wal.Epochs(), nil
}

// Propose appends events as the leader and returns their Seqs once they are
// committed (safe_seq ≥ last). ts is the leader's timestamp for the frames.
func (r *Replica) Propose(ctx context.Context, ts int64, payloads [][]byte) (first, last uint64, err error) {
	return r.ProposeNotify(ctx, ts, payloads, nil)
}

// ProposeNotify is Propose with a callback run once the frames are in the log
// (before they are committed), with their first Seq and epoch: indexes over
// the log (idempotency ids) learn of them even if the outcome is unknown.
func (r *Replica) ProposeNotify(ctx context.Context, ts int64, payloads [][]byte, appended func(first, epoch uint64)) (first, last uint64, err error) {
	if len(payloads) == 0 {
		return 0, 0, errors.New("walrepl: nothing to propose")
	}
	r.logMu.Lock()
	r.mu.Lock()
	lr := r.lead
	r.mu.Unlock()
	if lr == nil {
		r.logMu.Unlock()
		return 0, 0, ErrNotLeader
	}
	if !lr.isStarted() {
		r.logMu.Unlock()
		return 0, 0, ErrEpochNotStarted
	}
	if lr.isDraining() {
		r.logMu.Unlock()
		return 0, 0, fmt.Errorf("%w: handing leadership over", ErrNotLeader)
	}
	if p := r.promised(); p != lr.epoch {
		r.logMu.Unlock()
		return 0, 0, fmt.Errorf("%w: promised epoch %d, leading %d", ErrDeposed, p, lr.epoch)
	}
	first, last, err = r.wal.Append(lr.epoch, FrameEvent, ts, payloads)
	if err == nil && appended != nil {
		appended(first, lr.epoch)
	}
	r.logMu.Unlock()
	if err != nil {
		return 0, 0, err
	}
	return first, last, lr.waitCommit(ctx, last)
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

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// WaitCommitted waits, as the leader of a started epoch, until seq is
// committed. Used for an idempotent retry whose event is already in the log.
func (r *Replica) WaitCommitted(ctx context.Context, seq uint64) error {
	r.mu.Lock()
	lr := r.lead
	r.mu.Unlock()
	if lr == nil {
		return ErrNotLeader
	}
	if !lr.isStarted() {
		return ErrEpochNotStarted
	}
	if last, _, _, _ := r.wal.Positions(); seq > last {
		return fmt.Errorf("walrepl: Seq=%d is beyond the log (last %d)", seq, last)
	}
	return lr.waitCommit(ctx, seq)
}

// SetDraining starts (or cancels) a planned handoff: while draining, the
// leader accepts no new writes, so the target can catch up to a fixed tail.
// It reports false when this node is not leading.
func (r *Replica) SetDraining(on bool) bool {
	r.logMu.Lock() // after this, no Propose is between its check and its append
	defer r.logMu.Unlock()
	r.mu.Lock()
	lr := r.lead
	r.mu.Unlock()
	if lr == nil {
		return false
	}
	lr.mu.Lock()
	lr.draining = on
	lr.mu.Unlock()
	return true
}

// Serving reports, cheaply, whether this node leads a started epoch that can
// commit (a majority heard) and is not handing over.
func (r *Replica) Serving() bool {
	r.mu.Lock()
	lr := r.lead
	r.mu.Unlock()
	if lr == nil {
		return false
	}
	lr.mu.Lock()
	defer lr.mu.Unlock()
	return lr.started && lr.quorumOK && !lr.draining && lr.ctx.Err() == nil
}

// EpochStartSeq is the Seq of the current epoch's epoch-start frame on the
// leader (0 otherwise): every frame below it came from earlier epochs.
func (r *Replica) EpochStartSeq() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lead == nil {
		return 0
	}
	return r.lead.barrier
}
