package walrepl

import (
	"fmt"
	"slices"
	"time"

	"github.com/sirupsen/logrus"
)

// The phases of one epoch of this node's leadership.
type leadPhase int

const (
	phaseSelfSync  leadPhase = iota + 1 // own promise made; waiting for its own tail's fsync
	phasePromise                        // asking the voters for promises (DESIGN §6 rules 3, 13)
	phaseFetch                          // fetching the best tail's frames this log lacks
	phaseAdoptSync                      // adopted; waiting for the fsync of the adopted tail
	phaseLeading                        // barrier appended; streaming, counting, serving once started
)

// leadState is one epoch of this node's candidacy and leadership.
type leadState struct {
	epoch    uint64
	voters   map[string]bool
	peers    map[string]*peerState
	order    []string // peers in the order given
	phase    leadPhase
	began    time.Duration
	deadline time.Duration // of the current candidate phase

	self      *PromiseResponse
	got       []*PromiseResponse
	count     int // promising voters that are not learners, this node included
	confirmed int // of which confirmed since their restart (rule 13)
	learners  int
	best      *PromiseResponse
	fetchNext uint64
	fetched   []Frame
	rebase    bool
	match     uint64

	barrier      uint64
	started      bool
	commit       uint64
	matchOf      map[string]uint64 // voter → fsynced Seq that matches this log
	lastQuorumOK time.Duration
	quorumOK     bool
	draining     bool
	nextConn     *uint64
}

// peerState is the leader's view of one other node.
type peerState struct {
	peer Peer
	// Promise round.
	answered, givenUp bool
	inflight          bool
	retryAt           time.Duration
	// Append stream.
	conn      uint64 // current stream; 0 while none
	dialing   bool
	sending   bool // an append is with the caller, not yet reported sent
	redialAt  time.Duration
	backoff   time.Duration
	warned    bool
	next      uint64 // next Seq to send
	acked     uint64 // highest Seq acked on the current generation
	gen       uint64
	lastSent  time.Duration
	walID     [16]byte
	retired   map[[16]byte]bool // WAL ids it replaced: their acks never count again
	learner   bool
	durable   uint64
	heard     time.Duration
	heardOnce bool
	connected bool
	err       string
}

// campaign makes this node the candidate of epoch (the etcd election gave
// it the token): it promises epoch itself and, once its own tail is fsynced,
// asks the voters. The outcome is an evLeadEnded event, or leadership.
//
// The only voter is alone: a learner then has no one to catch up from, and
// its reset already accepted the loss, so it becomes a voter.
func (c *core) campaign(epoch uint64, voters []string, peers []Peer, conns *uint64) {
	end := func(err error) { c.emit(coreEvent{kind: evLeadEnded, epoch: epoch, err: err}) }
	if c.failed != nil {
		end(c.failed)
		return
	}
	if ld := c.ld; ld != nil {
		c.endLead(fmt.Errorf("%w: a new candidacy for epoch %d began", ErrNotLeader, epoch))
	}
	ld := &leadState{epoch: epoch, voters: map[string]bool{}, peers: map[string]*peerState{}, began: c.now, nextConn: conns}
	for _, v := range voters {
		ld.voters[v] = true
	}
	if !ld.voters[c.name] {
		end(fmt.Errorf("walrepl: %s is not among the voters %v and cannot lead", c.name, voters))
		return
	}
	alone := len(ld.voters) == 1
	if c.st.Learner && alone {
		c.st.Learner, c.st.LearnerUntil = false, 0
		c.persist()
		c.log.Warn("WAL_LEARNER_PROMOTED: single-voter cluster, nothing to catch up from")
	}
	if c.st.Learner {
		end(ErrIsLearner)
		return
	}
	if epoch <= c.st.PromisedEpoch {
		end(fmt.Errorf("%w: epoch %d, promised %d", ErrStaleEpoch, epoch, c.st.PromisedEpoch))
		return
	}
	c.st.PromisedEpoch = epoch
	c.persist()
	for _, p := range peers {
		ld.peers[p.Name] = &peerState{peer: p, backoff: 20 * time.Millisecond}
		ld.order = append(ld.order, p.Name)
	}
	c.role, c.epoch, c.leader, c.matched = RoleCandidate, epoch, c.name, 0
	if alone {
		c.confirmed = true // no other copy exists to be missing from
	}
	ld.phase, ld.deadline = phaseSelfSync, c.now+c.cfg.PromiseTimeout
	c.ld = ld
	c.candidateAdvance()
}

// abdicate ends epoch's candidacy or leadership at the caller's request
// (it lost the etcd election, or is stopping).
func (c *core) abdicate(epoch uint64, cause error) {
	if c.ld != nil && c.ld.epoch == epoch {
		c.endLead(cause)
	}
}

// endLead ends this node's candidacy or leadership with cause.
func (c *core) endLead(cause error) {
	ld := c.ld
	if ld == nil {
		return
	}
	c.ld = nil
	for _, name := range ld.order {
		if p := ld.peers[name]; p.conn != 0 {
			c.send(outMsg{kind: msgClose, conn: p.conn})
		}
	}
	if c.role == RoleLeader || c.role == RoleCandidate {
		c.role = RoleFollower
		if c.st.Learner {
			c.role = RoleLearner
		}
	}
	if ld.phase == phaseLeading {
		c.log.WithFields(logrus.Fields{"epoch": ld.epoch, "cause": fmt.Sprint(cause)}).Warn("LEADER_STEPPED_DOWN")
	}
	c.emit(coreEvent{kind: evLeadEnded, epoch: ld.epoch, seq: ld.commit, err: cause})
}

// enough: a majority of voters promised, and either a majority of them is
// confirmed or every voter that is not a learner promised (DESIGN §6 rules
// 3 and 13).
//
// An unconfirmed node restarted and may run on an old copy of its disk: its
// tail can lack frames it acknowledged, so it cannot stand for them. Any
// majority that committed a frame meets a majority of confirmed promisers in
// a confirmed node, which holds the frame. With every voter promising, the
// frame's whole majority is asked, and one rolled-back disk among them
// leaves another copy. A learner lost its log (reset, new disk, detected
// rollback) and counts toward no commit: whatever it held is gone from it
// whether or not it answers. So a restart plus the leader's death before the
// restarted node was confirmed stalls elections until the leader returns; it
// never elects a leader without an acknowledged frame.
func (ld *leadState) enough() bool {
	need := len(ld.voters)/2 + 1
	return ld.count >= need && (ld.confirmed >= need || ld.count+ld.learners == len(ld.voters))
}

// candidateAdvance moves the candidacy on as far as its inputs allow.
func (c *core) candidateAdvance() {
	ld := c.ld
	switch ld.phase {
	case phaseSelfSync:
		if c.lv.durable < c.lv.last {
			return
		}
		ld.self = c.promiseAnswer(ld.epoch)
		ld.count = 1
		if !ld.self.Unconfirmed {
			ld.confirmed = 1
		}
		ld.phase = phasePromise
		for _, name := range ld.order {
			c.askPromise(ld.peers[name])
		}
		fallthrough
	case phasePromise:
		if !ld.enough() {
			return
		}
		ld.best = ld.self
		for _, p := range ld.got {
			if better(p.LastEpoch, p.LastSeq, ld.best.LastEpoch, ld.best.LastSeq) {
				ld.best = p
			}
		}
		if ld.best == ld.self {
			c.appendBarrier()
			return
		}
		self, best := ld.self, ld.best
		ld.match = matchPoint(self.Epochs, self.LastSeq, self.Base, self.BaseEpoch, best.Epochs, best.LastSeq, best.Base, best.BaseEpoch)
		ld.rebase = ld.match+1 < best.Base // best no longer holds what this node lacks (trimmed, committed)
		if ld.rebase {
			ld.match = best.Base - 1
		}
		ld.fetchNext = ld.match + 1
		ld.phase, ld.deadline = phaseFetch, c.now+c.cfg.PromiseTimeout
		c.fetchMore()
	case phaseFetch:
		// fetched frames arrive in recvFetchResp
	case phaseAdoptSync:
		if c.lv.durable < ld.best.LastSeq {
			return
		}
		c.log.WithFields(logrus.Fields{"epoch": ld.epoch, "from": ld.best.Node, "match_seq": ld.match, "tail_seq": ld.best.LastSeq}).
			Info("LEADER_ADOPTED_TAIL")
		c.appendBarrier()
	}
}

func (c *core) askPromise(p *peerState) {
	if p.answered || p.givenUp || p.inflight {
		return
	}
	p.inflight = true
	c.send(outMsg{kind: msgPromise, to: p.peer, promise: &PromiseRequest{Epoch: c.ld.epoch, Leader: c.name}})
}

// recvPromiseResp is a peer's answer to this node's promise request for epoch.
func (c *core) recvPromiseResp(epoch uint64, from Peer, resp *PromiseResponse) {
	ld := c.ld
	if ld == nil || ld.epoch != epoch {
		return
	}
	p := ld.peers[from.Name]
	if p == nil {
		return
	}
	p.inflight = false
	if ld.phase != phasePromise || p.answered || p.givenUp {
		return
	}
	if resp.Node != from.Name || resp.WALID == c.lv.id {
		// A misconfigured address that reaches another node, or this one:
		// counting it would count a node twice.
		c.log.WithFields(logrus.Fields{"peer": from.Name, "addr": from.Addr, "answered_as": resp.Node}).
			Error("REPL_PEER_IDENTITY_MISMATCH: the replication address does not reach that node; check --repl-addr")
		p.givenUp = true
		return
	}
	if !resp.OK {
		if resp.Promised > epoch {
			c.endLead(fmt.Errorf("%w: %s promised epoch %d", ErrDeposed, resp.Node, resp.Promised))
		}
		p.givenUp = true
		return
	}
	p.answered = true
	c.markHeard(p)
	p.learner = resp.Learner
	if !ld.voters[resp.Node] {
		return
	}
	switch {
	case resp.Learner:
		ld.learners++
	default:
		ld.got = append(ld.got, resp)
		ld.count++
		if !resp.Unconfirmed {
			ld.confirmed++
		}
	}
	c.candidateAdvance()
}

// promiseFailed: the promise request to from did not get through; it is
// asked again after RetryInterval.
func (c *core) promiseFailed(epoch uint64, from Peer) {
	ld := c.ld
	if ld == nil || ld.epoch != epoch {
		return
	}
	if p := ld.peers[from.Name]; p != nil {
		p.inflight = false
		p.retryAt = c.now + c.cfg.RetryInterval
	}
}

func (c *core) candidateTick() {
	ld := c.ld
	if ld.phase == phasePromise {
		for _, name := range ld.order {
			if p := ld.peers[name]; !p.inflight && c.now >= p.retryAt {
				c.askPromise(p)
			}
		}
	}
	if c.now < ld.deadline {
		return
	}
	switch ld.phase {
	case phaseSelfSync, phasePromise:
		need := len(ld.voters)/2 + 1
		if ld.count >= need {
			var unconfirmed []string
			if ld.self != nil && ld.self.Unconfirmed {
				unconfirmed = append(unconfirmed, c.name)
			}
			for _, p := range ld.got {
				if p.Unconfirmed {
					unconfirmed = append(unconfirmed, p.Node)
				}
			}
			c.log.WithFields(logrus.Fields{"epoch": ld.epoch, "promised": ld.count, "confirmed": ld.confirmed, "voters": len(ld.voters),
				"unconfirmed": unconfirmed}).
				Warn("LEADER_WAITING_FOR_CONFIRMED_VOTERS: restarted nodes may run on an old copy of their disk; an epoch needs a majority of confirmed voters or every voter")
			c.endLead(fmt.Errorf("%w: %d of %d voters promised epoch %d within %s, but only %d are confirmed since their restart (unconfirmed: %v); waiting for every voter or a confirmed majority",
				ErrNoQuorum, ld.count, len(ld.voters), ld.epoch, c.cfg.PromiseTimeout, ld.confirmed, unconfirmed))
			return
		}
		c.endLead(fmt.Errorf("%w: %d of %d voters promised epoch %d within %s", ErrNoQuorum, ld.count, len(ld.voters), ld.epoch, c.cfg.PromiseTimeout))
	case phaseFetch:
		c.endLead(fmt.Errorf("walrepl: fetching frames from %s at Seq=%d: no answer within %s", ld.best.Node, ld.fetchNext, c.cfg.PromiseTimeout))
	case phaseAdoptSync:
		c.endLead(fmt.Errorf("walrepl: the adopted tail up to Seq=%d was not fsynced within %s", ld.best.LastSeq, c.cfg.PromiseTimeout))
	}
}

func (c *core) fetchMore() {
	ld := c.ld
	c.send(outMsg{kind: msgFetch, to: ld.peers[ld.best.Node].peer,
		fetch: &FetchRequest{Epoch: ld.epoch, From: ld.fetchNext, MaxBytes: c.cfg.MaxBatchBytes}})
}

// recvFetchResp takes best's frames of the tail it promised (same Seqs, same
// epochs). Once all are in, adopt.
func (c *core) recvFetchResp(epoch uint64, resp *FetchResponse) {
	ld := c.ld
	if ld == nil || ld.epoch != epoch || ld.phase != phaseFetch {
		return
	}
	best := ld.best
	if !resp.OK {
		c.endLead(fmt.Errorf("%w: %s refused the fetch (promised %d)", ErrDeposed, best.Node, resp.Promised))
		return
	}
	if len(resp.Frames) == 0 {
		c.endLead(fmt.Errorf("walrepl: %s returned no frames at Seq=%d below its tail %d", best.Node, ld.fetchNext, best.LastSeq))
		return
	}
	frames := resp.Frames
	for i := range frames {
		f := &frames[i]
		if f.Seq > best.LastSeq {
			frames = frames[:i]
			break
		}
		if f.Seq != ld.fetchNext+uint64(i) || f.Epoch != epochAtIn(best.Epochs, f.Seq) {
			c.endLead(fmt.Errorf("walrepl: %s's log changed since it promised (frame Seq=%d epoch %d)", best.Node, f.Seq, f.Epoch))
			return
		}
	}
	ld.fetched = append(ld.fetched, frames...)
	ld.fetchNext += uint64(len(frames))
	if ld.fetchNext <= best.LastSeq {
		c.fetchMore()
		return
	}
	c.adopt()
}

// fetchFailed: the fetch did not get through; the candidacy ends (the next
// election retries with fresh promises).
func (c *core) fetchFailed(epoch uint64, err error) {
	ld := c.ld
	if ld == nil || ld.epoch != epoch || ld.phase != phaseFetch {
		return
	}
	c.endLead(fmt.Errorf("walrepl: fetching frames from %s at Seq=%d: %w", ld.best.Node, ld.fetchNext, err))
}

// adopt makes this log equal to best's: it drops its own divergent suffix
// (the log refuses to drop anything at or below safe_seq) and appends the
// fetched frames. It acts on this node's log as it is now: if it changed
// since the promise round (it cannot while the candidacy holds the
// promise; retention may have trimmed it), it refuses instead.
func (c *core) adopt() {
	ld := c.ld
	self, best := ld.self, ld.best
	if c.lv.last != self.LastSeq || c.lv.lastEpoch != self.LastEpoch || c.lv.base != self.Base || c.lv.baseEpoch != self.BaseEpoch {
		c.endLead(fmt.Errorf("walrepl: this node's log changed during the promise round for epoch %d (tail %d/%d, then %d/%d); not adopting",
			ld.epoch, self.LastEpoch, self.LastSeq, c.lv.lastEpoch, c.lv.last))
		return
	}
	switch {
	case ld.rebase:
		c.op(logOp{kind: opRebase, base: best.Base, prevEpoch: best.BaseEpoch})
	case ld.match < c.lv.last:
		c.op(logOp{kind: opTruncate, seq: ld.match})
	}
	if len(ld.fetched) > 0 {
		c.op(logOp{kind: opAppend, frames: ld.fetched})
		ld.fetched = nil
	}
	ld.phase, ld.deadline = phaseAdoptSync, c.now+c.cfg.PromiseTimeout
	c.candidateAdvance()
}

// appendBarrier appends the epoch-start frame and begins leading: streams
// to every peer, commit counting from the barrier on (Raft's Figure 8: a
// leader commits earlier epochs' frames only with a frame of its own).
func (c *core) appendBarrier() {
	ld := c.ld
	if c.st.PromisedEpoch != ld.epoch {
		c.endLead(fmt.Errorf("%w: promised epoch %d while a candidate for %d", ErrDeposed, c.st.PromisedEpoch, ld.epoch))
		return
	}
	f := Frame{Seq: c.lv.last + 1, Epoch: ld.epoch, Time: c.wall, Type: FrameEpochStart, Payload: epochStartPayload(c.name, ld.epoch)}
	c.op(logOp{kind: opAppend, frames: []Frame{f}})
	ld.barrier = f.Seq
	ld.matchOf = map[string]uint64{}
	for v := range ld.voters {
		ld.matchOf[v] = 0
	}
	ld.phase = phaseLeading
	ld.lastQuorumOK, ld.quorumOK = c.now, true
	c.role = RoleLeader
	for _, name := range ld.order {
		c.dial(ld.peers[name])
	}
	c.setMatch(c.name, c.lv.durable)
}

// ---- leading ----

func (c *core) dial(p *peerState) {
	ld := c.ld
	*ld.nextConn++
	p.conn, p.dialing = *ld.nextConn, true
	if p.peer.Addr == "" && !p.warned {
		c.log.WithFields(logrus.Fields{"peer": p.peer.Name, "epoch": ld.epoch}).
			Warn("REPL_PEER_UNREACHABLE: this voter has registered no replication address yet (a node registers its --repl-addr when it starts), so it counts toward no commit in this epoch; start that node, and a new epoch replicates to it once it has registered; if it will never come back, remove it: autonomyctl member remove <peer>")
		p.warned = true
	}
	c.send(outMsg{kind: msgDial, to: p.peer, conn: p.conn})
}

func (c *core) peerByConn(conn uint64) *peerState {
	if c.ld == nil || c.ld.phase != phaseLeading || conn == 0 {
		return nil
	}
	for _, p := range c.ld.peers {
		if p.conn == conn {
			return p
		}
	}
	return nil
}

// streamOpened: the stream conn to its peer is up. What the peer was known to
// hold is forgotten: this stream may reach a new process of it, perhaps on an
// old copy of its disk, which takes the safe_seq of the first started-epoch
// message as what it must hold to be confirmed (DESIGN §6 rule 13). No commit
// from now on counts an ack of an earlier stream (they are dropped by
// connection), and every commit before now is in that first message's
// safe_seq.
func (c *core) streamOpened(conn uint64) {
	p := c.peerByConn(conn)
	if p == nil {
		c.send(outMsg{kind: msgClose, conn: conn})
		return
	}
	p.dialing, p.connected, p.err = false, true, ""
	c.resetMatch(p.peer.Name)
	p.next, p.acked, p.gen, p.sending = c.lv.written+1, 0, 1, false
	p.lastSent = c.now - c.cfg.Heartbeat // a heartbeat at once
	c.pump(p)
}

// streamClosed: conn failed or ended; the peer is dialled again after a
// backoff.
func (c *core) streamClosed(conn uint64, err error) {
	p := c.peerByConn(conn)
	if p == nil {
		return
	}
	p.conn, p.dialing, p.connected, p.sending = 0, false, false, false
	if err != nil {
		p.err = err.Error()
		if !p.warned {
			c.log.WithFields(logrus.Fields{"peer": p.peer.Name, "addr": p.peer.Addr, "epoch": c.ld.epoch, "error": err.Error()}).
				Warn("REPL_PEER_UNREACHABLE")
			p.warned = true
		}
	}
	p.redialAt = c.now + p.backoff
	p.backoff = min(2*p.backoff, 500*time.Millisecond)
}

// recvAppendResp applies a follower's answer on stream conn.
func (c *core) recvAppendResp(conn uint64, resp *AppendResponse) {
	p := c.peerByConn(conn)
	if p == nil {
		return // an answer of an old stream counts for nothing
	}
	ld := c.ld
	c.markHeard(p)
	if resp.Error != "" {
		p.err = resp.Error
		return
	}
	if resp.Promised > ld.epoch || resp.Epoch > ld.epoch {
		c.endLead(fmt.Errorf("%w: %s follows epoch %d", ErrDeposed, p.peer.Name, max(resp.Promised, resp.Epoch)))
		return
	}
	if !resp.OK || resp.Epoch != ld.epoch {
		return // an answer meant for another epoch counts for nothing
	}
	if resp.WALID == c.lv.id {
		c.send(outMsg{kind: msgClose, conn: conn})
		c.streamClosed(conn, fmt.Errorf("walrepl: %s's replication address %s reaches this node itself", p.peer.Name, p.peer.Addr))
		return
	}
	if resp.Mismatch {
		if resp.Gen == p.gen {
			m := matchPoint(c.lv.epochs, c.lv.last, c.lv.base, c.lv.baseEpoch, resp.Epochs, resp.LastSeq, resp.Base, resp.BaseEpoch)
			p.next, p.acked = m+1, m
			p.gen++
		}
		c.pump(p)
		return
	}
	if p.retired[resp.WALID] {
		// An ack of a WAL this peer has since replaced (reset): what that WAL
		// held is gone, whatever it says (rule 7).
		return
	}
	if p.walID != resp.WALID {
		// A replaced log forgets what the old one held (rule 7), and the
		// old one never counts again.
		if p.walID != ([16]byte{}) {
			c.resetMatch(p.peer.Name)
			p.durable = 0
			if p.retired == nil {
				p.retired = map[[16]byte]bool{}
			}
			p.retired[p.walID] = true
		}
		p.walID = resp.WALID
	}
	if resp.Learner && !p.learner {
		// The same WAL restarted as a learner (a rolled-back disk): it no
		// longer holds what it acked before.
		c.resetMatch(p.peer.Name)
		p.durable = 0
	}
	p.learner = resp.Learner
	p.durable = max(p.durable, resp.DurableSeq)
	if !resp.Learner && ld.voters[p.peer.Name] {
		c.setMatch(p.peer.Name, resp.DurableSeq)
	}
	if resp.Gen == p.gen && resp.DurableSeq > p.acked {
		p.acked = resp.DurableSeq
	}
	c.pump(p)
}

// appendSent: the caller read count frames from first on for stream conn and
// handed them to it (generation gen).
func (c *core) appendSent(conn, gen, first uint64, count int) {
	p := c.peerByConn(conn)
	if p == nil {
		return
	}
	p.sending = false
	if gen == p.gen && p.next == first {
		p.next = first + uint64(count)
	}
	p.lastSent = c.now
	c.pump(p)
}

func (c *core) pumpAll() {
	for _, name := range c.ld.order {
		c.pump(c.ld.peers[name])
	}
}

// pump sends p what it lacks, within MaxInflight, or a heartbeat when due.
func (c *core) pump(p *peerState) {
	ld := c.ld
	if ld == nil || ld.phase != phaseLeading || p.conn == 0 || p.dialing || p.sending {
		return
	}
	// A follower that lacks frames this log no longer holds restarts at
	// this log's base (they were committed; retention trimmed them).
	rebase := false
	if p.next < c.lv.base {
		p.next, p.acked, rebase = c.lv.base, 0, true
	}
	inflight := uint64(0)
	if p.next-1 > p.acked {
		inflight = p.next - 1 - p.acked
	}
	maxFrames := 0
	if p.next <= c.lv.written && inflight < c.cfg.MaxInflight {
		maxFrames = int(c.cfg.MaxInflight - inflight)
	}
	if maxFrames == 0 && !rebase && c.now-p.lastSent < c.cfg.Heartbeat {
		return
	}
	prevEpoch, _ := c.lv.epochAt(p.next - 1)
	req := &AppendRequest{Epoch: ld.epoch, Leader: c.name, Gen: p.gen, PrevSeq: p.next - 1, PrevEpoch: prevEpoch,
		SafeSeq: max(ld.commit, c.lv.safe), Rebase: rebase, EpochStarted: ld.started}
	p.sending = true
	c.send(outMsg{kind: msgAppend, to: p.peer, conn: p.conn, req: req, maxFrames: maxFrames, limit: c.lv.written, truncs: c.lv.truncs})
}

func (c *core) markHeard(p *peerState) { p.heard, p.heardOnce = c.now, true }

// setMatch records that voter fsynced everything up to seq (matches only
// grow) and moves the commit point: the highest Seq a majority of voters
// fsynced, never below the barrier (DESIGN §6 rule 1).
func (c *core) setMatch(voter string, seq uint64) {
	ld := c.ld
	prev, ok := ld.matchOf[voter]
	if !ok || seq <= prev {
		return
	}
	ld.matchOf[voter] = seq
	vals := make([]uint64, 0, len(ld.matchOf))
	for _, v := range ld.matchOf {
		vals = append(vals, v)
	}
	slices.Sort(vals)
	q := vals[len(vals)-(len(vals)/2+1)]
	if q < ld.barrier || q <= ld.commit {
		return
	}
	ld.commit = q
	c.op(logOp{kind: opSafe, seq: q})
	c.emit(coreEvent{kind: evCommitted, epoch: ld.epoch, seq: q})
	if !ld.started {
		ld.started = true
		c.confirmed = true // this log holds everything committed: it just proved it
		var from string
		if ld.best != nil {
			from = ld.best.Node
		}
		c.log.WithFields(logrus.Fields{"epoch": ld.epoch, "barrier_seq": ld.barrier, "adopted_from": from,
			"took_ms": (c.now - ld.began).Milliseconds()}).Info("LEADER_EPOCH_STARTED")
	}
}

// resetMatch forgets what a voter was known to hold. The commit point never
// moves back; only future commits stop counting it.
func (c *core) resetMatch(voter string) {
	if _, ok := c.ld.matchOf[voter]; ok {
		c.ld.matchOf[voter] = 0
	}
}

// sinceHeard returns, per voter that is not a learner, how long ago it was
// last heard (0 for this node), sorted ascending. Voters never heard are
// absent.
func (c *core) sinceHeard() []time.Duration {
	var out []time.Duration
	for v := range c.ld.voters {
		if v == c.name {
			out = append(out, 0)
			continue
		}
		p := c.ld.peers[v]
		if p == nil || p.learner || !p.heardOnce {
			continue
		}
		out = append(out, c.now-p.heard)
	}
	slices.Sort(out)
	return out
}

// leaderTick sends due heartbeats, redials, and steps down when no majority
// has been heard for QuorumTimeout (DESIGN §6 rule 8).
func (c *core) leaderTick() {
	ld := c.ld
	for _, name := range ld.order {
		p := ld.peers[name]
		if p.conn == 0 && c.now >= p.redialAt {
			c.dial(p)
		}
		c.pump(p)
	}
	// A majority was last heard when the need-th most recently heard voter
	// was; before the epoch's first round, at the epoch's start.
	need := len(ld.voters)/2 + 1
	since := c.now - ld.lastQuorumOK
	if s := c.sinceHeard(); len(s) >= need && s[need-1] < since {
		since = s[need-1]
	}
	ld.quorumOK = since < c.cfg.QuorumTimeout
	if !ld.quorumOK {
		c.endLead(fmt.Errorf("%w: not heard within %s", ErrNoQuorum, c.cfg.QuorumTimeout))
	}
}

// propose appends payloads as frames of the started epoch (request id).
func (c *core) propose(id uint64, ts int64, payloads [][]byte) {
	ld := c.ld
	refuse := func(err error) { c.emit(coreEvent{kind: evProposed, id: id, err: err}) }
	switch {
	case c.failed != nil:
		refuse(c.failed)
	case ld == nil || ld.phase != phaseLeading:
		refuse(ErrNotLeader)
	case !ld.started:
		refuse(ErrEpochNotStarted)
	case ld.draining:
		refuse(fmt.Errorf("%w: handing leadership over", ErrNotLeader))
	case c.st.PromisedEpoch != ld.epoch:
		refuse(fmt.Errorf("%w: promised epoch %d, leading %d", ErrDeposed, c.st.PromisedEpoch, ld.epoch))
	default:
		frames := make([]Frame, len(payloads))
		for i, p := range payloads {
			frames[i] = Frame{Seq: c.lv.last + 1 + uint64(i), Epoch: ld.epoch, Time: ts, Type: FrameEvent, Payload: p}
		}
		c.op(logOp{kind: opAppend, frames: frames, checked: true})
		c.emit(coreEvent{kind: evProposed, id: id, epoch: ld.epoch, first: frames[0].Seq, last: c.lv.last, truncs: c.lv.truncs})
	}
}

// checkCommitWait answers whether a wait for seq's commit may begin (the
// leader of a started epoch, seq in the log): ok, with the epoch in ev.epoch.
func (c *core) checkCommitWait(id, seq uint64) {
	ld := c.ld
	switch {
	case ld == nil || ld.phase != phaseLeading:
		c.reply(id, false, ErrNotLeader)
	case !ld.started:
		c.reply(id, false, ErrEpochNotStarted)
	case seq > c.lv.last:
		c.reply(id, false, fmt.Errorf("walrepl: Seq=%d is beyond the log (last %d)", seq, c.lv.last))
	default:
		c.emit(coreEvent{kind: evReply, id: id, ok: true, epoch: ld.epoch})
	}
}

// setDraining starts (or cancels) a planned handoff: while draining, the
// leader accepts no new writes, so the target can catch up to a fixed tail.
func (c *core) setDraining(id uint64, on bool) {
	if c.ld == nil || c.ld.phase != phaseLeading {
		c.reply(id, false, nil)
		return
	}
	c.ld.draining = on
	c.reply(id, true, nil)
}

// serving: this node leads a started epoch that can commit (a majority
// heard) and is not handing over.
func (c *core) serving() bool {
	ld := c.ld
	return ld != nil && ld.phase == phaseLeading && ld.started && ld.quorumOK && !ld.draining
}

func (c *core) epochStartSeq() uint64 {
	if c.ld == nil || c.ld.phase != phaseLeading {
		return 0
	}
	return c.ld.barrier
}

func (ld *leadState) fillStatus(c *core, s *ReplicaStatus) {
	s.EpochStarted = ld.started
	s.QuorumSize = len(ld.voters)/2 + 1
	for _, since := range c.sinceHeard() {
		if since < c.cfg.QuorumTimeout {
			s.Healthy++
		}
	}
	s.QuorumOK = s.Healthy >= s.QuorumSize
	for _, name := range ld.order {
		p := ld.peers[name]
		st := PeerStatus{Name: name, Connected: p.connected, Learner: p.learner, DurableSeq: p.durable, Error: p.err}
		if p.walID != ([16]byte{}) {
			st.WALID = IDString(p.walID)
		}
		if p.heardOnce {
			st.Heard, st.SinceHeard = true, c.now-p.heard
		}
		if m := ld.matchOf[name]; m > st.DurableSeq {
			st.DurableSeq = m
		}
		s.Peers = append(s.Peers, st)
	}
}
