package walrepl

// A seeded, single-threaded simulator of 3- and 5-node clusters of the real
// replication core (core.go, core_lead.go), in the manner of TigerBeetle's
// VOPR and FoundationDB's simulation: every step is chosen by the seed —
// which message is delivered, dropped or duplicated, partitions, crashes with
// and without the loss of unsynced writes, fsync stalls, frozen processes,
// rolled-back disks, operator resets, overlapping elections, retention and
// the rebases it forces, wall-clock steps — and the safety invariants are
// checked after every step. A failing seed replays to the same step.
//
// The disk is a model of the WAL's contract (simDisk): appends are readable
// at once and durable only at an fsync; a crash keeps the fsynced frames and
// perhaps some written after; truncating or rebasing below safe_seq is
// refused, as WAL.TruncateAfter and WAL.Rebase refuse; safe_seq persists
// lazily and never above the fsynced Seq (rule 5).

import (
	"bytes"
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// ---- the disk ----

type simDisk struct {
	id            [16]byte
	st            promiseState
	base          uint64
	baseEpoch     uint64
	frames        []Frame // Seq base, base+1, ...
	durable       uint64
	safe          uint64
	persistedSafe uint64
	truncs        uint64 // truncations and rebases made (WAL.truncs)
	failed        error
}

func newSimDisk(id [16]byte) *simDisk { return &simDisk{id: id, base: 1} }

func (d *simDisk) last() uint64 { return d.base - 1 + uint64(len(d.frames)) }

func (d *simDisk) frame(seq uint64) (Frame, bool) {
	if seq < d.base || seq > d.last() {
		return Frame{}, false
	}
	return d.frames[seq-d.base], true
}

func (d *simDisk) view() logView {
	lv := logView{id: d.id, base: d.base, baseEpoch: d.baseEpoch, last: d.last(), lastEpoch: d.baseEpoch,
		written: d.last(), durable: d.durable, safe: d.safe, truncs: d.truncs}
	lv.appended(d.frames)
	return lv
}

func (d *simDisk) clone() *simDisk {
	c := *d
	c.frames = slices.Clone(d.frames)
	return &c
}

// crash keeps what a crash keeps: the fsynced frames, and with lossy
// perhaps none of those written after (else all: the page cache survived a
// killed process). safe_seq comes back as persisted.
func (d *simDisk) crash(rng *rand.Rand, lossy bool) {
	keep := d.last()
	if lossy {
		keep = d.durable + uint64(rng.Intn(int(d.last()-d.durable)+1))
	}
	d.frames = d.frames[:keep-(d.base-1)]
	d.durable = keep
	d.safe = d.persistedSafe
}

// fsync makes everything written durable and persists safe_seq (never above
// the fsynced Seq: rule 5).
func (d *simDisk) fsync() {
	d.durable = d.last()
	d.persistedSafe = max(d.persistedSafe, min(d.safe, d.durable))
}

// apply performs one of the core's log operations as the WAL would.
func (d *simDisk) apply(o logOp) error {
	if d.failed != nil {
		return d.failed
	}
	switch o.kind {
	case opAppend:
		seq, epoch := d.last(), d.baseEpoch
		if len(d.frames) > 0 {
			epoch = d.frames[len(d.frames)-1].Epoch
		}
		for _, f := range o.frames {
			if f.Seq != seq+1 || f.Epoch < epoch {
				d.failed = fmt.Errorf("%w: frame Seq=%d epoch %d after Seq=%d epoch %d", ErrNotContiguous, f.Seq, f.Epoch, seq, epoch)
				return d.failed
			}
			seq, epoch = f.Seq, f.Epoch
		}
		d.frames = append(d.frames, o.frames...)
	case opTruncate:
		if o.seq >= d.last() {
			return nil
		}
		if o.seq < d.safe {
			d.failed = fmt.Errorf("%w: asked to keep Seq≤%d but safe_seq=%d", ErrTruncateCommitted, o.seq, d.safe)
			return d.failed
		}
		d.frames = d.frames[:o.seq-(d.base-1)]
		d.durable = min(d.durable, o.seq)
		d.truncs++
	case opRebase:
		if d.safe > o.base-1 && d.safe <= d.last() {
			d.failed = fmt.Errorf("%w: rebase to %d would drop committed frames up to safe_seq=%d", ErrTruncateCommitted, o.base, d.safe)
			return d.failed
		}
		d.base, d.baseEpoch, d.frames, d.durable = o.base, o.prevEpoch, nil, o.base-1
		d.safe = max(d.safe, o.base-1)
		d.truncs++
	case opSafe:
		d.safe = max(d.safe, o.seq)
	}
	return nil
}

// ---- the network ----

type simMsgKind int

const (
	smPromiseReq simMsgKind = iota + 1
	smPromiseResp
	smFetchReq
	smFetchResp
	smRPCFail // the requester's transport call failed
	smDial
)

// simMsg is an RPC leg or a dial in flight.
type simMsg struct {
	kind     simMsgKind
	from, to int // node indexes
	fromInc  int // incarnation of the sender (requests) or requester (answers)
	toInc    int
	epoch    uint64
	token    uint64
	conn     uint64
	promise  *PromiseRequest
	pResp    *PromiseResponse
	fetch    *FetchRequest
	fResp    *FetchResponse
	failKind simMsgKind // smRPCFail: of which request
}

// simStream is one leader→follower append stream; each direction is FIFO.
type simStream struct {
	a, b       int
	aInc, bInc int
	conn       uint64 // a's number for it
	sconn      uint64 // b's
	toB        []*AppendRequest
	toA        []*AppendResponse
	closeErr   error // b ended it: delivered to a after toA drains
	closing    bool
}

// lateAck is an answer the leader's receiver read off a stream before the
// stream broke and hands to the core later: the driver's receiver goroutine
// can be that late (hole 4).
type lateAck struct {
	node, inc int
	conn      uint64
	resp      *AppendResponse
}

// ---- the cluster ----

type simNode struct {
	name     string
	idx      int
	c        *core
	disk     *simDisk
	up       bool
	inc      int
	conns    uint64 // the core numbers its leader streams with it
	served   uint64
	skew     time.Duration // wall clock minus virtual time
	stalled  bool          // fsyncs do not complete
	paused   bool          // frozen process: no ticks, nothing delivered to it
	lossy    bool          // rolled back or reset, not yet confirmed as whole again
	dirty    bool          // inputs taken, ready not yet performed (the driver batches inputs)
	snapshot *simDisk      // an old copy of its disk, for a rollback
	lastSafe uint64
	heard    map[int]time.Duration // leader: when each peer's answer was last handed to it
	ledEpoch uint64                // the epoch it was last seen leading, since
	ledSince time.Duration
	// backing: as leader, per peer, the highest durable Seq acked on its
	// newest stream to that peer, by a voter that is not a learner, for its
	// epoch (the simulator's own account of rule 1, independent of the core's).
	backing map[int]uint64
	newest  map[int]uint64 // peer → conn of the newest stream opened to it
	// backedEpoch, backedTo: the commit point checkBacked last checked.
	backedEpoch, backedTo uint64
}

// simOp is one client event: an id, sent until its outcome is known.
type simOp struct {
	id      string
	payload []byte
	call    int // step first sent
	ret     int // step acknowledged
	acked   bool
	seq     uint64
	failed  bool // refused before it was appended anywhere, for good
	inLog   bool // some attempt reached some log: the outcome is unknown until acked
	pending bool // an attempt awaits its commit
	// attempt: an attempt's outcome is not yet known on the node it went
	// to (-1: none). Like the API's in-flight ids (node/ingest.go), a
	// retry waits for it.
	attempt int
}

type simPending struct {
	op          *simOp
	node, epoch int
	seq         uint64
}

type simConfig struct {
	nodes int
	steps int
}

type sim struct {
	seed  int64
	rng   *rand.Rand
	cfg   simConfig
	ccfg  coreConfig
	step  int
	now   time.Duration
	nodes []*simNode
	peers [][]Peer
	names []string
	log   logrus.FieldLogger

	epoch   uint64 // etcd: the last epoch handed out
	elected int    // etcd: the node holding the leader key, -1 none
	leading map[int]uint64

	msgs    []*simMsg
	streams []*simStream
	late    []lateAck
	cut     map[[2]int]bool
	slow    map[[2]int]bool // directed links whose messages are rarely delivered: long delays
	tokens  map[uint64]*simMsg
	nextTok uint64

	committed   map[uint64]Frame
	committedAt map[string]uint64 // payload → Seq, for events committed
	committer   map[uint64]int
	checked     map[[2]uint64]uint64 // (node, epoch) → commit checked up to
	ops         []*simOp
	pend        []simPending
	reqs        map[uint64]*simOp // core request id → op
	nextReq     uint64
	retryable   []*simOp

	trace     []string
	violation error
}

func newSim(seed int64, cfg simConfig) *sim {
	s := &sim{seed: seed, rng: rand.New(rand.NewSource(seed)), cfg: cfg, elected: -1, leading: map[int]uint64{},
		cut: map[[2]int]bool{}, slow: map[[2]int]bool{}, tokens: map[uint64]*simMsg{}, committed: map[uint64]Frame{}, committedAt: map[string]uint64{}, committer: map[uint64]int{},
		checked: map[[2]uint64]uint64{}, reqs: map[uint64]*simOp{}}
	s.ccfg = coreConfig{Heartbeat: 50 * time.Millisecond, QuorumTimeout: 600 * time.Millisecond, PromiseTimeout: 800 * time.Millisecond,
		RetryInterval: 50 * time.Millisecond, MaxBatchBytes: 256, MaxInflight: uint64(1 + s.rng.Intn(64))}
	l := logrus.New()
	l.SetOutput(&simLogSink{s: s})
	l.SetLevel(logrus.InfoLevel)
	l.SetFormatter(&logrus.TextFormatter{DisableTimestamp: true})
	s.log = l
	for i := 0; i < cfg.nodes; i++ {
		name := fmt.Sprintf("n%d", i+1)
		s.names = append(s.names, name)
		n := &simNode{name: name, idx: i, disk: newSimDisk(fakeWAL(name, 1)), heard: map[int]time.Duration{}}
		s.nodes = append(s.nodes, n)
	}
	for i := range s.nodes {
		var ps []Peer
		for j, n := range s.nodes {
			if j != i {
				ps = append(ps, Peer{Name: n.name, Addr: n.name})
			}
		}
		s.peers = append(s.peers, ps)
		s.start(s.nodes[i], true, false)
	}
	return s
}

// simLogSink keeps the cores' log lines in the trace.
type simLogSink struct{ s *sim }

func (w *simLogSink) Write(p []byte) (int, error) {
	w.s.tracef("    log %s", strings.TrimSpace(string(p)))
	return len(p), nil
}

func (s *sim) tracef(format string, args ...any) {
	line := fmt.Sprintf("%6d %8.3fs ", s.step, s.now.Seconds()) + fmt.Sprintf(format, args...)
	s.trace = append(s.trace, line)
	if len(s.trace) > 400 {
		s.trace = s.trace[len(s.trace)-300:]
	}
}

func (s *sim) violate(format string, args ...any) {
	if s.violation == nil {
		s.violation = fmt.Errorf("step %d: "+format, append([]any{s.step}, args...)...)
		s.tracef("VIOLATION %v", s.violation)
	}
}

// start brings n up on its disk: a fresh log (created), a restart, or a
// reset (learner). Like node/, it raises the promise to etcd's current
// epoch first (MinEpoch).
func (s *sim) start(n *simNode, created, learner bool) {
	st := n.disk.st
	if learner {
		st.Learner, st.LearnerUntil = true, 0
	}
	// The floor is what node/ reads from etcd at every start
	// (cluster.EpochFloor): at least the current leader's epoch. A reset or
	// rolled-back disk lost its promise with its log; the floor restores it.
	floor := s.epoch
	st.PromisedEpoch = max(st.PromisedEpoch, floor)
	n.disk.st = st
	n.inc++
	n.up, n.paused, n.stalled = true, false, false
	n.heard = map[int]time.Duration{}
	n.backing, n.newest = map[int]uint64{}, map[int]uint64{}
	n.c = newCore(n.name, s.ccfg, s.log.WithField("node", n.name), st, n.disk.view(), created)
	n.c.now, n.c.wall = s.now, int64(s.now+n.skew)
	n.lastSafe = n.disk.safe
	delete(s.leading, n.idx)
}

// ---- the step ----

// run runs the simulation for cfg.steps steps, heals, and checks the end
// state. It returns the first violation.
func (s *sim) run() error {
	nextHeal := 500 + s.rng.Intn(2500)
	for s.step = 1; s.step <= s.cfg.steps && s.violation == nil; s.step++ {
		if s.step == nextHeal {
			s.heal("periodic")
			nextHeal = s.step + 500 + s.rng.Intn(2500)
			continue
		}
		s.randomStep()
	}
	if s.violation == nil {
		s.heal("final")
	}
	if s.violation == nil {
		s.checkFinal()
	}
	return s.violation
}

func (s *sim) randomStep() {
	s.now += time.Duration(s.rng.Intn(3000)) * time.Microsecond
	r := s.rng.Intn(1000)
	switch {
	case r < 420:
		s.deliver()
	case r < 520:
		s.tick()
	case r < 620:
		s.fsync(s.pick())
	case r < 740:
		s.client()
	case r < 770:
		s.retry()
	case r < 790:
		s.elect(-1)
	case r < 800:
		s.dropOrDup()
	case r < 815:
		s.partition()
	case r < 825:
		s.healNet()
	case r < 830:
		s.toggleSlow()
	case r < 842:
		s.crash(s.pick(), s.rng.Intn(2) == 0)
	case r < 870:
		s.restart(s.pick())
	case r < 880:
		s.toggleStall(s.pick())
	case r < 890:
		s.togglePause(s.pick())
	case r < 900:
		s.snapshot(s.pick())
	case r < 904:
		s.rollback(s.pick())
	case r < 906:
		s.reset(s.pick())
	case r < 930:
		s.trim(s.pick())
	case r < 935:
		s.clockStep(s.pick())
	case r < 960:
		s.abdicate()
	case r < 975:
		s.deliverLate()
	default:
		s.flush()
	}
}

func (s *sim) pick() *simNode { return s.nodes[s.rng.Intn(len(s.nodes))] }

func (s *sim) live(n *simNode) bool { return n.up && !n.paused }

// after follows an input to n: usually the ready is performed at once; some
// times more inputs come first, as the driver takes up to 257 inputs before it
// performs one ready (a flush step performs it later).
func (s *sim) after(n *simNode) {
	s.checkBacked(n)
	if s.rng.Intn(10) < 3 {
		n.dirty = true
		return
	}
	s.process(n)
}

func (s *sim) flush() {
	for _, i := range s.rng.Perm(len(s.nodes)) {
		if n := s.nodes[i]; n.dirty && n.up && !n.paused {
			s.process(n)
			return
		}
	}
}

// process performs n's ready as the driver does: persist, apply, events,
// messages; then feeds the log's progress back, until nothing is left.
func (s *sim) process(n *simNode) {
	n.dirty = false
	for guard := 0; n.up; guard++ {
		if guard > 10000 {
			s.violate("%s: the core never stops asking (livelock in one step)", n.name)
			return
		}
		// Deliberately before the ready is performed: a report may be older
		// than writes the core ordered (progress must cope).
		n.c.progress(n.disk.last(), n.disk.durable, n.disk.base, n.disk.baseEpoch, n.disk.truncs, n.disk.failed)
		s.checkBacked(n)
		rd := n.c.takeReady()
		if rd.empty() {
			break
		}
		if rd.state != nil {
			if n.disk.st.PromisedEpoch > rd.state.PromisedEpoch {
				s.violate("%s: the persisted promise went down from %d to %d", n.name, n.disk.st.PromisedEpoch, rd.state.PromisedEpoch)
			}
			n.disk.st = *rd.state
		}
		failed := false
		for _, o := range rd.ops {
			if err := n.disk.apply(o); err != nil {
				// Correct cores never ask the log to break its contract.
				s.violate("%s: the log refused %v: %v", n.name, o.kind, err)
				failed = true
				break
			}
			if o.kind == opSafe {
				s.checkSafePrefix(n)
			}
		}
		for _, ev := range rd.events {
			s.event(n, ev)
		}
		if failed {
			n.c.fail(n.disk.failed)
			continue
		}
		for i := range rd.msgs {
			s.send(n, &rd.msgs[i])
		}
	}
	if n.up {
		if n.disk.safe < n.lastSafe {
			s.violate("%s: safe_seq went down from %d to %d", n.name, n.lastSafe, n.disk.safe)
		}
		n.lastSafe = n.disk.safe
		if n.lossy && n.c.confirmed && !n.c.st.Learner {
			n.lossy = false
		}
		s.checkLeading(n)
	}
}

// checkSafePrefix: every frame a node holds at or below its safe_seq is the
// committed frame at that Seq.
func (s *sim) checkSafePrefix(n *simNode) {
	for seq := max(n.lastSafe+1, n.disk.base); seq <= n.disk.safe && seq <= n.disk.last(); seq++ {
		f, _ := n.disk.frame(seq)
		if g, ok := s.committed[seq]; ok && !sameFrame(f, g) {
			s.violate("%s holds at Seq=%d (≤ its safe_seq %d) a frame of epoch %d; the committed one is of epoch %d",
				n.name, seq, n.disk.safe, f.Epoch, g.Epoch)
			return
		}
	}
}

// checkLeading: a leader that has not heard a majority within QuorumTimeout
// steps down (DESIGN §6 rule 8), whatever the wall clock does (rule 9); and
// an epoch serves writes only once its barrier is committed (rule 3).
func (s *sim) checkLeading(n *simNode) {
	ld := n.c.ld
	if ld == nil || ld.phase != phaseLeading {
		return
	}
	if n.ledEpoch != ld.epoch {
		n.ledEpoch, n.ledSince = ld.epoch, n.c.now
	}
	var since []time.Duration
	for j := range s.nodes {
		if j == n.idx {
			since = append(since, 0)
		} else if t, ok := n.heard[j]; ok {
			since = append(since, n.c.now-t)
		}
	}
	slices.Sort(since)
	need := len(s.nodes)/2 + 1
	quiet := n.c.now - n.ledSince
	if len(since) >= need {
		quiet = min(quiet, since[need-1])
	}
	if quiet > s.ccfg.QuorumTimeout {
		s.violate("%s still leads epoch %d without having heard a majority for %s (QuorumTimeout %s)", n.name, ld.epoch, quiet, s.ccfg.QuorumTimeout)
	}
}

func (s *sim) event(n *simNode, ev coreEvent) {
	switch ev.kind {
	case evProposed:
		op := s.reqs[ev.id]
		delete(s.reqs, ev.id)
		if op == nil {
			return
		}
		op.attempt = -1
		if ev.err != nil {
			if !op.inLog {
				op.failed = true
			}
			return
		}
		if _, ok := s.committer[ev.epoch]; !ok {
			s.violate("%s accepted a write in epoch %d before any frame of that epoch was committed (rule 3)", n.name, ev.epoch)
		}
		op.inLog, op.failed, op.pending = true, false, true
		s.pend = append(s.pend, simPending{op: op, node: n.idx, epoch: int(ev.epoch), seq: ev.last})
	case evReply:
		op := s.reqs[ev.id]
		delete(s.reqs, ev.id)
		if op != nil {
			op.attempt = -1
		}
		if op != nil && ev.ok {
			op.pending = true
			s.pend = append(s.pend, simPending{op: op, node: n.idx, epoch: int(ev.epoch), seq: op.seq})
			if ld := n.c.ld; ld != nil && ld.commit >= op.seq {
				s.ackPending(n, ev.epoch, ld.commit) // already committed: the driver answers at once
			}
		}
	case evCommitted:
		s.commit(n, ev.epoch, ev.seq)
	case evLeadEnded:
		delete(s.leading, n.idx)
		keep := s.pend[:0]
		for _, p := range s.pend {
			if p.node == n.idx && uint64(p.epoch) == ev.epoch {
				p.op.pending = false // outcome unknown: the client retries
				continue
			}
			keep = append(keep, p)
		}
		s.pend = keep
	}
}

// checkBacked checks the core's commit point against acks the moment the core
// moves it: a majority of voters, the leader counted by its own fsync, each
// other by an ack of this epoch on its newest stream. The check runs right
// after the input, not when the driver later performs the ready: by then a
// newer stream may have replaced the one that carried a legitimate ack.
func (s *sim) checkBacked(n *simNode) {
	ld := n.c.ld
	if ld == nil {
		return
	}
	if ld.epoch != n.backedEpoch {
		n.backedEpoch, n.backedTo = ld.epoch, 0
	}
	if ld.commit <= n.backedTo {
		return
	}
	seq := ld.commit
	n.backedTo = seq
	backed := 0
	if n.disk.durable >= seq {
		backed++
	}
	for j := range s.nodes {
		if j != n.idx && n.backing[j] >= seq {
			backed++
		}
	}
	if backed < len(s.nodes)/2+1 {
		s.violate("%s committed Seq=%d in epoch %d with %d of %d voters holding it fsynced by their acks on its current streams",
			n.name, seq, ld.epoch, backed, len(s.nodes))
	}
}

// commit checks a leader's commit point against every other commit: one
// committing leader per epoch, one frame per Seq.
func (s *sim) commit(n *simNode, epoch, seq uint64) {
	if who, ok := s.committer[epoch]; ok && who != n.idx {
		s.violate("two leaders committed in epoch %d: %s and %s", epoch, s.nodes[who].name, n.name)
		return
	}
	s.committer[epoch] = n.idx
	if f, ok := n.disk.frame(seq); ok && f.Epoch != epoch {
		s.violate("%s committed Seq=%d, a frame of epoch %d, in epoch %d: only a frame of its own epoch commits what is below it (Raft's Figure 8)",
			n.name, seq, f.Epoch, epoch)
		return
	}
	key := [2]uint64{uint64(n.idx), epoch}
	for q := max(s.checked[key]+1, n.disk.base); q <= seq; q++ {
		f, ok := n.disk.frame(q)
		if !ok {
			s.violate("%s committed Seq=%d in epoch %d but does not hold it", n.name, q, epoch)
			return
		}
		if g, ok := s.committed[q]; ok && !sameFrame(f, g) {
			s.violate("two different frames committed at Seq=%d: epoch %d (%s) and epoch %d (%s, epoch %d)",
				q, g.Epoch, g.Payload, f.Epoch, n.name, epoch)
			return
		}
		s.committed[q] = f
		if f.Type == FrameEvent {
			s.committedAt[string(f.Payload)] = q
		}
	}
	s.checked[key] = seq
	s.ackPending(n, epoch, seq)
}

// ackPending acknowledges the writes waiting on n in epoch up to seq.
func (s *sim) ackPending(n *simNode, epoch, seq uint64) {
	keep := s.pend[:0]
	for _, p := range s.pend {
		if p.node == n.idx && uint64(p.epoch) == epoch && p.seq <= seq {
			f := s.committed[p.seq]
			if f.Type == FrameEvent && !bytes.Equal(f.Payload, p.op.payload) {
				s.violate("op %s acknowledged at Seq=%d, which holds %s", p.op.id, p.seq, f.Payload)
			}
			if !p.op.acked {
				p.op.acked, p.op.seq, p.op.ret = true, p.seq, s.step
			} else if p.op.seq != p.seq {
				s.violate("op %s acknowledged twice, at Seq=%d and Seq=%d", p.op.id, p.op.seq, p.seq)
			}
			p.op.pending = false
			continue
		}
		keep = append(keep, p)
	}
	s.pend = keep
}

// send routes one of n's outgoing messages. A node answers for an epoch
// only once its promise of that epoch is on disk (DESIGN §6 rule 2).
func (s *sim) send(n *simNode, m *outMsg) {
	if r := m.promiseResp; r != nil && r.OK && n.disk.st.PromisedEpoch < r.Promised {
		s.violate("%s promised epoch %d with %d on disk", n.name, r.Promised, n.disk.st.PromisedEpoch)
	}
	if r := m.resp; r != nil && r.OK && n.disk.st.PromisedEpoch < r.Epoch {
		s.violate("%s answered epoch %d's stream with %d on disk", n.name, r.Epoch, n.disk.st.PromisedEpoch)
	}
	to := -1
	if m.to.Name != "" {
		to = slices.Index(s.names, m.to.Name)
	}
	switch m.kind {
	case msgPromise:
		s.msgs = append(s.msgs, &simMsg{kind: smPromiseReq, from: n.idx, to: to, fromInc: n.inc, epoch: m.promise.Epoch, promise: m.promise})
	case msgFetch:
		s.msgs = append(s.msgs, &simMsg{kind: smFetchReq, from: n.idx, to: to, fromInc: n.inc, epoch: m.fetch.Epoch, fetch: m.fetch})
	case msgPromiseResp, msgFetchResp:
		req := s.tokens[m.token]
		delete(s.tokens, m.token)
		if req == nil {
			return
		}
		a := &simMsg{from: n.idx, to: req.from, fromInc: n.inc, toInc: req.fromInc, epoch: req.epoch}
		if m.kind == msgPromiseResp {
			a.kind, a.pResp = smPromiseResp, m.promiseResp
		} else {
			a.kind, a.fResp = smFetchResp, m.fetchResp
			if a.fResp.OK && !framesStillMeant(m, n.disk.truncs) {
				a.fResp = &FetchResponse{OK: false, Promised: m.fetchResp.Promised}
			} else if a.fResp.OK {
				resp := *a.fResp
				resp.Frames = s.readFrames(n, m.from, m.limit, 1<<20, m.maxBytes)
				a.fResp = &resp
			}
		}
		s.msgs = append(s.msgs, a)
	case msgDial:
		s.msgs = append(s.msgs, &simMsg{kind: smDial, from: n.idx, to: to, fromInc: n.inc, conn: m.conn})
	case msgClose:
		if st := s.streamOf(n.idx, m.conn); st != nil {
			s.closeStream(st, nil, false)
		}
	case msgAppend:
		first := m.req.PrevSeq + 1
		st := s.streamOf(n.idx, m.conn)
		if st == nil || st.closing {
			n.c.appendSent(m.conn, m.req.Gen, first, 0)
			return
		}
		req := *m.req
		if !framesStillMeant(m, n.disk.truncs) {
			s.closeStream(st, nil, false)
			n.c.streamClosed(m.conn, fmt.Errorf("sim: the log was truncated under a send"))
			return
		}
		if m.maxFrames > 0 {
			if first < n.disk.base {
				s.closeStream(st, nil, false)
				n.c.streamClosed(m.conn, fmt.Errorf("sim: reading Seq=%d below the base %d", first, n.disk.base))
				return
			}
			req.Frames = s.readFrames(n, first, m.limit, m.maxFrames, s.ccfg.MaxBatchBytes)
		}
		st.toB = append(st.toB, &req)
		n.c.appendSent(m.conn, req.Gen, first, len(req.Frames))
	case msgAppendResp:
		if st := s.servedStream(n.idx, m.conn); st != nil && !st.closing {
			st.toA = append(st.toA, m.resp)
		}
	case msgServerClose:
		if st := s.servedStream(n.idx, m.conn); st != nil && !st.closing {
			st.closing, st.closeErr = true, m.err
		}
	}
}

func (s *sim) readFrames(n *simNode, from, limit uint64, maxFrames, maxBytes int) []Frame {
	var out []Frame
	size := 0
	for seq := from; seq <= min(limit, n.disk.last()) && len(out) < maxFrames; seq++ {
		f, ok := n.disk.frame(seq)
		if !ok {
			break
		}
		if len(out) > 0 && size+f.Size() > maxBytes {
			break
		}
		size += f.Size()
		out = append(out, f)
	}
	return out
}

func (s *sim) streamOf(a int, conn uint64) *simStream {
	for _, st := range s.streams {
		if st.a == a && st.conn == conn && st.aInc == s.nodes[a].inc {
			return st
		}
	}
	return nil
}

func (s *sim) servedStream(b int, sconn uint64) *simStream {
	for _, st := range s.streams {
		if st.b == b && st.sconn == sconn && st.bInc == s.nodes[b].inc {
			return st
		}
	}
	return nil
}

// closeStream breaks st. Answers already read by the leader's receiver may
// still reach its core later (late acks).
func (s *sim) closeStream(st *simStream, err error, notifyA bool) {
	s.streams = slices.DeleteFunc(s.streams, func(x *simStream) bool { return x == st })
	a, b := s.nodes[st.a], s.nodes[st.b]
	if a.up && a.inc == st.aInc {
		for _, r := range st.toA {
			if s.rng.Intn(2) == 0 {
				s.late = append(s.late, lateAck{node: st.a, inc: st.aInc, conn: st.conn, resp: r})
			}
		}
		if notifyA {
			if err == nil {
				err = ErrUnreachable
			}
			a.c.streamClosed(st.conn, err)
			s.after(a)
		}
	}
	if b.up && b.inc == st.bInc {
		b.c.serverClosed(st.sconn)
		s.after(b)
	}
}

// ---- actions ----

// deliver hands one message (an RPC leg, a dial, or the head of a stream
// direction) to its receiver.
func (s *sim) deliver() {
	type choice struct {
		msg *simMsg
		st  *simStream
		toB bool
	}
	var cs []choice
	// A slow link's messages wait: they are offered one time in twenty.
	offer := func(from, to int) bool {
		return !s.nodes[to].paused && (!s.slow[[2]int{from, to}] || s.rng.Intn(20) == 0)
	}
	for _, m := range s.msgs {
		if offer(m.from, m.to) {
			cs = append(cs, choice{msg: m})
		}
	}
	for _, st := range s.streams {
		if len(st.toB) > 0 && offer(st.a, st.b) {
			cs = append(cs, choice{st: st, toB: true})
		}
		if (len(st.toA) > 0 || st.closing) && offer(st.b, st.a) {
			cs = append(cs, choice{st: st})
		}
	}
	if len(cs) == 0 {
		s.tick()
		return
	}
	c := cs[s.rng.Intn(len(cs))]
	if c.msg != nil {
		s.msgs = slices.DeleteFunc(s.msgs, func(x *simMsg) bool { return x == c.msg })
		s.deliverMsg(c.msg)
		return
	}
	st := c.st
	a, b := s.nodes[st.a], s.nodes[st.b]
	if c.toB {
		req := st.toB[0]
		st.toB = st.toB[1:]
		s.tracef("%s→%s append e%d gen%d prev=%d/%d n=%d safe=%d started=%v rebase=%v", a.name, b.name, req.Epoch, req.Gen,
			req.PrevSeq, req.PrevEpoch, len(req.Frames), req.SafeSeq, req.EpochStarted, req.Rebase)
		b.c.recvAppend(st.sconn, req)
		s.after(b)
		return
	}
	if len(st.toA) == 0 {
		s.tracef("%s closed its stream from %s: %v", b.name, a.name, st.closeErr)
		s.closeStream(st, st.closeErr, true)
		return
	}
	resp := st.toA[0]
	st.toA = st.toA[1:]
	s.tracef("%s→%s ack e%d gen%d ok=%v mismatch=%v durable=%d learner=%v err=%q", b.name, a.name, resp.Epoch, resp.Gen,
		resp.OK, resp.Mismatch, resp.DurableSeq, resp.Learner, resp.Error)
	a.heard[st.b] = a.c.now
	if a.newest[st.b] == st.conn && resp.OK && !resp.Mismatch && !resp.Learner && resp.Error == "" && a.c.ld != nil && resp.Epoch == a.c.ld.epoch {
		a.backing[st.b] = max(a.backing[st.b], resp.DurableSeq)
	}
	a.c.recvAppendResp(st.conn, resp)
	s.after(a)
}

func (s *sim) deliverMsg(m *simMsg) {
	from, to := s.nodes[m.from], s.nodes[m.to]
	reachable := to.up && !s.cut[[2]int{m.from, m.to}]
	switch m.kind {
	case smPromiseReq, smFetchReq:
		if !reachable {
			s.msgs = append(s.msgs, &simMsg{kind: smRPCFail, from: m.to, to: m.from, toInc: m.fromInc, epoch: m.epoch, failKind: m.kind})
			return
		}
		s.nextTok++
		s.tokens[s.nextTok] = m
		if m.kind == smPromiseReq {
			s.tracef("%s→%s promise? e%d", from.name, to.name, m.epoch)
			to.c.recvPromise(s.nextTok, m.promise)
		} else {
			s.tracef("%s→%s fetch e%d from=%d", from.name, to.name, m.epoch, m.fetch.From)
			to.c.recvFetch(s.nextTok, m.fetch)
		}
		s.after(to)
	case smPromiseResp, smFetchResp:
		if !to.up || to.inc != m.toInc {
			return // the process that asked is gone
		}
		if s.cut[[2]int{m.from, m.to}] {
			s.deliverMsg(&simMsg{kind: smRPCFail, from: m.from, to: m.to, toInc: m.toInc, epoch: m.epoch, failKind: m.kind - 1})
			return
		}
		to.heard[m.from] = to.c.now
		if m.kind == smPromiseResp {
			s.tracef("%s→%s promise e%d ok=%v promised=%d tail=%d/%d unconfirmed=%v learner=%v", from.name, to.name, m.epoch,
				m.pResp.OK, m.pResp.Promised, m.pResp.LastEpoch, m.pResp.LastSeq, m.pResp.Unconfirmed, m.pResp.Learner)
			to.c.recvPromiseResp(m.epoch, s.peerOf(m.from), m.pResp)
		} else {
			s.tracef("%s→%s fetched e%d ok=%v n=%d", from.name, to.name, m.epoch, m.fResp.OK, len(m.fResp.Frames))
			to.c.recvFetchResp(m.epoch, m.fResp)
		}
		s.after(to)
	case smRPCFail:
		if !to.up || to.inc != m.toInc {
			return
		}
		if m.failKind == smPromiseReq {
			to.c.promiseFailed(m.epoch, s.peerOf(m.from))
		} else {
			to.c.fetchFailed(m.epoch, ErrUnreachable)
		}
		s.after(to)
	case smDial:
		if !from.up || from.inc != m.fromInc {
			return
		}
		if !reachable || s.cut[[2]int{m.to, m.from}] {
			from.c.streamClosed(m.conn, ErrUnreachable)
			s.after(from)
			return
		}
		to.served++
		st := &simStream{a: m.from, b: m.to, aInc: from.inc, bInc: to.inc, conn: m.conn, sconn: to.served}
		s.streams = append(s.streams, st)
		s.tracef("%s→%s stream %d opened", from.name, to.name, m.conn)
		if m.conn > from.newest[m.to] { // conns only grow: a late dial of an older leadership is not the newest
			from.newest[m.to], from.backing[m.to] = m.conn, 0
		}
		from.c.streamOpened(m.conn)
		s.after(from)
	}
}

func (s *sim) peerOf(i int) Peer { return Peer{Name: s.names[i], Addr: s.names[i]} }

// deliverLate hands a leader an answer of a stream that has since broken.
func (s *sim) deliverLate() {
	if len(s.late) == 0 {
		return
	}
	i := s.rng.Intn(len(s.late))
	l := s.late[i]
	s.late = slices.Delete(s.late, i, i+1)
	n := s.nodes[l.node]
	if !n.up || n.inc != l.inc || n.paused {
		return
	}
	s.tracef("late ack to %s on old stream %d durable=%d", n.name, l.conn, l.resp.DurableSeq)
	n.c.recvAppendResp(l.conn, l.resp)
	s.after(n)
}

func (s *sim) tick() {
	for _, n := range s.nodes {
		if s.live(n) {
			n.c.tick(s.now, int64(s.now+n.skew))
			s.process(n)
		}
	}
}

func (s *sim) fsync(n *simNode) {
	if !n.up || n.stalled {
		return
	}
	n.disk.fsync()
	if !n.paused {
		s.process(n)
	}
}

// client sends a new event to the node etcd names leader, or to any node.
func (s *sim) client() {
	i := s.elected
	if i < 0 || s.rng.Intn(5) == 0 {
		i = s.rng.Intn(len(s.nodes))
	}
	n := s.nodes[i]
	id := fmt.Sprintf("o%d", len(s.ops)+1)
	op := &simOp{id: id, payload: []byte(fmt.Sprintf(`{"id":%q}`, id)), call: s.step, attempt: -1}
	s.ops = append(s.ops, op)
	if !s.live(n) {
		op.failed = true
		return
	}
	s.propose(n, op)
}

func (s *sim) propose(n *simNode, op *simOp) {
	s.nextReq++
	s.reqs[s.nextReq] = op
	s.tracef("propose %s on %s", op.id, n.name)
	op.attempt = n.idx
	n.c.propose(s.nextReq, int64(s.now+n.skew), [][]byte{op.payload})
	s.after(n)
}

// retry sends an event whose outcome is unknown again, with its id: like
// the API's idempotent ingest, a frame with the id already in the leader's
// log is waited for (WaitCommitted), else the event is proposed again.
func (s *sim) retry() {
	var unknown []*simOp
	for _, op := range s.ops {
		if op.inLog && !op.acked && !op.pending && op.attempt < 0 {
			unknown = append(unknown, op)
		}
	}
	if len(unknown) == 0 || s.elected < 0 {
		return
	}
	op := unknown[s.rng.Intn(len(unknown))]
	if n := s.nodes[s.elected]; s.live(n) {
		s.retryOp(op, n)
	}
}

// elect plays etcd: a node (i, or one at random) takes the leader key with a
// new epoch. The previous holder usually learns it lost the key (its session
// ended) and abdicates; sometimes it does not, and the protocol must fence
// it (DESIGN §6 rule 2).
func (s *sim) elect(i int) {
	if i < 0 {
		i = s.rng.Intn(len(s.nodes))
	}
	n := s.nodes[i]
	if !s.live(n) {
		return
	}
	if old := s.elected; old >= 0 && old != i && s.rng.Intn(10) < 7 {
		if e, ok := s.leading[old]; ok && s.live(s.nodes[old]) {
			s.nodes[old].c.abdicate(e, ErrNotLeader)
			s.after(s.nodes[old])
		}
	}
	s.epoch += uint64(1 + s.rng.Intn(3))
	s.elected = i
	s.leading[i] = s.epoch
	s.tracef("elect %s epoch %d", n.name, s.epoch)
	n.c.campaign(s.epoch, s.names, s.peers[i], &n.conns)
	s.after(n)
}

func (s *sim) abdicate() {
	for _, i := range s.rng.Perm(len(s.nodes)) {
		if e, ok := s.leading[i]; ok && s.live(s.nodes[i]) && i != s.elected {
			s.nodes[i].c.abdicate(e, ErrNotLeader)
			s.after(s.nodes[i])
			return
		}
	}
}

func (s *sim) dropOrDup() {
	if len(s.msgs) == 0 {
		return
	}
	i := s.rng.Intn(len(s.msgs))
	m := s.msgs[i]
	if m.kind == smDial || m.kind == smRPCFail {
		return
	}
	if s.rng.Intn(2) == 0 {
		dup := *m
		s.msgs = append(s.msgs, &dup)
		return
	}
	s.msgs = slices.Delete(s.msgs, i, i+1)
	switch m.kind {
	case smPromiseReq, smFetchReq:
		s.msgs = append(s.msgs, &simMsg{kind: smRPCFail, from: m.to, to: m.from, toInc: m.fromInc, epoch: m.epoch, failKind: m.kind})
	case smPromiseResp, smFetchResp:
		s.msgs = append(s.msgs, &simMsg{kind: smRPCFail, from: m.from, to: m.to, toInc: m.toInc, epoch: m.epoch, failKind: m.kind - 1})
	}
}

// partition cuts a random set of directed links and breaks the streams on
// them.
func (s *sim) partition() {
	a, b := s.rng.Intn(len(s.nodes)), s.rng.Intn(len(s.nodes))
	if a == b {
		return
	}
	s.cut[[2]int{a, b}] = true
	if s.rng.Intn(2) == 0 {
		s.cut[[2]int{b, a}] = true
	}
	s.tracef("cut %s→%s", s.names[a], s.names[b])
	for _, st := range slices.Clone(s.streams) {
		if s.cut[[2]int{st.a, st.b}] || s.cut[[2]int{st.b, st.a}] {
			s.closeStream(st, ErrUnreachable, true)
		}
	}
}

func (s *sim) healNet() {
	s.cut = map[[2]int]bool{}
	s.slow = map[[2]int]bool{}
}

func (s *sim) toggleSlow() {
	a, b := s.rng.Intn(len(s.nodes)), s.rng.Intn(len(s.nodes))
	if a != b {
		s.slow[[2]int{a, b}] = !s.slow[[2]int{a, b}]
	}
}

// crash kills n: its streams break, its disk keeps what a crash keeps.
func (s *sim) crash(n *simNode, lossy bool) {
	if !n.up {
		return
	}
	s.tracef("crash %s lossy=%v (tail %d, durable %d, safe %d, persisted %d)", n.name, lossy, n.disk.last(), n.disk.durable, n.disk.safe, n.disk.persistedSafe)
	n.up, n.dirty = false, false // an unperformed ready dies with the process
	for _, op := range s.ops {
		if op.attempt == n.idx {
			op.attempt = -1 // the request failed with the process
		}
	}
	n.inc++
	for _, st := range slices.Clone(s.streams) {
		if st.a == n.idx || st.b == n.idx {
			s.closeStream(st, ErrUnreachable, true)
		}
	}
	n.disk.crash(s.rng, lossy)
	n.disk.failed = nil
	delete(s.leading, n.idx)
	keep := s.pend[:0]
	for _, p := range s.pend {
		if p.node == n.idx {
			p.op.pending = false
			continue
		}
		keep = append(keep, p)
	}
	s.pend = keep
}

func (s *sim) restart(n *simNode) {
	if n.up {
		return
	}
	s.tracef("restart %s (tail %d, safe %d)", n.name, n.disk.last(), n.disk.safe)
	s.start(n, false, false)
	s.process(n)
}

func (s *sim) toggleStall(n *simNode) { n.stalled = !n.stalled }

func (s *sim) togglePause(n *simNode) {
	if !n.up {
		return
	}
	n.paused = !n.paused
	s.tracef("%s paused=%v", n.name, n.paused)
	if !n.paused {
		n.c.tick(s.now, int64(s.now+n.skew))
		s.process(n)
	}
}

func (s *sim) snapshot(n *simNode) {
	if !n.up {
		return
	}
	d := n.disk.clone()
	d.crash(s.rng, true) // what a copy of the disk holds: what was fsynced
	n.snapshot = d
}

// anyLossy reports whether some node other than n lost data and has not
// been confirmed whole since: the guarantee holds while the other disks are
// intact (DESIGN §6 rule 13), so data loss strikes one node at a time.
func (s *sim) anyLossy(n *simNode) bool {
	for _, o := range s.nodes {
		if o != n && o.lossy {
			return true
		}
	}
	return false
}

// rollback restores n's disk from an old copy of itself (same WAL id, old
// frames, old promise) and restarts it, without the etcd position record.
func (s *sim) rollback(n *simNode) {
	if n.snapshot == nil || s.anyLossy(n) {
		return
	}
	s.crash(n, false)
	s.tracef("rollback %s to tail %d", n.name, n.snapshot.last())
	n.disk = n.snapshot.clone()
	n.lossy = true
	s.start(n, false, false)
	s.process(n)
}

// reset is the operator's `wal reset`: an empty WAL with a new id, rejoining
// as a learner.
func (s *sim) reset(n *simNode) {
	if s.anyLossy(n) {
		return
	}
	s.crash(n, false)
	s.tracef("reset %s", n.name)
	gen := n.disk.id[15] + 1
	n.disk = newSimDisk(fakeWAL(n.name, gen))
	n.snapshot = nil
	n.lossy = true
	s.start(n, true, true)
	s.process(n)
}

// trim is retention: drop committed, fsynced frames from the head.
func (s *sim) trim(n *simNode) {
	if !n.up {
		return
	}
	limit := min(n.disk.safe, n.disk.durable, n.disk.persistedSafe) + 1
	if limit <= n.disk.base {
		return
	}
	nb := n.disk.base + 1 + uint64(s.rng.Int63n(int64(limit-n.disk.base)))
	f, _ := n.disk.frame(nb - 1)
	n.disk.frames = n.disk.frames[nb-n.disk.base:]
	n.disk.base, n.disk.baseEpoch = nb, f.Epoch
	s.tracef("trim %s to base %d", n.name, nb)
	if !n.paused {
		s.process(n)
	}
}

func (s *sim) clockStep(n *simNode) {
	n.skew += time.Duration(s.rng.Intn(4*3600)-2*3600) * time.Second
}

// heal ends every fault, then requires progress: a leader started and an
// event acknowledged within a bounded virtual time (liveness).
func (s *sim) heal(why string) {
	s.tracef("heal (%s)", why)
	s.healNet()
	for _, n := range s.nodes {
		n.stalled = false
		if n.paused {
			s.togglePause(n)
		}
		if !n.up {
			s.restart(n)
		}
	}
	probe := &simOp{id: fmt.Sprintf("probe%d", s.step), call: s.step, attempt: -1}
	probe.payload = []byte(fmt.Sprintf(`{"id":%q}`, probe.id))
	s.ops = append(s.ops, probe)
	deadline := s.now + 30*time.Second
	lastElect := s.now
	for s.violation == nil && !probe.acked {
		if s.now > deadline {
			s.violate("no progress within 30s after healing (%s): %s", why, s.describe())
			return
		}
		s.now += time.Millisecond
		s.tick()
		for _, n := range s.nodes {
			s.fsync(n)
		}
		for k := 0; k < 20 && (len(s.msgs) > 0 || len(s.streams) > 0); k++ {
			s.deliver()
		}
		leader := -1
		for i, n := range s.nodes {
			if n.c.serving() {
				leader = i
			}
		}
		if leader < 0 && s.now-lastElect > 2*s.ccfg.PromiseTimeout {
			s.elect(-1)
			lastElect = s.now
		}
		if leader >= 0 && !probe.pending && probe.attempt < 0 && s.now-lastElect > 10*time.Millisecond {
			s.elected = leader
			if probe.inLog {
				s.retryOp(probe, s.nodes[leader])
			} else {
				s.propose(s.nodes[leader], probe)
			}
		}
	}
	probe.ret = s.step
}

func (s *sim) retryOp(op *simOp, n *simNode) {
	// The API's id index outlives retention (it is checkpointed before a
	// trim): an id committed below the log's base is answered from it.
	if seq, ok := s.committedAt[string(op.payload)]; ok && seq < n.disk.base {
		op.acked, op.seq, op.ret = true, seq, s.step
		return
	}
	for seq := n.disk.base; seq <= n.disk.last(); seq++ {
		if f, _ := n.disk.frame(seq); f.Type == FrameEvent && bytes.Equal(f.Payload, op.payload) {
			s.nextReq++
			s.reqs[s.nextReq] = op
			op.seq, op.attempt = seq, n.idx
			n.c.checkCommitWait(s.nextReq, seq)
			s.after(n)
			return
		}
	}
	s.propose(n, op)
}

func (s *sim) describe() string {
	var b strings.Builder
	for _, n := range s.nodes {
		fmt.Fprintf(&b, "\n  %s up=%v role=%s epoch=%d promised=%d tail=%d durable=%d safe=%d base=%d learner=%v confirmed=%v serving=%v",
			n.name, n.up, n.c.role, n.c.epoch, n.c.st.PromisedEpoch, n.disk.last(), n.disk.durable, n.disk.safe, n.disk.base,
			n.c.st.Learner, n.c.confirmed, n.c.serving())
	}
	return b.String()
}

// checkFinal: after the final heal every acknowledged event is committed at
// the Seq it was acknowledged with, every node holds the committed frames,
// and the ingest history is linearizable.
func (s *sim) checkFinal() {
	for _, op := range s.ops {
		if !op.acked {
			continue
		}
		if f, ok := s.committed[op.seq]; !ok || !bytes.Equal(f.Payload, op.payload) {
			s.violate("acknowledged op %s at Seq=%d is not the committed frame there", op.id, op.seq)
			return
		}
	}
	if res, info := s.checkLinearizable(); res != "" {
		s.violate("the ingest history is not linearizable: %s %s", res, info)
	}
}

// ---- the runner ----

type simResult struct {
	seed  int64
	steps int
	err   error
	trace []string
}

func runSim(seed int64, nodes, steps int) simResult {
	s := newSim(seed, simConfig{nodes: nodes, steps: steps})
	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("step %d: panic: %v", s.step, r)
			}
		}()
		err = s.run()
	}()
	return simResult{seed: seed, steps: s.step, err: err, trace: s.trace}
}
