package walrepl

import (
	"context"
	"fmt"
	"sync"

	"github.com/sirupsen/logrus"
)

// acceptEpochLocked applies DESIGN §6 rule 2 to a message of epoch from
// leader: it refuses a smaller epoch, and for a larger one persists the
// promise before anything else happens. A leader of an older epoch on this
// node is deposed. logMu must be held.
func (r *Replica) acceptEpochLocked(epoch uint64, leader string) (ok bool, promised uint64, err error) {
	promised = r.promised()
	if epoch < promised {
		return false, promised, nil
	}
	if err := r.promiseLocked(epoch); err != nil {
		return false, promised, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lead != nil && r.lead.epoch < epoch {
		r.lead.cancel(fmt.Errorf("%w: %s leads epoch %d", ErrDeposed, leader, epoch))
		r.lead = nil
	}
	if r.candidate != nil && r.candidate.epoch < epoch {
		r.candidate.cancel(fmt.Errorf("%w: promised epoch %d to %s while a candidate", ErrDeposed, epoch, leader))
	}
	if r.epoch != epoch || r.leader != leader {
		r.epoch, r.leader, r.matched, r.leaderSafe = epoch, leader, 0, 0
	}
	if r.role != RoleLeader || r.epoch != epoch {
		r.role = RoleFollower
		if r.st.Learner {
			r.role = RoleLearner
		}
	}
	return true, epoch, nil
}

// HandlePromise answers a new leader's promise request (DESIGN §6 rules 2, 3).
func (r *Replica) HandlePromise(ctx context.Context, req *PromiseRequest) *PromiseResponse {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	if req.Leader == r.cfg.Name {
		// Another node believes it is this one, or this node reached itself.
		return &PromiseResponse{OK: false, Node: r.cfg.Name, Promised: r.promised(), WALID: r.wal.ID()}
	}
	ok, promised, err := r.acceptEpochLocked(req.Epoch, req.Leader)
	if err != nil || !ok {
		return &PromiseResponse{OK: false, Node: r.cfg.Name, Promised: promised}
	}
	last, lastEpoch, epochs, err := r.tailLocked(ctx)
	if err != nil {
		return &PromiseResponse{OK: false, Node: r.cfg.Name, Promised: promised}
	}
	r.mu.Lock()
	learner, unconfirmed := r.st.Learner, !r.confirmed
	r.mu.Unlock()
	r.log.WithFields(logrus.Fields{"epoch": req.Epoch, "leader": req.Leader, "last_seq": last, "last_epoch": lastEpoch}).
		Info("PROMISED_EPOCH")
	base, baseEpoch := r.wal.Base()
	return &PromiseResponse{OK: true, Node: r.cfg.Name, Promised: req.Epoch, WALID: r.wal.ID(), Learner: learner, Unconfirmed: unconfirmed,
		LastSeq: last, LastEpoch: lastEpoch, SafeSeq: r.wal.SafeSeq(), Epochs: epochs, Base: base, BaseEpoch: baseEpoch}
}

// HandleFetch serves frames of this node's log to the leader of the promised
// epoch, which is adopting this node's tail.
func (r *Replica) HandleFetch(ctx context.Context, req *FetchRequest) *FetchResponse {
	// Under logMu and only for the epoch promised: the log cannot change
	// between the promise and the fetch without the fetch seeing it.
	r.logMu.Lock()
	defer r.logMu.Unlock()
	if p := r.promised(); req.Epoch != p {
		return &FetchResponse{OK: false, Promised: p}
	}
	maxBytes := req.MaxBytes
	if maxBytes <= 0 || maxBytes > 16<<20 {
		maxBytes = 1 << 20
	}
	frames, err := r.wal.ReadFrames(req.From, r.wal.WrittenSeq(), 1<<20, maxBytes)
	if err != nil {
		return &FetchResponse{OK: false, Promised: r.promised()}
	}
	// Copy payloads: the buffer is reused by nothing, but callers may keep them.
	return &FetchResponse{OK: true, Promised: r.promised(), Frames: frames}
}

// HandleStream serves a leader's append stream: it checks every batch
// continues this log (DESIGN §6 rule 4), appends it, and acknowledges
// cumulatively once fsynced. Acks carry min(fsynced, matched), the highest
// Seq known both durable here and equal to the leader's log.
func (r *Replica) HandleStream(ctx context.Context, s ServerStream) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		sendMu sync.Mutex
		epoch  uint64 // epoch of the last request on this stream
		gen    uint64
	)
	send := func(resp *AppendResponse) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return s.Send(resp)
	}
	// The acker sends an ack whenever the durable, matched Seq grows, and
	// one for every heartbeat so the leader keeps hearing this node.
	hbCh := make(chan struct{}, 1)
	ackDone := make(chan struct{})
	go func() {
		defer close(ackDone)
		var lastAck uint64
		for {
			ch := r.wal.Changed()
			r.mu.Lock()
			matched, e, learner := r.matched, r.epoch, r.st.Learner
			r.mu.Unlock()
			_, _, durable, _ := r.wal.Positions()
			ack := min(matched, durable)
			hb := false
			select {
			case <-hbCh:
				hb = true
			default:
			}
			sendMu.Lock()
			g, se := gen, epoch
			sendMu.Unlock()
			// Acks are only for the leader this node follows: matched is a
			// position in that leader's log. A stream of an older epoch is
			// told the newer one instead, which deposes its leader.
			switch {
			case se != 0 && se < e && hb:
				if err := send(&AppendResponse{Epoch: se, Gen: g, OK: false, Promised: r.promised()}); err != nil {
					cancel()
					return
				}
			case se != 0 && se == e && (ack > lastAck || hb):
				if err := send(&AppendResponse{Epoch: e, Gen: g, OK: true, DurableSeq: ack, Learner: learner, WALID: r.wal.ID()}); err != nil {
					cancel()
					return
				}
				lastAck = ack
			}
			if err := r.wal.Err(); err != nil {
				send(&AppendResponse{Epoch: e, Error: err.Error()})
				cancel()
				return
			}
			select {
			case <-ch:
			case <-hbCh:
				select {
				case hbCh <- struct{}{}:
				default:
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	defer func() { cancel(); <-ackDone }()

	for {
		req, err := s.Recv()
		if err != nil {
			return err
		}
		resp, err := r.applyAppend(req)
		if err != nil {
			send(&AppendResponse{Epoch: req.Epoch, Error: err.Error()})
			return err
		}
		sendMu.Lock()
		epoch, gen = req.Epoch, req.Gen
		sendMu.Unlock()
		if resp != nil {
			if err := send(resp); err != nil {
				return err
			}
			continue
		}
		select {
		case hbCh <- struct{}{}:
		default:
		}
	}
}

// applyAppend applies one append message. It returns a response to send at
// once (a refusal or a mismatch), nil when the acker will acknowledge, or an
// error that is fatal for this WAL.
func (r *Replica) applyAppend(req *AppendRequest) (*AppendResponse, error) {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	if req.Leader == r.cfg.Name {
		return nil, fmt.Errorf("walrepl: an append stream claims to come from this node (%s); check --repl-addr of the peers", r.cfg.Name)
	}
	ok, promised, err := r.acceptEpochLocked(req.Epoch, req.Leader)
	if err != nil {
		return nil, err
	}
	if !ok {
		return &AppendResponse{Epoch: req.Epoch, Gen: req.Gen, OK: false, Promised: promised}, nil
	}
	last, _, _, _ := r.wal.Positions()
	mismatch := func() *AppendResponse {
		base, baseEpoch := r.wal.Base()
		return &AppendResponse{Epoch: req.Epoch, Gen: req.Gen, OK: true, Mismatch: true, LastSeq: last, Epochs: r.wal.Epochs(),
			Base: base, BaseEpoch: baseEpoch, WALID: r.wal.ID()}
	}
	prevOK := req.PrevSeq <= last
	if prevOK && req.PrevSeq > 0 {
		e, known := r.wal.EpochAt(req.PrevSeq)
		base, _ := r.wal.Base()
		// Below this log's base every frame is committed: it matches.
		prevOK = e == req.PrevEpoch || (!known && req.PrevSeq < base)
	}
	if !prevOK && req.Rebase {
		// The leader no longer holds what this log lacks: restart the log at
		// the leader's base (everything below it is committed).
		if err := r.wal.Rebase(req.PrevSeq+1, req.PrevEpoch); err != nil {
			return nil, err
		}
		last, prevOK = req.PrevSeq, true
	}
	if !prevOK {
		return mismatch(), nil
	}
	// Prev matches. Skip frames this log already holds identically; at the
	// first conflict drop this log's divergent suffix.
	frames := req.Frames
	for len(frames) > 0 && frames[0].Seq <= last {
		e, _ := r.wal.EpochAt(frames[0].Seq)
		if e == frames[0].Epoch {
			frames = frames[1:]
			continue
		}
		if err := r.wal.TruncateAfter(frames[0].Seq - 1); err != nil {
			return nil, err
		}
		last = frames[0].Seq - 1
		break
	}
	if len(frames) > 0 {
		if err := r.wal.AppendFrames(frames); err != nil {
			return nil, err
		}
	}
	matched := req.PrevSeq + uint64(len(req.Frames))
	safe := min(req.SafeSeq, matched)
	r.mu.Lock()
	if matched > r.matched {
		r.matched = matched
	}
	if req.SafeSeq > r.leaderSafe {
		r.leaderSafe = req.SafeSeq
	}
	r.leaderHeard = r.cfg.Clock.Now()
	st := r.st
	r.mu.Unlock()
	r.wal.SetSafeSeq(safe)
	if !req.EpochStarted {
		return nil, nil // its SafeSeq may lag what was committed before it
	}
	r.updateConfirmed(req.SafeSeq)
	return nil, r.updateLearnerLocked(st, req.SafeSeq)
}

// updateConfirmed confirms this node's log after a restart (DESIGN §6 rule
// 13): the first leader of a started epoch heard since the restart fixes the
// safe_seq it must hold; holding it durably, in a log that matches the
// leader's, makes this node stand for its tail in promise rounds again.
// logMu must be held.
func (r *Replica) updateConfirmed(leaderSafe uint64) {
	_, _, durable, _ := r.wal.Positions()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.confirmed {
		return
	}
	if r.confirmUntil == 0 {
		r.confirmUntil = max(leaderSafe, 1)
	}
	if have := min(r.matched, durable); have >= r.confirmUntil {
		r.confirmed = true
		r.log.WithFields(logrus.Fields{"holds": have, "leader": r.leader, "epoch": r.epoch}).
			Info("REPL_CONFIRMED: a leader confirmed this log since the restart; it counts in promise rounds again")
	}
}

// updateLearnerLocked moves a learner toward voter: the first leader contact
// fixes the safe_seq it must reach; holding it durably (and matching the
// leader) makes it a voter again (DESIGN §6 rule 7). logMu must be held.
func (r *Replica) updateLearnerLocked(st promiseState, leaderSafe uint64) error {
	if !st.Learner {
		return nil
	}
	changed := false
	if st.LearnerUntil == 0 {
		st.LearnerUntil, changed = max(leaderSafe, 1), true
	}
	r.mu.Lock()
	matched := r.matched
	r.mu.Unlock()
	_, _, durable, _ := r.wal.Positions()
	if st.LearnerUntil > 0 && min(matched, durable) >= st.LearnerUntil {
		st.Learner, st.LearnerUntil, changed = false, 0, true
		r.log.WithField("caught_up_to", min(matched, durable)).Warn("WAL_LEARNER_CAUGHT_UP: this node counts toward majorities again")
	}
	if !changed {
		return nil
	}
	if err := saveState(r.wal.Dir(), st); err != nil {
		return fmt.Errorf("walrepl: persisting learner state: %w", err)
	}
	r.mu.Lock()
	r.st = st
	if !st.Learner && r.role == RoleLearner {
		r.role = RoleFollower
	}
	r.mu.Unlock()
	return nil
}
