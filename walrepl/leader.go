package walrepl

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// leaderRun is one epoch of leadership: the commitment, one replicator per
// peer, and the quorum watch. Lead owns it and waits for its goroutines.
type leaderRun struct {
	r      *Replica
	epoch  uint64
	voters map[string]bool
	peers  []Peer
	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup

	commit    *commitment
	startedCh chan struct{}

	mu           sync.Mutex
	barrier      uint64
	started      bool
	heard        map[string]time.Time
	retired      map[string]map[[16]byte]bool // per peer, WAL ids it replaced: their acks never count again
	peerSt       map[string]*PeerStatus
	lastQuorumOK time.Time
	quorumOK     bool
	draining     bool // a planned handoff: accept no new writes
	waiters      commitWaiters
}

// commitWaiters wakes each waiter only when its own Seq commits (not on every
// position change: with many concurrent writers that was most of the CPU).
type commitWaiters struct {
	h []commitWaiter // min-heap by seq
}

type commitWaiter struct {
	seq uint64
	ch  chan struct{}
}

func (w *commitWaiters) push(x commitWaiter) {
	w.h = append(w.h, x)
	for i := len(w.h) - 1; i > 0; {
		p := (i - 1) / 2
		if w.h[p].seq <= w.h[i].seq {
			break
		}
		w.h[p], w.h[i] = w.h[i], w.h[p]
		i = p
	}
}

// release closes every waiter at or below c.
func (w *commitWaiters) release(c uint64) {
	for len(w.h) > 0 && w.h[0].seq <= c {
		close(w.h[0].ch)
		last := len(w.h) - 1
		w.h[0] = w.h[last]
		w.h = w.h[:last]
		for i := 0; ; {
			l, r, m := 2*i+1, 2*i+2, i
			if l < len(w.h) && w.h[l].seq < w.h[m].seq {
				m = l
			}
			if r < len(w.h) && w.h[r].seq < w.h[m].seq {
				m = r
			}
			if m == i {
				break
			}
			w.h[m], w.h[i] = w.h[i], w.h[m]
			i = m
		}
	}
}

// Lead runs this node as the leader of epoch until ctx ends, leadership is
// lost (a higher epoch, no quorum) or the WAL fails; it returns the cause.
// voters are the names of the cluster's voting nodes (this one included);
// peers are the other nodes with their replication addresses.
//
// Before any write is served (DESIGN §6 rule 3) it obtains promises for
// epoch from a majority of voters, adopts the most up-to-date tail among them,
// appends the epoch-start frame and waits until that frame is committed.
func (r *Replica) Lead(ctx context.Context, epoch uint64, voters []string, peers []Peer) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	lr := &leaderRun{
		r: r, epoch: epoch, voters: map[string]bool{}, peers: peers, ctx: ctx, cancel: cancel,
		startedCh: make(chan struct{}), heard: map[string]time.Time{}, retired: map[string]map[[16]byte]bool{}, peerSt: map[string]*PeerStatus{},
	}
	for _, v := range voters {
		lr.voters[v] = true
	}
	if !lr.voters[r.cfg.Name] {
		return fmt.Errorf("walrepl: %s is not among the voters %v and cannot lead", r.cfg.Name, voters)
	}
	for _, p := range peers {
		lr.peerSt[p.Name] = &PeerStatus{Name: p.Name}
	}
	log := r.log.WithField("epoch", epoch)
	t0 := r.cfg.Clock.Now()

	self, err := r.promiseSelf(ctx, lr, len(lr.voters) == 1)
	if err != nil {
		return err
	}
	defer r.endLead(lr)

	resps, err := lr.promiseRound(self)
	if err != nil {
		return err
	}
	best := self
	for _, p := range resps {
		if better(p.LastEpoch, p.LastSeq, best.LastEpoch, best.LastSeq) {
			best = p
		}
	}
	if best != self {
		if err := lr.adopt(self, best); err != nil {
			return err
		}
	}

	r.logMu.Lock()
	// Rule 2 applies to this node too: if it promised a higher epoch while
	// it was a candidate, it must not start this one.
	if err := lr.stillCandidateLocked(); err != nil {
		r.logMu.Unlock()
		return err
	}
	barrier, _, err := r.wal.Append(epoch, FrameEpochStart, r.cfg.Clock.Now().UnixNano(), [][]byte{epochStartPayload(r.cfg.Name, epoch)})
	if err == nil {
		lr.barrier = barrier
		lr.commit = newCommitment(voters, barrier, lr.onCommit)
		r.mu.Lock()
		r.role, r.lead = RoleLeader, lr
		r.mu.Unlock()
	}
	r.logMu.Unlock()
	if err != nil {
		return fmt.Errorf("walrepl: appending epoch-start frame: %w", err)
	}
	lr.mu.Lock()
	lr.lastQuorumOK, lr.quorumOK = r.cfg.Clock.Now(), true
	lr.mu.Unlock()

	lr.wg.Add(2 + len(peers))
	go lr.trackSelf()
	go lr.watchQuorum()
	for _, p := range peers {
		go lr.replicate(p)
	}
	select {
	case <-lr.startedCh:
		r.mu.Lock()
		r.confirmed = true // this log holds everything committed: it just proved it
		r.mu.Unlock()
		log.WithFields(logrus.Fields{"barrier_seq": barrier, "adopted_from": best.Node, "took_ms": r.cfg.Clock.Since(t0).Milliseconds()}).
			Info("LEADER_EPOCH_STARTED")
	case <-ctx.Done():
	}
	<-ctx.Done()
	lr.wg.Wait()
	cause := context.Cause(ctx)
	log.WithField("cause", fmt.Sprint(cause)).Warn("LEADER_STEPPED_DOWN")
	return cause
}

// promiseSelf makes this node's own promise for epoch and reports its tail.
//
// alone is true when this node is the only voter: a learner then has no one
// to catch up from, and its reset already accepted the loss, so it becomes a
// voter.
func (r *Replica) promiseSelf(ctx context.Context, lr *leaderRun, alone bool) (*PromiseResponse, error) {
	epoch := lr.epoch
	r.logMu.Lock()
	defer r.logMu.Unlock()
	r.mu.Lock()
	st := r.st
	r.mu.Unlock()
	if st.Learner && alone {
		st.Learner, st.LearnerUntil = false, 0
		if err := saveState(r.wal.Dir(), st); err != nil {
			return nil, fmt.Errorf("walrepl: persisting learner state: %w", err)
		}
		r.mu.Lock()
		r.st = st
		r.mu.Unlock()
		r.log.Warn("WAL_LEARNER_PROMOTED: single-voter cluster, nothing to catch up from")
	}
	learner, promised := st.Learner, st.PromisedEpoch
	if learner {
		return nil, ErrIsLearner
	}
	if epoch <= promised {
		return nil, fmt.Errorf("%w: epoch %d, promised %d", ErrStaleEpoch, epoch, promised)
	}
	if err := r.promiseLocked(epoch); err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.role, r.epoch, r.leader, r.matched = RoleCandidate, epoch, r.cfg.Name, 0
	r.candidate = lr // a higher epoch's promise cancels it (acceptEpochLocked)
	if alone {
		r.confirmed = true // no other copy exists to be missing from
	}
	unconfirmed := !r.confirmed
	r.mu.Unlock()
	last, lastEpoch, epochs, err := r.tailLocked(ctx)
	if err != nil {
		return nil, err
	}
	base, baseEpoch := r.wal.Base()
	return &PromiseResponse{OK: true, Node: r.cfg.Name, Promised: epoch, WALID: r.wal.ID(), Unconfirmed: unconfirmed,
		LastSeq: last, LastEpoch: lastEpoch, SafeSeq: r.wal.SafeSeq(), Epochs: epochs, Base: base, BaseEpoch: baseEpoch}, nil
}

func (r *Replica) endLead(lr *leaderRun) {
	lr.cancel(ErrNotLeader)
	r.mu.Lock()
	if r.lead == lr {
		r.lead = nil
	}
	if r.candidate == lr {
		r.candidate = nil
	}
	if r.role == RoleLeader || r.role == RoleCandidate {
		r.role = RoleFollower
	}
	r.mu.Unlock()
}

// promiseRound asks every peer to promise the epoch and returns the answers
// of voters once enough voters (this node included) have promised: a
// majority of confirmed ones, or every voter that is not a learner (DESIGN
// §6 rules 3 and 13).
//
// An unconfirmed node restarted and may run on an old copy of its disk: its
// tail can lack frames it acknowledged, so it cannot stand for them. Any
// majority that committed a frame meets a majority of confirmed promisers in
// a confirmed node, which holds the frame. With every voter promising, the
// frame's whole majority is asked, and one rolled-back disk among them
// leaves another copy. A learner lost its log (reset, new disk, detected
// rollback) and counts toward no commit: whatever it held is gone from it
// whether or not it answers, so every voter but the learners is enough. So a restart plus the leader's death before the
// restarted node was confirmed stalls elections until the leader returns;
// it never elects a leader without an acknowledged frame.
func (lr *leaderRun) promiseRound(self *PromiseResponse) ([]*PromiseResponse, error) {
	need := len(lr.voters)/2 + 1
	got := []*PromiseResponse{}
	count, confirmed := 1, 0 // this node
	if !self.Unconfirmed {
		confirmed = 1
	}
	var unconfirmed []string
	if self.Unconfirmed {
		unconfirmed = append(unconfirmed, self.Node)
	}
	learners := 0 // voters that answered as learners: they hold no committed frame to stand for
	enough := func() bool { return count >= need && (confirmed >= need || count+learners == len(lr.voters)) }
	if enough() {
		return got, nil
	}
	ctx, cancel := context.WithTimeout(lr.ctx, lr.r.cfg.PromiseTimeout)
	defer cancel()
	ch := make(chan *PromiseResponse, len(lr.peers))
	for _, p := range lr.peers {
		go func(p Peer) {
			for ctx.Err() == nil {
				resp, err := lr.r.cfg.Transport.Promise(ctx, p.Addr, &PromiseRequest{Epoch: lr.epoch, Leader: lr.r.cfg.Name})
				if err == nil && (resp.Node != p.Name || resp.WALID == lr.r.wal.ID()) {
					// A misconfigured address that reaches another node, or
					// this one: counting it would count a node twice.
					lr.r.log.WithFields(logrus.Fields{"peer": p.Name, "addr": p.Addr, "answered_as": resp.Node}).
						Error("REPL_PEER_IDENTITY_MISMATCH: the replication address does not reach that node; check --repl-addr")
					return
				}
				if err == nil {
					ch <- resp
					return
				}
				sleepCtx(ctx, 50*time.Millisecond)
			}
		}(p)
	}
	for !enough() {
		select {
		case resp := <-ch:
			if !resp.OK {
				if resp.Promised > lr.epoch {
					return nil, fmt.Errorf("%w: %s promised epoch %d", ErrDeposed, resp.Node, resp.Promised)
				}
				continue
			}
			lr.markHeard(resp.Node)
			if st := lr.peerSt[resp.Node]; st != nil {
				lr.mu.Lock()
				st.Learner = resp.Learner // DurableSeq comes from acks only
				lr.mu.Unlock()
			}
			if !lr.voters[resp.Node] {
				continue
			}
			if resp.Learner {
				learners++
				continue
			}
			got = append(got, resp)
			count++
			if resp.Unconfirmed {
				unconfirmed = append(unconfirmed, resp.Node)
			} else {
				confirmed++
			}
		case <-ctx.Done():
			if lr.ctx.Err() != nil {
				return nil, context.Cause(lr.ctx)
			}
			if count >= need {
				lr.r.log.WithFields(logrus.Fields{"epoch": lr.epoch, "promised": count, "confirmed": confirmed, "voters": len(lr.voters),
					"unconfirmed": unconfirmed}).
					Warn("LEADER_WAITING_FOR_CONFIRMED_VOTERS: restarted nodes may run on an old copy of their disk; an epoch needs a majority of confirmed voters or every voter")
				return nil, fmt.Errorf("%w: %d of %d voters promised epoch %d within %s, but only %d are confirmed since their restart (unconfirmed: %v); waiting for every voter or a confirmed majority",
					ErrNoQuorum, count, len(lr.voters), lr.epoch, lr.r.cfg.PromiseTimeout, confirmed, unconfirmed)
			}
			return nil, fmt.Errorf("%w: %d of %d voters promised epoch %d within %s", ErrNoQuorum, count, len(lr.voters), lr.epoch, lr.r.cfg.PromiseTimeout)
		}
	}
	return got, nil
}

// adopt makes this node's log equal to best's: it drops its own divergent
// suffix (never below safe_seq) and appends the frames it lacks.
//
// It acts only on a promise it still holds (DESIGN §6 rule 12). The frames
// are fetched first, without logMu; then, under logMu, adopt re-checks that
// this node has promised no higher epoch and that its own log is still the
// one it reported in the promise round, and only then truncates and appends,
// in one critical section. A failed fetch therefore changes nothing, and a
// candidate descheduled between its promise round and adopt (while a higher
// epoch took over and committed frames of its log) refuses instead of
// truncating them.
func (lr *leaderRun) adopt(self, best *PromiseResponse) error {
	r := lr.r
	m := matchPoint(self.Epochs, self.LastSeq, self.Base, self.BaseEpoch, best.Epochs, best.LastSeq, best.Base, best.BaseEpoch)
	rebase := m+1 < best.Base // best no longer holds what this node lacks (trimmed, committed)
	if rebase {
		m = best.Base - 1
	}
	frames, err := lr.fetchTail(best, m+1)
	if err != nil {
		return err
	}

	r.logMu.Lock()
	defer r.logMu.Unlock()
	if err := lr.stillCandidateLocked(); err != nil {
		return err
	}
	last, lastEpoch, _, _ := r.wal.Positions()
	base, baseEpoch := r.wal.Base()
	if last != self.LastSeq || lastEpoch != self.LastEpoch || base != self.Base || baseEpoch != self.BaseEpoch {
		return fmt.Errorf("walrepl: this node's log changed during the promise round for epoch %d (tail %d/%d, then %d/%d); not adopting",
			lr.epoch, self.LastEpoch, self.LastSeq, lastEpoch, last)
	}
	switch {
	case rebase:
		if err := r.wal.Rebase(best.Base, best.BaseEpoch); err != nil {
			return fmt.Errorf("walrepl: adopting %s's tail: %w", best.Node, err)
		}
	case m < last:
		if err := r.wal.TruncateAfter(m); err != nil {
			return fmt.Errorf("walrepl: adopting %s's tail: %w", best.Node, err)
		}
	}
	if len(frames) > 0 {
		if err := r.wal.AppendFrames(frames); err != nil {
			return fmt.Errorf("walrepl: appending frames fetched from %s: %w", best.Node, err)
		}
	}
	ctx, cancel := context.WithTimeout(lr.ctx, r.cfg.PromiseTimeout)
	defer cancel()
	if err := r.wal.WaitDurable(ctx, best.LastSeq); err != nil {
		return err
	}
	r.log.WithFields(logrus.Fields{"epoch": lr.epoch, "from": best.Node, "match_seq": m, "tail_seq": best.LastSeq}).
		Info("LEADER_ADOPTED_TAIL")
	return nil
}

// stillCandidateLocked reports why this node may no longer act as the
// candidate of lr's epoch: its run ended, or it promised another epoch since
// the round began. logMu must be held, so the answer holds until it is
// released.
func (lr *leaderRun) stillCandidateLocked() error {
	if lr.ctx.Err() != nil {
		return context.Cause(lr.ctx)
	}
	if p := lr.r.promised(); p != lr.epoch {
		return fmt.Errorf("%w: promised epoch %d while a candidate for %d", ErrDeposed, p, lr.epoch)
	}
	return nil
}

// fetchTail fetches best's frames from..best.LastSeq, exactly the tail best
// promised (same Seqs, same epochs). It holds no lock: best answers only for
// the epoch it promised, and adopt re-checks this node's side under logMu.
func (lr *leaderRun) fetchTail(best *PromiseResponse, from uint64) ([]Frame, error) {
	r := lr.r
	var addr string
	for _, p := range lr.peers {
		if p.Name == best.Node {
			addr = p.Addr
		}
	}
	ctx, cancel := context.WithTimeout(lr.ctx, r.cfg.PromiseTimeout)
	defer cancel()
	var out []Frame
	for next := from; next <= best.LastSeq; {
		resp, err := r.cfg.Transport.Fetch(ctx, addr, &FetchRequest{Epoch: lr.epoch, From: next, MaxBytes: r.cfg.MaxBatchBytes})
		if err != nil {
			if lr.ctx.Err() != nil {
				return nil, context.Cause(lr.ctx)
			}
			return nil, fmt.Errorf("walrepl: fetching frames from %s at Seq=%d: %w", best.Node, next, err)
		}
		if !resp.OK {
			return nil, fmt.Errorf("%w: %s refused the fetch (promised %d)", ErrDeposed, best.Node, resp.Promised)
		}
		if len(resp.Frames) == 0 {
			return nil, fmt.Errorf("walrepl: %s returned no frames at Seq=%d below its tail %d", best.Node, next, best.LastSeq)
		}
		frames := resp.Frames
		for i := range frames {
			f := &frames[i]
			if f.Seq > best.LastSeq {
				frames = frames[:i]
				break
			}
			if f.Seq != next+uint64(i) || f.Epoch != epochAtIn(best.Epochs, f.Seq) {
				return nil, fmt.Errorf("walrepl: %s's log changed since it promised (frame Seq=%d epoch %d)", best.Node, f.Seq, f.Epoch)
			}
		}
		out = append(out, frames...)
		next += uint64(len(frames))
	}
	return out, nil
}

func (lr *leaderRun) onCommit(c uint64) {
	lr.r.wal.SetSafeSeq(c)
	lr.mu.Lock()
	if !lr.started && c >= lr.barrier {
		lr.started = true
		close(lr.startedCh)
	}
	lr.waiters.release(c)
	lr.mu.Unlock()
}

func (lr *leaderRun) isStarted() bool {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	return lr.started && lr.ctx.Err() == nil
}

func (lr *leaderRun) isDraining() bool {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	return lr.draining
}

// waitCommit waits until seq is committed in this epoch. A WAL failure
// ends the epoch (trackSelf), which wakes every waiter.
func (lr *leaderRun) waitCommit(ctx context.Context, seq uint64) error {
	ch := make(chan struct{})
	lr.mu.Lock()
	if lr.commit.committed() >= seq {
		lr.mu.Unlock()
		return nil
	}
	lr.waiters.push(commitWaiter{seq: seq, ch: ch})
	lr.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-lr.ctx.Done():
		if lr.commit.committed() >= seq {
			return nil
		}
		if err := lr.r.wal.Err(); err != nil {
			return err
		}
		return fmt.Errorf("%w (%v)", ErrUnknownOutcome, context.Cause(lr.ctx))
	}
}

// trackSelf feeds this node's own fsynced Seq into the commitment.
func (lr *leaderRun) trackSelf() {
	defer lr.wg.Done()
	for {
		ch := lr.r.wal.Changed()
		if err := lr.r.wal.Err(); err != nil {
			lr.cancel(err)
			return
		}
		_, _, durable, _ := lr.r.wal.Positions()
		lr.commit.setMatch(lr.r.cfg.Name, durable)
		select {
		case <-ch:
		case <-lr.ctx.Done():
			return
		}
	}
}

func (lr *leaderRun) markHeard(name string) {
	now := lr.r.cfg.Clock.Now()
	lr.mu.Lock()
	lr.heard[name] = now
	lr.mu.Unlock()
}

// healthyLocked counts voters heard within QuorumTimeout, this node included.
func (lr *leaderRun) healthyLocked() int {
	n := 0
	for _, since := range lr.sinceHeardLocked() {
		if since < lr.r.cfg.QuorumTimeout {
			n++
		}
	}
	return n
}

// sinceHeardLocked returns, per voter that is not a learner, how long ago it
// was last heard (0 for this node), sorted ascending. Voters never heard are
// absent.
func (lr *leaderRun) sinceHeardLocked() []time.Duration {
	var out []time.Duration
	for v := range lr.voters {
		if v == lr.r.cfg.Name {
			out = append(out, 0)
			continue
		}
		if st := lr.peerSt[v]; st != nil && st.Learner {
			continue
		}
		if t, ok := lr.heard[v]; ok {
			out = append(out, lr.r.cfg.Clock.Since(t))
		}
	}
	slices.Sort(out)
	return out
}

// watchQuorum steps down when no majority has been heard for QuorumTimeout.
func (lr *leaderRun) watchQuorum() {
	defer lr.wg.Done()
	t := time.NewTicker(lr.r.cfg.HeartbeatInterval)
	defer t.Stop()
	need := len(lr.voters)/2 + 1
	for {
		select {
		case <-t.C:
		case <-lr.ctx.Done():
			return
		}
		// A majority was last heard when the need-th most recently heard
		// voter was; before the epoch's first round, at the epoch's start.
		lr.mu.Lock()
		since := lr.r.cfg.Clock.Since(lr.lastQuorumOK)
		if s := lr.sinceHeardLocked(); len(s) >= need && s[need-1] < since {
			since = s[need-1]
		}
		lost := since >= lr.r.cfg.QuorumTimeout
		lr.quorumOK = !lost
		lr.mu.Unlock()
		if lost {
			lr.cancel(fmt.Errorf("%w: not heard within %s", ErrNoQuorum, lr.r.cfg.QuorumTimeout))
			return
		}
	}
}

func (lr *leaderRun) fillStatus(s *ReplicaStatus) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	s.EpochStarted = lr.started && lr.ctx.Err() == nil
	s.QuorumSize = len(lr.voters)/2 + 1
	s.Healthy = lr.healthyLocked()
	s.QuorumOK = s.Healthy >= s.QuorumSize
	var matches map[string]uint64
	if lr.commit != nil {
		matches = lr.commit.matches()
	}
	for _, p := range lr.peers {
		st := *lr.peerSt[p.Name]
		if st.walID != ([16]byte{}) {
			st.WALID = IDString(st.walID)
		}
		if t, ok := lr.heard[p.Name]; ok {
			st.Heard, st.SinceHeard = true, lr.r.cfg.Clock.Since(t)
		}
		if m, ok := matches[p.Name]; ok && m > st.DurableSeq {
			st.DurableSeq = m
		}
		s.Peers = append(s.Peers, st)
	}
}

// replicate keeps one append stream to p open for the epoch's lifetime.
func (lr *leaderRun) replicate(p Peer) {
	defer lr.wg.Done()
	backoff := 20 * time.Millisecond
	warned := false
	for lr.ctx.Err() == nil {
		if p.Addr == "" && !warned {
			lr.r.log.WithFields(logrus.Fields{"peer": p.Name, "epoch": lr.epoch}).
				Warn("REPL_PEER_UNREACHABLE: no replication address registered yet; a new epoch starts once it is")
			warned = true
		}
		err := lr.stream(p)
		lr.mu.Lock()
		st := lr.peerSt[p.Name]
		st.Connected = false
		if err != nil {
			st.Error = err.Error()
		}
		lr.mu.Unlock()
		if err != nil && !warned && lr.ctx.Err() == nil {
			lr.r.log.WithFields(logrus.Fields{"peer": p.Name, "addr": p.Addr, "epoch": lr.epoch, "error": err.Error()}).
				Warn("REPL_PEER_UNREACHABLE")
			warned = true
		}
		if lr.ctx.Err() != nil {
			return
		}
		sleepCtx(lr.ctx, backoff)
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// stream runs one append stream: a sender that pipelines batches and
// heartbeats, and a receiver that applies acks and resynchronises on a
// mismatch.
func (lr *leaderRun) stream(p Peer) error {
	r := lr.r
	// Forget what p was known to hold: this stream may reach a new process
	// of p, perhaps on an old copy of its disk, which takes the safe_seq of
	// the first started-epoch message as what it must hold to be confirmed
	// (DESIGN §6 rule 13). No commit after this point counts an ack of an
	// earlier stream, and every commit before it is in that first message's
	// safe_seq (sent below, read from the commitment under the same lock).
	lr.commit.resetMatch(p.Name)
	sctx, scancel := context.WithCancelCause(lr.ctx)
	defer scancel(nil)
	s, err := r.cfg.Transport.OpenStream(sctx, p.Addr)
	if err != nil {
		return err
	}
	lr.mu.Lock()
	lr.peerSt[p.Name].Connected = true
	lr.peerSt[p.Name].Error = ""
	lr.mu.Unlock()

	var (
		mu    sync.Mutex
		next  = r.wal.WrittenSeq() + 1
		gen   = uint64(1)
		acked uint64
		wake  = make(chan struct{}, 1)
	)
	kick := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	// The receiver is joined before stream returns, and applies nothing
	// once the stream has ended: a late ack of an old stream (perhaps of a
	// WAL since replaced) never reaches the commitment.
	recvDone := make(chan struct{})
	defer func() {
		scancel(nil)
		s.Close() // unblocks Recv (the Stream contract)
		<-recvDone
	}()
	go func() {
		defer close(recvDone)
		for {
			resp, err := s.Recv()
			if err != nil {
				scancel(err)
				return
			}
			lr.markHeard(p.Name)
			if sctx.Err() != nil {
				return
			}
			if resp.Error != "" {
				lr.mu.Lock()
				lr.peerSt[p.Name].Error = resp.Error
				lr.mu.Unlock()
				continue
			}
			if resp.Promised > lr.epoch || resp.Epoch > lr.epoch {
				lr.cancel(fmt.Errorf("%w: %s follows epoch %d", ErrDeposed, p.Name, max(resp.Promised, resp.Epoch)))
				return
			}
			if !resp.OK || resp.Epoch != lr.epoch {
				continue // an answer meant for another epoch counts for nothing
			}
			if resp.WALID == r.wal.ID() {
				scancel(fmt.Errorf("walrepl: %s's replication address %s reaches this node itself", p.Name, p.Addr))
				return
			}
			if resp.Mismatch {
				mu.Lock()
				if resp.Gen == gen {
					last, _, _, _ := r.wal.Positions()
					base, baseEpoch := r.wal.Base()
					m := matchPoint(r.wal.Epochs(), last, base, baseEpoch, resp.Epochs, resp.LastSeq, resp.Base, resp.BaseEpoch)
					next, acked = m+1, m
					gen++
				}
				mu.Unlock()
				kick()
				continue
			}
			lr.mu.Lock()
			st := lr.peerSt[p.Name]
			if lr.retired[p.Name][resp.WALID] {
				// An ack of a WAL this peer has since replaced (reset):
				// what that WAL held is gone, whatever it says (rule 7).
				lr.mu.Unlock()
				continue
			}
			if st.walID != resp.WALID {
				// A replaced log forgets what the old one held (rule 7),
				// and the old one never counts again.
				if st.walID != ([16]byte{}) {
					lr.commit.resetMatch(p.Name)
					st.DurableSeq = 0
					if lr.retired[p.Name] == nil {
						lr.retired[p.Name] = map[[16]byte]bool{}
					}
					lr.retired[p.Name][st.walID] = true
				}
				st.walID = resp.WALID
			}
			if resp.Learner && !st.Learner {
				// The same WAL restarted as a learner (a rolled-back disk):
				// it no longer holds what it acked before.
				lr.commit.resetMatch(p.Name)
				st.DurableSeq = 0
			}
			st.Learner = resp.Learner
			if resp.DurableSeq > st.DurableSeq {
				st.DurableSeq = resp.DurableSeq
			}
			lr.mu.Unlock()
			if !resp.Learner && lr.voters[p.Name] {
				lr.commit.setMatch(p.Name, resp.DurableSeq)
			}
			mu.Lock()
			if resp.Gen == gen && resp.DurableSeq > acked {
				acked = resp.DurableSeq
			}
			mu.Unlock()
			kick()
		}
	}()

	hb := time.NewTimer(0)
	defer hb.Stop()
	heartbeatDue := true
	for {
		changed := r.wal.Changed()
		mu.Lock()
		n, g, a := next, gen, acked
		mu.Unlock()
		written := r.wal.WrittenSeq()
		// A follower that lacks frames this WAL no longer holds restarts at
		// this WAL's base (they were committed; retention trimmed them).
		rebase := false
		if base, baseEpoch := r.wal.Base(); n < base {
			mu.Lock()
			if gen == g {
				next, acked = base, 0
			}
			mu.Unlock()
			n, rebase = base, true
			_ = baseEpoch
		}
		var frames []Frame
		inflight := uint64(0)
		if n-1 > a {
			inflight = n - 1 - a
		}
		if n <= written && inflight < r.cfg.MaxInflight {
			frames, err = r.wal.ReadFrames(n, written, int(r.cfg.MaxInflight-inflight), r.cfg.MaxBatchBytes)
			if err != nil {
				return fmt.Errorf("walrepl: reading frames for %s at Seq=%d: %w", p.Name, n, err)
			}
		}
		if len(frames) > 0 || heartbeatDue {
			prevEpoch, _ := r.wal.EpochAt(n - 1)
			req := &AppendRequest{Epoch: lr.epoch, Leader: r.cfg.Name, Gen: g, PrevSeq: n - 1, PrevEpoch: prevEpoch,
				SafeSeq: max(lr.commit.committed(), r.wal.SafeSeq()), Frames: frames, Rebase: rebase, EpochStarted: lr.isStarted()}
			if err := s.Send(req); err != nil {
				return err
			}
			mu.Lock()
			if gen == g {
				next = n + uint64(len(frames))
			}
			mu.Unlock()
			heartbeatDue = false
			if !hb.Stop() {
				select {
				case <-hb.C:
				default:
				}
			}
			hb.Reset(r.cfg.HeartbeatInterval)
			if len(frames) > 0 {
				continue
			}
		}
		select {
		case <-changed:
		case <-wake:
		case <-hb.C:
			heartbeatDue = true
		case <-sctx.Done():
			err := context.Cause(sctx)
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}
	}
}
