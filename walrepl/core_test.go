package walrepl

import (
	"testing"
	"time"
)

// testCore drives one core by hand: the test is its network, its disk and
// its clock.
type testCore struct {
	t     *testing.T
	c     *core
	epoch uint64
	now   time.Duration
	conns uint64
	conn  map[string]uint64 // peer → its latest stream
	sent  []outMsg
}

func testCoreConfig() coreConfig {
	return coreConfig{Heartbeat: 50 * time.Millisecond, QuorumTimeout: 1500 * time.Millisecond, PromiseTimeout: 3 * time.Second,
		RetryInterval: 50 * time.Millisecond, MaxBatchBytes: 1 << 20, MaxInflight: 1024}
}

// drain performs the core's ready as a perfect disk would (every write is
// at once written and fsynced) and keeps the messages.
func (tc *testCore) drain() {
	for {
		rd := tc.c.takeReady()
		if rd.empty() {
			return
		}
		for _, m := range rd.msgs {
			if m.kind == msgDial {
				tc.conn[m.to.Name] = m.conn
			}
			if m.kind == msgAppend {
				tc.c.appendSent(m.conn, m.req.Gen, m.req.PrevSeq+1, int(min(uint64(m.maxFrames), m.limit-m.req.PrevSeq)))
			}
		}
		tc.sent = append(tc.sent, rd.msgs...)
		tc.c.progress(tc.c.lv.last, tc.c.lv.last, tc.c.lv.base, tc.c.lv.baseEpoch, tc.c.lv.truncs, nil)
	}
}

// newLeaderCore returns n1 of {n1, n2, n3} leading a started epoch 10 with
// its barrier at Seq 1, committed by n2's ack on its first stream.
func newLeaderCore(t *testing.T) *testCore {
	tc := &testCore{t: t, epoch: 10, conn: map[string]uint64{}}
	tc.c = newCore("n1", testCoreConfig(), testLogger(t), promiseState{}, logView{id: fakeWAL("n1", 1), base: 1}, true)
	tc.c.campaign(tc.epoch, []string{"n1", "n2", "n3"}, []Peer{{Name: "n2", Addr: "n2"}, {Name: "n3", Addr: "n3"}}, &tc.conns)
	tc.drain()
	tc.c.recvPromiseResp(tc.epoch, Peer{Name: "n2", Addr: "n2"}, &PromiseResponse{OK: true, Node: "n2", Promised: tc.epoch,
		WALID: fakeWAL("n2", 1), Base: 1})
	tc.drain()
	if tc.c.ld == nil || tc.c.ld.phase != phaseLeading {
		t.Fatalf("n1 is not leading after n2's promise")
	}
	tc.c.streamOpened(tc.conn["n2"])
	tc.c.recvAppendResp(tc.conn["n2"], ack(tc.epoch, 1, fakeWAL("n2", 1), 1, false))
	tc.drain()
	if !tc.c.ld.started {
		t.Fatalf("epoch not started: commit %d, barrier %d", tc.c.ld.commit, tc.c.ld.barrier)
	}
	return tc
}

func (c *core) proposeOK(t *testing.T, k int) {
	t.Helper()
	c.propose(1, 0, payloads("p", k))
	for _, ev := range c.rd.events {
		if ev.kind == evProposed && ev.err != nil {
			t.Fatalf("propose: %v", ev.err)
		}
	}
}

// tickUntilDial advances time until the core dials peer again.
func (tc *testCore) tickUntilDial(t *testing.T, peer string) {
	t.Helper()
	before := tc.conn[peer]
	for i := 0; i < 1000 && tc.conn[peer] == before; i++ {
		tc.now += 10 * time.Millisecond
		tc.c.tick(tc.now, 0)
		tc.drain()
	}
	if tc.conn[peer] == before {
		t.Fatalf("the leader never dialled %s again", peer)
	}
}

// A progress report read before a truncation the core ordered was applied
// speaks of the frames it removed. Found by the simulator (seed 161683584):
// a follower truncated its own barrier at Seq 6 for the leader's frame 6,
// took the stale "fsynced up to 6" for the new frame, and acknowledged it
// unsynced; a crash then lost a committed frame.
func TestCore_progressOlderThanATruncation(t *testing.T) {
	lv := logView{id: fakeWAL("n2", 1), base: 1}
	lv.appended([]Frame{{Seq: 1, Epoch: 5}, {Seq: 2, Epoch: 5}, {Seq: 3, Epoch: 7}})
	lv.written, lv.durable = 3, 3
	c := newCore("n2", testCoreConfig(), testLogger(t), promiseState{PromisedEpoch: 7}, lv, true)
	staleTruncs := c.lv.truncs
	// The leader of epoch 9 continues after Seq 2: frame 3 differs.
	c.recvAppend(1, &AppendRequest{Epoch: 9, Leader: "n1", Gen: 1, PrevSeq: 2, PrevEpoch: 5, SafeSeq: 2,
		Frames: []Frame{{Seq: 3, Epoch: 9, Type: FrameEvent, Payload: []byte(`{}`)}}})
	// The log's positions as read before the truncation was applied.
	c.progress(3, 3, 1, 0, staleTruncs, nil)
	rd := c.takeReady()
	for _, m := range rd.msgs {
		if m.resp != nil && m.resp.OK && m.resp.DurableSeq > 2 {
			t.Fatalf("acknowledged Seq=%d fsynced from a report older than the truncation at 2", m.resp.DurableSeq)
		}
	}
	// Once the truncation is applied and the new frame fsynced, it is acked.
	c.progress(3, 3, 1, 0, staleTruncs+1, nil)
	rd = c.takeReady()
	acked := uint64(0)
	for _, m := range rd.msgs {
		if m.resp != nil && m.resp.OK {
			acked = max(acked, m.resp.DurableSeq)
		}
	}
	if acked != 3 {
		t.Fatalf("after the truncation and the fsync, acked %d, want 3", acked)
	}
}

// rvNode is a core on a simDisk performed in the driver's order (persist,
// ops, events, msgs): frames of a msgAppend are read from the disk after the
// ready's ops, as Replica.sendAppend reads them, unless the log truncated
// since the core named them.
type rvNode struct {
	t     *testing.T
	c     *core
	d     *simDisk
	conns uint64
	dial  map[string]uint64
	out   []*AppendRequest
	outTo []string
}

func (n *rvNode) perform() {
	for {
		n.c.progress(n.d.last(), n.d.last(), n.d.base, n.d.baseEpoch, n.d.truncs, nil)
		rd := n.c.takeReady()
		if rd.empty() {
			return
		}
		for _, o := range rd.ops {
			if err := n.d.apply(o); err != nil {
				n.t.Fatalf("%s: disk refused: %v", n.c.name, err)
			}
		}
		for i := range rd.msgs {
			m := &rd.msgs[i]
			switch m.kind {
			case msgDial:
				n.dial[m.to.Name] = m.conn
			case msgAppend:
				req := *m.req
				if !framesStillMeant(m, n.d.truncs) {
					n.c.streamClosed(m.conn, ErrUnreachable) // what the driver does
					continue
				}
				if m.maxFrames > 0 {
					for s := req.PrevSeq + 1; s <= min(m.limit, n.d.last()) && len(req.Frames) < m.maxFrames; s++ {
						f, _ := n.d.frame(s)
						req.Frames = append(req.Frames, f)
					}
				}
				n.out = append(n.out, &req)
				n.outTo = append(n.outTo, m.to.Name)
				n.c.appendSent(m.conn, req.Gen, req.PrevSeq+1, len(req.Frames))
			}
		}
	}
}

// Found by review (issue 12's second reviewer): the driver takes a batch of
// inputs before it performs one ready, and reads a send's frames after the
// ready's log changes. In one batch the leader n1 of epoch 10 pumps n2
// (frames 5..6 of epoch 10 named), is deposed by n5's epoch 11, and
// truncates to n5's log: read afterwards, "frames 5..6" were n5's, sent to
// n2 in an epoch-10 message that n2 (which never promised 11) accepted, and
// n2 then held at or below its safe_seq frames no leader committed there.
// Now the send is dropped when the log truncated since the core named it,
// and a follower refuses frames of an epoch above the message's.
func TestCore_sendReadAfterTruncationInTheSameBatch(t *testing.T) {
	cfg := testCoreConfig()
	cfg.MaxInflight = 3
	voters := []string{"n1", "n2", "n3", "n4", "n5"}
	var peers []Peer
	for _, v := range voters[1:] {
		peers = append(peers, Peer{Name: v, Addr: v})
	}
	n1 := &rvNode{t: t, d: newSimDisk(fakeWAL("n1", 1)), dial: map[string]uint64{}}
	n1.c = newCore("n1", cfg, testLogger(t), promiseState{}, n1.d.view(), true)
	n1.c.campaign(10, voters, peers, &n1.conns)
	n1.perform()
	for _, p := range []string{"n2", "n3"} {
		n1.c.recvPromiseResp(10, Peer{Name: p, Addr: p}, &PromiseResponse{OK: true, Node: p, Promised: 10, WALID: fakeWAL(p, 1), Base: 1})
		n1.perform()
	}
	for _, p := range []string{"n2", "n3"} {
		n1.c.streamOpened(n1.dial[p])
		n1.perform()
	}
	for _, p := range []string{"n2", "n3"} {
		n1.c.recvAppendResp(n1.dial[p], ack(10, 1, fakeWAL(p, 1), 1, false))
		n1.perform()
	}
	if n1.c.ld == nil || !n1.c.ld.started {
		t.Fatal("n1 did not start epoch 10")
	}
	n1.c.propose(1, 0, payloads("e10", 5)) // Seq 2..6
	n1.perform()                           // n2 and n3 are sent 2..4 (MaxInflight 3)
	n1.c.recvAppendResp(n1.dial["n3"], ack(10, 1, fakeWAL("n3", 1), 2, false))
	n1.perform()

	// n5 leads epoch 11, having adopted n3's tail (10, 2).
	m5 := []Frame{
		{Seq: 3, Epoch: 11, Type: FrameEpochStart, Payload: epochStartPayload("n5", 11)},
		{Seq: 4, Epoch: 11, Type: FrameEvent, Payload: []byte(`{"m":4}`)},
		{Seq: 5, Epoch: 11, Type: FrameEvent, Payload: []byte(`{"m":5}`)},
		{Seq: 6, Epoch: 11, Type: FrameEvent, Payload: []byte(`{"m":6}`)},
	}
	// One batch: n2's ack (pumps n2), then n5's heartbeat and frames.
	n1.out, n1.outTo = nil, nil
	n1.c.recvAppendResp(n1.dial["n2"], ack(10, 1, fakeWAL("n2", 1), 4, false))
	n1.c.recvAppend(1, &AppendRequest{Epoch: 11, Leader: "n5", Gen: 1, PrevSeq: 2, PrevEpoch: 10, SafeSeq: 2})
	n1.c.recvAppend(1, &AppendRequest{Epoch: 11, Leader: "n5", Gen: 1, PrevSeq: 2, PrevEpoch: 10, SafeSeq: 3, EpochStarted: true, Frames: m5})
	n1.perform()
	for i, r := range n1.out {
		for _, f := range r.Frames {
			if f.Epoch > r.Epoch {
				t.Errorf("n1 sent %s an epoch-%d append carrying frame Seq=%d of epoch %d", n1.outTo[i], r.Epoch, f.Seq, f.Epoch)
			}
		}
	}

	// The follower's backstop: such a message is refused whole.
	n2d := newSimDisk(fakeWAL("n2", 1))
	n2d.st.PromisedEpoch = 10
	n2 := newCore("n2", cfg, testLogger(t), n2d.st, n2d.view(), true)
	n2.recvAppend(7, &AppendRequest{Epoch: 10, Leader: "n1", Gen: 1, PrevSeq: 0, Frames: []Frame{
		{Seq: 1, Epoch: 10, Type: FrameEpochStart, Payload: []byte(`{}`)}, {Seq: 2, Epoch: 11, Type: FrameEvent, Payload: []byte(`{}`)}}})
	rd := n2.takeReady()
	if len(rd.ops) != 0 {
		t.Errorf("n2 applied %d log changes from an epoch-10 message carrying an epoch-11 frame", len(rd.ops))
	}
}

// A follower that promises a new epoch has heard its candidate then, not
// before: its status must not carry the old leader's silence as the new
// one's (node's failure detector would suspect a new leader before its first
// message; found in review).
func TestCore_newEpochStartsUnheard(t *testing.T) {
	d := newSimDisk(fakeWAL("n2", 1))
	d.st.PromisedEpoch = 10
	c := newCore("n2", testCoreConfig(), testLogger(t), d.st, d.view(), true)
	c.tick(time.Second, 0)
	c.recvAppend(7, &AppendRequest{Epoch: 10, Leader: "n1", Gen: 1, PrevSeq: 0, SafeSeq: 0})
	c.takeReady()
	c.tick(3*time.Second, 0)
	if s := c.status(); s.SinceLeader != 2*time.Second {
		t.Fatalf("epoch 10: SinceLeader %s, want 2s", s.SinceLeader)
	}
	c.recvPromise(1, &PromiseRequest{Epoch: 11, Leader: "n3", Proto: Protocol})
	c.takeReady()
	c.tick(3500*time.Millisecond, 0)
	if s := c.status(); s.Epoch != 11 || s.SinceLeader != 500*time.Millisecond {
		t.Fatalf("after promising epoch 11 to n3: epoch %d, SinceLeader %s; want 11 and 500ms (since the promise request)", s.Epoch, s.SinceLeader)
	}
}
