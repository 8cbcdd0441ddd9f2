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
