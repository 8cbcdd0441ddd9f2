package walrepl

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/sirupsen/logrus"
)

// core is one node's replication protocol as a deterministic state machine,
// in the shape of etcd's raft: inputs are method calls (messages, ticks, and
// completions of the log's writes and fsyncs), outputs accumulate in a ready
// that the caller drains and performs (persist the promise, change the log,
// deliver local results, send messages), in that order.
//
// The core holds no lock, starts no goroutine and does no I/O. Every protocol
// decision — promise, takeover, adoption, barrier, match and durable
// positions, commit accounting, learners, confirmation, step-down — is taken
// here, on state that nothing else changes between the decision and the
// action. The Replica (driver.go) runs it on one goroutine; the simulator
// runs many of them in one.
//
// What the core knows of its log is a view (logView) it updates itself as it
// orders writes, plus the progress the caller reports (written, durable,
// base after retention, failure). Frames' payloads pass through the core only
// when they enter the log; to send frames, the core names a range and the
// caller reads it from the log.
type core struct {
	name string
	cfg  coreConfig
	log  logrus.FieldLogger

	now  time.Duration // monotonic time of the last tick
	wall int64         // wall clock at the last tick: frame timestamps only

	st     promiseState // as persisted, or as rd.state is about to persist it
	lv     logView
	failed error // the log or the state file failed: this node takes no part

	role   string
	epoch  uint64 // epoch followed or led
	leader string

	// Follower state.
	matched uint64 // highest Seq known to match the leader's log
	// confirmed: since this process started, a leader of a started epoch
	// saw this log hold everything committed (confirmUntil, the first
	// safe_seq such a leader sent), or this node started an epoch itself.
	// Until then it may be a rolled-back disk (DESIGN §6 rule 13).
	confirmed    bool
	confirmUntil uint64
	leaderSafe   uint64
	leaderHeard  time.Duration
	heardLeader  bool
	conns        map[uint64]*serverConn // append streams served, by connection
	promiseWait  []promiseWaiter        // promise answers waiting for the tail's fsync

	ld *leadState // this node's candidacy or leadership; nil otherwise

	rd ready
}

type coreConfig struct {
	Heartbeat      time.Duration
	QuorumTimeout  time.Duration
	PromiseTimeout time.Duration
	RetryInterval  time.Duration // promise retries, stream redials (first backoff)
	MaxBatchBytes  int
	MaxInflight    uint64
}

// logView is the core's knowledge of its own log.
type logView struct {
	id              [16]byte
	base, baseEpoch uint64 // first retained Seq; epoch of frame base-1
	last, lastEpoch uint64
	epochs          []EpochStart
	written         uint64 // readable (ReadFrames) up to here
	durable         uint64 // fsynced up to here
	safe            uint64 // safe_seq as ordered (only grows)
	truncs          uint64 // truncations and rebases ordered (the WAL counts those it made)
}

// epochAt mirrors WAL.EpochAt.
func (l *logView) epochAt(seq uint64) (uint64, bool) {
	if seq > 0 && seq == l.base-1 {
		return l.baseEpoch, true
	}
	if seq < l.base || seq > l.last {
		return 0, false
	}
	return epochAtIn(l.epochs, seq), true
}

func (l *logView) appended(frames []Frame) {
	for i := range frames {
		f := &frames[i]
		if len(l.epochs) == 0 || l.epochs[len(l.epochs)-1].Epoch != f.Epoch {
			l.epochs = append(l.epochs, EpochStart{Epoch: f.Epoch, FirstSeq: f.Seq})
		}
		l.last, l.lastEpoch = f.Seq, f.Epoch
	}
}

func (l *logView) truncatedAfter(seq uint64) {
	if seq >= l.last {
		return // the WAL makes no truncation either
	}
	l.truncs++
	l.lastEpoch, _ = l.epochAt(seq)
	if seq < l.base {
		l.lastEpoch = l.baseEpoch
	}
	i, _ := slices.BinarySearchFunc(l.epochs, seq+1, func(e EpochStart, s uint64) int {
		switch {
		case e.FirstSeq < s:
			return -1
		case e.FirstSeq > s:
			return 1
		}
		return 0
	})
	l.epochs = l.epochs[:i]
	l.last = seq
	l.written, l.durable = min(l.written, seq), min(l.durable, seq)
}

func (l *logView) rebased(base, prevEpoch uint64) {
	l.truncs++
	l.base, l.baseEpoch = base, prevEpoch
	l.last, l.lastEpoch, l.epochs = base-1, prevEpoch, nil
	l.written, l.durable = base-1, base-1
	l.safe = max(l.safe, base-1)
}

// serverConn is an append stream this node serves as a follower.
type serverConn struct {
	epoch, gen uint64 // of the last request on it
	lastAck    uint64
	ackDue     bool // a heartbeat wants an answer even if nothing moved
}

type promiseWaiter struct {
	token uint64
	epoch uint64
}

// ready is what the caller must do, in this order: persist state (fsync),
// apply ops to the log, deliver events, send msgs.
type ready struct {
	state  *promiseState
	ops    []logOp
	events []coreEvent
	msgs   []outMsg
}

func (rd *ready) empty() bool {
	return rd.state == nil && len(rd.ops) == 0 && len(rd.events) == 0 && len(rd.msgs) == 0
}

type logOpKind int

const (
	opAppend   logOpKind = iota + 1 // frames continue the log
	opTruncate                      // drop every frame above seq
	opRebase                        // restart the log empty at base
	opSafe                          // raise safe_seq to seq
)

type logOp struct {
	kind   logOpKind
	frames []Frame
	// checked: the frames' payloads passed WAL.CheckPayloads before they were
	// proposed (a leader's events), so the append need not validate them again.
	checked   bool
	seq       uint64
	base      uint64
	prevEpoch uint64
}

type eventKind int

const (
	evProposed  eventKind = iota + 1 // a Propose's frames are in the log (or refused: err)
	evReply                          // an answer to a local request (id, err, ok)
	evCommitted                      // the epoch's commit point moved to seq
	evLeadEnded                      // the candidacy or leadership of epoch ended with err
)

type coreEvent struct {
	kind   eventKind
	truncs uint64 // evProposed: the log's truncation count right after the append
	id     uint64
	epoch  uint64
	first  uint64
	last   uint64
	seq    uint64
	ok     bool
	err    error
}

type msgKind int

const (
	msgPromise     msgKind = iota + 1 // candidate → peer: PromiseRequest
	msgPromiseResp                    // answer to token
	msgFetch                          // candidate → best: FetchRequest
	msgFetchResp                      // answer to token; frames read by the caller when OK
	msgDial                           // leader: open an append stream to peer as conn
	msgClose                          // leader: close stream conn
	msgAppend                         // leader: on conn, frames from Prev+1 (read by the caller), then report appendSent
	msgAppendResp                     // follower: answer on served conn
	msgServerClose                    // follower: end served conn
)

type outMsg struct {
	kind  msgKind
	to    Peer
	conn  uint64
	token uint64

	promise     *PromiseRequest
	promiseResp *PromiseResponse
	fetch       *FetchRequest
	fetchResp   *FetchResponse
	// msgFetchResp with OK: frames from..written, at most maxBytes.
	from     uint64
	limit    uint64
	maxBytes int
	// truncs: the log's truncation count when the core named the frames to
	// read (msgAppend, msgFetchResp). If the log has truncated since (a
	// later input of the same batch ordered it), the frames there are no
	// longer the ones meant: the caller must not send them.
	truncs uint64
	// msgAppend: req has every field but Frames. With maxFrames > 0 the
	// caller reads up to maxFrames frames from req.PrevSeq+1 to limit.
	req       *AppendRequest
	maxFrames int
	resp      *AppendResponse
	err       error
}

func newCore(name string, cfg coreConfig, log logrus.FieldLogger, st promiseState, lv logView, confirmed bool) *core {
	c := &core{name: name, cfg: cfg, log: log, st: st, lv: lv, confirmed: confirmed, role: RoleFollower,
		conns: map[uint64]*serverConn{}}
	if st.Learner {
		c.role = RoleLearner
	}
	return c
}

// takeReady returns what the caller must now do and starts a new ready.
func (c *core) takeReady() ready {
	rd := c.rd
	c.rd = ready{}
	return rd
}

func (c *core) persist() {
	st := c.st
	c.rd.state = &st
}

func (c *core) op(o logOp) {
	switch o.kind {
	case opAppend:
		c.lv.appended(o.frames)
	case opTruncate:
		c.lv.truncatedAfter(o.seq)
	case opRebase:
		c.lv.rebased(o.base, o.prevEpoch)
	case opSafe:
		if o.seq <= c.lv.safe {
			return
		}
		c.lv.safe = o.seq
	}
	c.rd.ops = append(c.rd.ops, o)
}

func (c *core) send(m outMsg)    { c.rd.msgs = append(c.rd.msgs, m) }
func (c *core) emit(e coreEvent) { c.rd.events = append(c.rd.events, e) }
func (c *core) reply(id uint64, ok bool, err error) {
	c.emit(coreEvent{kind: evReply, id: id, ok: ok, err: err})
}

// ---- inputs: time and the log's progress ----

// tick advances time: heartbeats, retries, the promise deadline and the
// quorum watch (DESIGN §6 rule 8). now is monotonic; wall stamps frames.
func (c *core) tick(now time.Duration, wall int64) {
	c.now, c.wall = now, wall
	if ld := c.ld; ld != nil {
		if ld.phase == phaseLeading {
			c.leaderTick()
		} else {
			c.candidateTick()
		}
	}
}

// progress reports the log's positions as the caller last read them: what
// is readable and fsynced, the base (retention may have trimmed), how many
// truncations the log has made (truncs), and whether it failed.
//
// A report read before a truncation this core ordered was applied speaks of
// frames that are gone: "fsynced up to 6" may mean the old frame 6, not the
// new one appended after the truncation. Its positions are ignored until
// the log has made every truncation ordered (the simulator found this:
// a follower acknowledged a frame it had not fsynced).
func (c *core) progress(written, durable, base, baseEpoch, truncs uint64, err error) {
	if err != nil && c.failed == nil {
		c.fail(err)
		return
	}
	if truncs == c.lv.truncs {
		c.lv.written = min(max(c.lv.written, written), c.lv.last)
		c.lv.durable = min(max(c.lv.durable, durable), c.lv.last)
	}
	if base > c.lv.base {
		c.lv.base, c.lv.baseEpoch = base, baseEpoch
	}
	c.afterProgress()
}

// fail takes this node out of the protocol: its log or state file failed.
func (c *core) fail(err error) {
	c.failed = err
	if c.ld != nil {
		c.endLead(err)
	}
	for _, id := range slices.Sorted(maps.Keys(c.conns)) {
		c.send(outMsg{kind: msgAppendResp, conn: id, resp: &AppendResponse{Epoch: c.epoch, Error: err.Error()}})
		c.send(outMsg{kind: msgServerClose, conn: id, err: err})
		delete(c.conns, id)
	}
	for _, w := range c.promiseWait {
		c.send(outMsg{kind: msgPromiseResp, token: w.token, promiseResp: &PromiseResponse{OK: false, Node: c.name, Promised: c.st.PromisedEpoch}})
	}
	c.promiseWait = nil
}

func (c *core) afterProgress() {
	if c.failed != nil {
		return
	}
	if len(c.promiseWait) > 0 && c.lv.durable >= c.lv.last {
		for _, w := range c.promiseWait {
			if w.epoch == c.st.PromisedEpoch {
				c.send(outMsg{kind: msgPromiseResp, token: w.token, promiseResp: c.promiseAnswer(w.epoch)})
			} else {
				c.send(outMsg{kind: msgPromiseResp, token: w.token, promiseResp: &PromiseResponse{OK: false, Node: c.name, Promised: c.st.PromisedEpoch}})
			}
		}
		c.promiseWait = nil
	}
	if ld := c.ld; ld != nil {
		switch ld.phase {
		case phaseSelfSync, phaseAdoptSync:
			c.candidateAdvance()
		case phaseLeading:
			c.setMatch(c.name, c.lv.durable)
			c.pumpAll()
		}
	}
	c.flushAcks()
}

// ---- the promise (DESIGN §6 rules 2, 3) ----

// acceptEpoch refuses a smaller epoch; for a larger one it orders the promise
// persisted before anything else happens and deposes this node's own
// leadership or candidacy of an older epoch.
func (c *core) acceptEpoch(epoch uint64, leader string) bool {
	if epoch < c.st.PromisedEpoch {
		return false
	}
	if epoch > c.st.PromisedEpoch {
		c.st.PromisedEpoch = epoch
		c.persist()
	}
	if ld := c.ld; ld != nil && ld.epoch < epoch {
		if ld.phase == phaseLeading {
			c.endLead(fmt.Errorf("%w: %s leads epoch %d", ErrDeposed, leader, epoch))
		} else {
			c.endLead(fmt.Errorf("%w: promised epoch %d to %s while a candidate", ErrDeposed, epoch, leader))
		}
	}
	if c.epoch != epoch || c.leader != leader {
		// A new leader has not been heard yet: the silence of the old one
		// is not its silence (node's failure detector reads it).
		c.epoch, c.leader, c.matched, c.leaderSafe, c.heardLeader = epoch, leader, 0, 0, false
	}
	if c.ld == nil {
		c.role = RoleFollower
		if c.st.Learner {
			c.role = RoleLearner
		}
	}
	return true
}

func (c *core) promiseAnswer(epoch uint64) *PromiseResponse {
	return &PromiseResponse{OK: true, Node: c.name, Promised: epoch, WALID: c.lv.id, Learner: c.st.Learner, Unconfirmed: !c.confirmed,
		LastSeq: c.lv.last, LastEpoch: c.lv.lastEpoch, SafeSeq: c.lv.safe, Epochs: slices.Clone(c.lv.epochs),
		Base: c.lv.base, BaseEpoch: c.lv.baseEpoch}
}

// recvPromise answers a candidate's promise request (token names the reply).
// The tail is reported only once it is fsynced.
func (c *core) recvPromise(token uint64, req *PromiseRequest) {
	refuse := func() {
		c.send(outMsg{kind: msgPromiseResp, token: token, promiseResp: &PromiseResponse{OK: false, Node: c.name, Promised: c.st.PromisedEpoch, WALID: c.lv.id}})
	}
	if c.failed != nil || req.Leader == c.name {
		// Another node believes it is this one, or this node reached itself.
		refuse()
		return
	}
	if !c.acceptEpoch(req.Epoch, req.Leader) {
		refuse()
		return
	}
	// The candidate's request is a message from it: its silence counts
	// from here (node's failure detector reads SinceLeader).
	c.leaderHeard, c.heardLeader = c.now, true
	c.log.WithFields(logrus.Fields{"epoch": req.Epoch, "leader": req.Leader, "last_seq": c.lv.last, "last_epoch": c.lv.lastEpoch}).
		Info("PROMISED_EPOCH")
	if c.lv.durable >= c.lv.last {
		c.send(outMsg{kind: msgPromiseResp, token: token, promiseResp: c.promiseAnswer(req.Epoch)})
		return
	}
	c.promiseWait = append(c.promiseWait, promiseWaiter{token: token, epoch: req.Epoch})
}

// recvFetch serves frames to the candidate of the promised epoch, which is
// adopting this node's tail: only for that epoch, so the log cannot have
// changed since the promise without the candidate seeing it.
func (c *core) recvFetch(token uint64, req *FetchRequest) {
	if c.failed != nil || req.Epoch != c.st.PromisedEpoch {
		c.send(outMsg{kind: msgFetchResp, token: token, fetchResp: &FetchResponse{OK: false, Promised: c.st.PromisedEpoch}})
		return
	}
	maxBytes := req.MaxBytes
	if maxBytes <= 0 || maxBytes > 16<<20 {
		maxBytes = 1 << 20
	}
	c.send(outMsg{kind: msgFetchResp, token: token, fetchResp: &FetchResponse{OK: true, Promised: c.st.PromisedEpoch},
		from: req.From, limit: c.lv.written, maxBytes: maxBytes, truncs: c.lv.truncs})
}

// ---- the follower's append stream (DESIGN §6 rule 4) ----

// recvAppend applies one message of a leader's append stream served as conn.
func (c *core) recvAppend(conn uint64, req *AppendRequest) {
	sc := c.conns[conn]
	if sc == nil {
		sc = &serverConn{}
		c.conns[conn] = sc
	}
	fatal := func(err error) {
		c.send(outMsg{kind: msgAppendResp, conn: conn, resp: &AppendResponse{Epoch: req.Epoch, Error: err.Error()}})
		c.send(outMsg{kind: msgServerClose, conn: conn, err: err})
		delete(c.conns, conn)
	}
	if c.failed != nil {
		fatal(c.failed)
		return
	}
	if req.Leader == c.name {
		fatal(fmt.Errorf("walrepl: an append stream claims to come from this node (%s); check --repl-addr of the peers", c.name))
		return
	}
	if !c.acceptEpoch(req.Epoch, req.Leader) {
		c.send(outMsg{kind: msgAppendResp, conn: conn, resp: &AppendResponse{Epoch: req.Epoch, Gen: req.Gen, OK: false, Promised: c.st.PromisedEpoch}})
		return
	}
	for i := range req.Frames {
		if req.Frames[i].Epoch > req.Epoch {
			// A leader sends frames of its epoch or older: these were read
			// from a log that changed under the message.
			fatal(fmt.Errorf("walrepl: an append of epoch %d from %s carries frame Seq=%d of epoch %d; closing the stream",
				req.Epoch, req.Leader, req.Frames[i].Seq, req.Frames[i].Epoch))
			return
		}
	}
	sc.epoch, sc.gen = req.Epoch, req.Gen
	last := c.lv.last
	prevOK := req.PrevSeq <= last
	if prevOK && req.PrevSeq > 0 {
		e, known := c.lv.epochAt(req.PrevSeq)
		// Below this log's base every frame is committed: it matches.
		prevOK = e == req.PrevEpoch || (!known && req.PrevSeq < c.lv.base)
	}
	if !prevOK && req.Rebase {
		// The leader no longer holds what this log lacks: restart the log at
		// the leader's base (everything below it is committed).
		c.op(logOp{kind: opRebase, base: req.PrevSeq + 1, prevEpoch: req.PrevEpoch})
		last, prevOK = req.PrevSeq, true
	}
	if !prevOK {
		c.send(outMsg{kind: msgAppendResp, conn: conn, resp: &AppendResponse{Epoch: req.Epoch, Gen: req.Gen, OK: true, Mismatch: true,
			LastSeq: last, Epochs: slices.Clone(c.lv.epochs), Base: c.lv.base, BaseEpoch: c.lv.baseEpoch, WALID: c.lv.id}})
		return
	}
	// Prev matches. Skip frames this log already holds identically; at the
	// first conflict drop this log's divergent suffix (the log refuses to
	// drop anything at or below safe_seq, and fails closed).
	frames := req.Frames
	for len(frames) > 0 && frames[0].Seq <= last {
		if e, _ := c.lv.epochAt(frames[0].Seq); e == frames[0].Epoch {
			frames = frames[1:]
			continue
		}
		c.op(logOp{kind: opTruncate, seq: frames[0].Seq - 1})
		break
	}
	if len(frames) > 0 {
		c.op(logOp{kind: opAppend, frames: frames})
	}
	matched := req.PrevSeq + uint64(len(req.Frames))
	c.matched = max(c.matched, matched)
	c.leaderSafe = max(c.leaderSafe, req.SafeSeq)
	c.leaderHeard, c.heardLeader = c.now, true
	c.op(logOp{kind: opSafe, seq: min(req.SafeSeq, matched)})
	sc.ackDue = true
	if req.EpochStarted {
		// Only a started epoch's safe_seq covers everything committed
		// before it (DESIGN §6 rules 7 and 13).
		c.updateConfirmed(req.SafeSeq)
		c.updateLearner(req.SafeSeq)
	}
	c.flushAcks()
}

// serverClosed forgets a served stream.
func (c *core) serverClosed(conn uint64) { delete(c.conns, conn) }

// flushAcks acknowledges, on every stream of the followed epoch, the highest
// Seq both fsynced here and known to match the leader's log, when it grew or
// a heartbeat asked.
func (c *core) flushAcks() {
	ack := min(c.matched, c.lv.durable)
	for _, id := range slices.Sorted(maps.Keys(c.conns)) { // deterministic order
		sc := c.conns[id]
		switch {
		case sc.epoch == 0:
		case sc.epoch < c.epoch && sc.ackDue:
			c.send(outMsg{kind: msgAppendResp, conn: id, resp: &AppendResponse{Epoch: sc.epoch, Gen: sc.gen, OK: false, Promised: c.st.PromisedEpoch}})
		case sc.epoch == c.epoch && (ack > sc.lastAck || sc.ackDue):
			c.send(outMsg{kind: msgAppendResp, conn: id, resp: &AppendResponse{Epoch: c.epoch, Gen: sc.gen, OK: true, DurableSeq: ack,
				Learner: c.st.Learner, WALID: c.lv.id}})
			sc.lastAck = ack
		}
		sc.ackDue = false
	}
}

// updateConfirmed confirms this log after a restart (DESIGN §6 rule 13): the
// first leader of a started epoch heard since fixes the safe_seq it must
// hold; holding it durably, in a log that matches the leader's, makes this
// node stand for its tail in promise rounds again.
func (c *core) updateConfirmed(leaderSafe uint64) {
	if c.confirmed {
		return
	}
	if c.confirmUntil == 0 {
		c.confirmUntil = max(leaderSafe, 1)
	}
	if have := min(c.matched, c.lv.durable); have >= c.confirmUntil {
		c.confirmed = true
		c.log.WithFields(logrus.Fields{"holds": have, "leader": c.leader, "epoch": c.epoch}).
			Info("REPL_CONFIRMED: a leader confirmed this log since the restart; it counts in promise rounds again")
	}
}

// updateLearner moves a learner toward voter: the first leader contact fixes
// the safe_seq it must reach; holding it durably (and matching the leader)
// makes it a voter again (DESIGN §6 rule 7).
func (c *core) updateLearner(leaderSafe uint64) {
	if !c.st.Learner {
		return
	}
	changed := false
	if c.st.LearnerUntil == 0 {
		c.st.LearnerUntil, changed = max(leaderSafe, 1), true
	}
	if have := min(c.matched, c.lv.durable); have >= c.st.LearnerUntil {
		c.st.Learner, c.st.LearnerUntil, changed = false, 0, true
		c.log.WithField("caught_up_to", have).Warn("WAL_LEARNER_CAUGHT_UP: this node counts toward majorities again")
		if c.role == RoleLearner {
			c.role = RoleFollower
		}
	}
	if changed {
		c.persist()
	}
}

// ---- status ----

func (c *core) status() ReplicaStatus {
	s := ReplicaStatus{Role: c.role, Epoch: c.epoch, Leader: c.leader, Promised: c.st.PromisedEpoch, Learner: c.st.Learner,
		Unconfirmed: !c.confirmed, LearnerUntil: c.st.LearnerUntil, LeaderSafeSeq: c.leaderSafe}
	if c.heardLeader {
		s.SinceLeader = c.now - c.leaderHeard
	}
	if c.ld != nil {
		c.ld.fillStatus(c, &s)
	}
	return s
}
