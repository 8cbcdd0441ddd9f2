package walrepl

// Tests for the holes of issue 12, each written as the interleaving that lost
// (or could lose) acknowledged frames on bacce8a.

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// hold stops the first message of kind from → to on the in-memory network
// until release: a deterministic way to order one node's step against the
// others'. paused is closed once the message is held.
type hold struct {
	paused  chan struct{}
	release chan struct{}
}

func holdOnce(net *InmemNetwork, kind, from, to string) *hold {
	h := &hold{paused: make(chan struct{}), release: make(chan struct{})}
	var once sync.Once
	net.SetHook(func(k, f, t string) {
		if k != kind || f != from || t != to {
			return
		}
		held := false
		once.Do(func() { held = true })
		if held {
			close(h.paused)
			<-h.release
		}
	})
	return h
}

func (h *hold) wait(t *testing.T, what string) {
	t.Helper()
	select {
	case <-h.paused:
	case <-time.After(5 * time.Second):
		t.Fatal(what)
	}
}

// Hole 1: a candidate that was descheduled between its promise round and
// adopt() must not act on the promise it no longer holds.
//
//  1. n1 holds epoch-A frames 1..6; 5..6 are uncommitted.
//  2. n2's tail is (B, 5), B > A, written by a candidate whose stream never
//     reached n3.
//  3. n1 runs for E, gets n2's promise, and is descheduled before adopt.
//  4. n3 runs for F > E with n1's promise, adopts (A, 6) and commits its
//     barrier at 7 on {n1, n3}. n1's safe_seq is still 4.
//  5. n3 dies; n1 resumes. On bacce8a adopt truncated n1 to 4 (its stale
//     tail said so, and safe_seq 4 allowed it) and {n1, n2} then elected a
//     leader without Seq 5..7, which n3 had committed.
//
// Seen to fail on bacce8a (Seq 5..7 gone from the new leader). The core
// (core_lead.go) closes it by construction: the window is the fetch, and
// n3's promise request, processed on the same loop, ends the candidacy at
// once (acceptEpoch → endLead), so the late fetch answer finds no
// candidate; adopt also compares its own tail with the one promised.
func TestHole1_adoptOnStalePromise(t *testing.T) {
	c := makeClusterWith(t, 3, func(name string, rc *ReplicaConfig) {
		if name == "n3" {
			// n1 learns F's safe_seq only from a heartbeat; keep the next
			// one far away so n3 dies before sending it.
			rc.HeartbeatInterval = 2 * time.Second
			rc.QuorumTimeout = 10 * time.Second
		}
	})
	// 1. epoch A on n1: barrier + 3 events committed (Seq 1..4).
	c.elect("n1")
	c.waitStarted("n1", 5*time.Second)
	c.mustPropose("n1", "a-committed", 3)
	waitFor(t, 5*time.Second, "every node to hold Seq 4", func() bool {
		return c.walOf("n2").SafeSeq() >= 4 && c.walOf("n3").SafeSeq() >= 4
	})
	c.net.Isolate("n1", "n2", "n3")
	if _, _, err := c.propose("n1", "a-uncommitted", 2, 300*time.Millisecond); err == nil {
		t.Fatal("an isolated leader acknowledged")
	}
	c.stepDown("n1")
	waitFor(t, 5*time.Second, "n1's uncommitted 5..6 to be durable", func() bool {
		_, _, d, _ := c.walOf("n1").Positions()
		return d == 6
	})

	// 2. epoch B on n2: n3 promises, and the link breaks before n2's stream
	// brings n3 the barrier. (No node restarts: a restarted n3 would be
	// unconfirmed and could not elect with n1 alone in step 4, rule 13.)
	h2 := holdOnce(c.net, "stream", "n2", "n3")
	c.elect("n2")
	h2.wait(t, "n2's promise round never got n3's answer")
	c.net.Isolate("n3", "n2")
	close(h2.release)
	waitFor(t, 5*time.Second, "n2 to write its barrier at Seq 5", func() bool {
		return c.walOf("n2").WrittenSeq() >= 5
	})
	c.stepDown("n2")
	if last, _, _, _ := c.walOf("n3").Positions(); last != 4 {
		t.Fatalf("n3 holds Seq %d, want 4", last)
	}
	_, eB, _, _ := c.walOf("n2").Positions()

	// 3. n1 runs for E with only n2 reachable, gets n2's promise, and its
	// fetch of n2's better tail is held on the way.
	c.net.Heal()
	c.net.Isolate("n1", "n3")
	h1 := holdOnce(c.net, "fetch", "n1", "n2")
	epochE := c.elect("n1")
	h1.wait(t, "n1's promise round never got n2's answer")

	// 4. n3 runs for F with n1's promise (n2 cut off) and commits its barrier.
	c.net.Heal()
	c.net.Isolate("n2", "n1", "n3")
	c.elect("n3")
	c.waitStarted("n3", 5*time.Second)
	committed := c.frames("n3")
	if len(committed) != 7 || c.walOf("n3").SafeSeq() != 7 {
		t.Fatalf("n3 has %d frames, safe_seq %d; want its barrier committed at 7", len(committed), c.walOf("n3").SafeSeq())
	}
	if s := c.walOf("n1").SafeSeq(); s != 4 {
		t.Logf("n1 learned safe_seq %d before n3 died (the interleaving wants 4); the check below still applies", s)
	}

	// 5. n3 dies; n1 resumes with its stale view.
	c.crash("n3")
	c.net.Heal()
	close(h1.release)
	err, ok := c.leadEnded("n1", 5*time.Second)
	if !ok {
		t.Fatal("n1's Lead for the stale epoch did not end")
	}
	if !errors.Is(err, ErrDeposed) {
		t.Errorf("n1's Lead for epoch %d ended with %v, want ErrDeposed (it promised a higher epoch)", epochE, err)
	}
	if err := c.walOf("n1").Err(); err != nil {
		t.Fatalf("n1's WAL failed: %v", err)
	}

	// 6. {n1, n2} elect a leader: it must hold everything n3 committed.
	c.elect("n2")
	c.waitStarted("n2", 5*time.Second)
	got := c.frames("n2")
	for i, f := range committed {
		if i >= len(got) || !sameFrame(got[i], f) {
			t.Fatalf("frame Seq=%d committed by n3 (epoch %d) is gone or different on the new leader n2 (B was %d)", f.Seq, f.Epoch, eB)
		}
	}
	c.mustPropose("n2", "after", 1)
	c.start("n3", false)
	c.waitConverged("n2", 10*time.Second)
}

func ack(epoch, gen uint64, id [16]byte, durable uint64, learner bool) *AppendResponse {
	return &AppendResponse{Epoch: epoch, Gen: gen, OK: true, DurableSeq: durable, Learner: learner, WALID: id}
}

// fakePeer is a peer the test plays by hand: it promises every epoch with an
// empty log and hands each append stream to the test.
type fakePeer struct {
	name    string
	streams chan ServerStream
}

func (f *fakePeer) HandlePromise(_ context.Context, req *PromiseRequest) *PromiseResponse {
	return &PromiseResponse{OK: true, Node: f.name, Promised: req.Epoch, WALID: fakeWAL(f.name, 1), Base: 1}
}

func (f *fakePeer) HandleFetch(context.Context, *FetchRequest) *FetchResponse {
	return &FetchResponse{OK: false}
}

func (f *fakePeer) HandleStream(ctx context.Context, s ServerStream) error {
	select {
	case f.streams <- s:
	case <-ctx.Done():
	}
	<-ctx.Done()
	return ctx.Err()
}

func fakeWAL(name string, gen byte) (id [16]byte) {
	copy(id[:], name)
	id[15] = gen
	return id
}

// drain reads (and drops) the leader's requests on s until the test ends,
// reporting the first one's Gen.
func drain(t *testing.T, s ServerStream) uint64 {
	req, err := s.Recv()
	if err != nil {
		t.Fatalf("fake peer: first request: %v", err)
	}
	go func() {
		for {
			if _, err := s.Recv(); err != nil {
				return
			}
		}
	}()
	return req.Gen
}

// Hole 4: acks from a follower's WAL that was replaced (reset) must never
// count again, whether they arrive late on the old stream (the receive
// goroutine outlived its stream) or carry the old WAL id after the new one
// was seen.
//
// Seen to fail on bacce8a: "retired id" (the WAL-id check noticed a change,
// not its direction) and "late ack of an old stream" (the receive goroutine
// was not joined when stream() returned).
func TestHole4_staleAcks(t *testing.T) {
	setup := func(t *testing.T, clk Clock) (*testCluster, *fakePeer, uint64) {
		c := makeClusterWith(t, 3, func(name string, rc *ReplicaConfig) {
			if clk != nil && name == "n1" {
				rc.Clock = clk
			}
			rc.QuorumTimeout = 5 * time.Second
		})
		c.crash("n2")
		c.crash("n3")
		fp := &fakePeer{name: "n2", streams: make(chan ServerStream, 4)}
		c.net.Register("n2", fp)
		epoch := c.elect("n1")
		return c, fp, epoch
	}
	notCommitted := func(t *testing.T, c *testCluster, res chan error) {
		t.Helper()
		select {
		case err := <-res:
			t.Fatalf("Seq 2..4 acknowledged (err=%v) though n2's only copy of them was replaced by an empty WAL", err)
		case <-time.After(500 * time.Millisecond):
		}
		if s := c.walOf("n1").SafeSeq(); s > 1 {
			t.Fatalf("safe_seq %d: frames counted on a replaced WAL", s)
		}
	}
	propose := func(c *testCluster) chan error {
		res := make(chan error, 1)
		go func() {
			_, _, err := c.propose("n1", "x", 3, 10*time.Second)
			res <- err
		}()
		return res
	}

	t.Run("retired id", func(t *testing.T) {
		c, fp, epoch := setup(t, nil)
		s := <-fp.streams
		gen := drain(t, s)
		old, reset := fakeWAL("n2", 1), fakeWAL("n2", 2)
		s.Send(ack(epoch, gen, old, 1, false))
		c.waitStarted("n1", 5*time.Second)
		res := propose(c)
		waitFor(t, 5*time.Second, "Seq 2..4 to be written", func() bool { return c.walOf("n1").WrittenSeq() >= 4 })
		s.Send(ack(epoch, gen, reset, 0, true)) // n2 was reset: a new, empty learner WAL
		waitFor(t, 5*time.Second, "the leader to see n2's new WAL", func() bool {
			for _, p := range c.node("n1").rep.Status().Peers {
				if p.Name == "n2" && p.WALID == IDString(reset) {
					return true
				}
			}
			return false
		})
		s.Send(ack(epoch, gen, old, 4, false)) // a late ack of the old WAL
		notCommitted(t, c, res)
	})

	// The same WAL id restarts as a learner (its disk was rolled back); an
	// ack its old process sent before the restart reaches the leader after
	// the new stream opened. Played on the core itself, where the order of
	// inputs is the test's to choose.
	t.Run("late ack of an old stream", func(t *testing.T) {
		tc := newLeaderCore(t)
		c := tc.c
		old := fakeWAL("n2", 1)
		conn1 := tc.conn["n2"]
		c.proposeOK(t, 3) // Seq 2..4, fsynced by the leader
		// The old process of n2 fsynced 2..4 and acked: the ack is on its
		// way when the stream breaks and n2 restarts on an old copy.
		c.streamClosed(conn1, ErrUnreachable)
		tc.tickUntilDial(t, "n2")
		conn2 := tc.conn["n2"]
		c.streamOpened(conn2)
		c.recvAppendResp(conn2, ack(tc.epoch, 1, old, 1, true))
		c.recvAppendResp(conn1, ack(tc.epoch, 1, old, 4, false)) // the late ack
		tc.drain()
		if got := c.lv.safe; got > 1 {
			t.Fatalf("safe_seq %d: a late ack of n2's old stream counted after its new stream opened", got)
		}
	})
}

// appendAt appends n committed frames stamped ts.
func appendAt(t *testing.T, w *WAL, n int, ts int64) {
	t.Helper()
	var last uint64
	for i := 0; i < n; i++ {
		var err error
		if _, last, err = w.Append(1, FrameEvent, ts, [][]byte{[]byte(`{"k":"v"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.WaitDurable(context.Background(), last); err != nil {
		t.Fatal(err)
	}
	w.SetSafeSeq(last)
}

// Hole 3: age retention must not delete telemetry younger than the bound
// because a wall clock moved: not this node's (stepped forward) and not the
// leader's that stamped the frames (running behind).
//
// Seen to fail on bacce8a (retention.go computed its cutoff from
// time.Now()): "forward step" trimmed every committed frame.
func TestHole3_retentionAgeIgnoresClockSteps(t *testing.T) {
	const maxAge = time.Hour
	r := Retention{MaxAge: maxAge}
	open := func(t *testing.T, dir string, clk Clock) *WAL {
		o := DefaultOptions(dir)
		o.Logger = quietLogger()
		o.Clock = clk
		w, _, err := Open(o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Close() })
		return w
	}

	t.Run("forward step", func(t *testing.T) {
		clk := &jumpClock{}
		w := open(t, t.TempDir(), clk)
		appendAt(t, w, 10*indexStride, clk.Now().UnixNano())
		clk.mu.Lock()
		clk.offset += 10 * maxAge // NTP or an operator steps the clock
		clk.mu.Unlock()
		if nb := w.retentionBase(r); nb != 0 {
			t.Fatalf("after a forward clock step, age retention would trim to Seq %d; the frames are seconds old", nb)
		}
	})

	t.Run("leader clock behind", func(t *testing.T) {
		clk := &jumpClock{}
		w := open(t, t.TempDir(), clk)
		// Frames replicated from a leader whose clock is two hours behind.
		appendAt(t, w, 10*indexStride, clk.Now().Add(-2*maxAge).UnixNano())
		if nb := w.retentionBase(r); nb != 0 {
			t.Fatalf("frames this node received a moment ago would be trimmed to Seq %d by their stamps", nb)
		}
	})

	t.Run("old frames are still trimmed", func(t *testing.T) {
		dir := t.TempDir()
		clk := &jumpClock{}
		w := open(t, dir, clk)
		appendAt(t, w, 10*indexStride, clk.Now().Add(-2*maxAge).UnixNano())
		appendAt(t, w, 2*indexStride, clk.Now().UnixNano())
		w.persistSafeSeq()
		w.Close()
		w = open(t, dir, clk) // found on disk: their stamps are all there is
		nb := w.retentionBase(r)
		if nb != 1+10*indexStride {
			t.Fatalf("retention base %d, want %d (the frames stamped two hours ago)", nb, 1+10*indexStride)
		}
	})
}

// copyTree copies dir to dst (files only, one level: a telemetry directory).
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// Hole 2, deterministically: a follower's disk is rolled back to an old copy
// (same WAL id, nothing tells it) at once after it acknowledged frames that
// only it and the leader hold, and the leader dies. Whatever the timing, the
// restarted node and the lagging one must not elect a leader without those
// frames; once the old leader returns, every acknowledged frame is there.
//
// Seen to fail on bacce8a: n3 started epoch 40 without the frames committed
// on {n1, n2}. The etcd position record of node/ did not cover it: it is
// written every 200 ms, and this copy is restored inside that window.
func TestHole2_rolledBackDiskRestoredAtOnce(t *testing.T) {
	c := makeCluster(t, 3)
	c.elect("n1")
	c.waitStarted("n1", 5*time.Second)
	acked := newAckLog()
	if err := c.proposeAck(acked, "n1", payloads("before", 5), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c.waitConverged("n1", 5*time.Second)

	// An old copy of n2's disk, taken while it was stopped.
	copyDir := filepath.Join(t.TempDir(), "n2-copy")
	c.crash("n2")
	copyTree(t, c.node("n2").dir, copyDir)
	c.start("n2", false)
	if err := c.proposeAck(acked, "n1", payloads("after-copy", 5), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c.waitConverged("n1", 5*time.Second)

	// n3 is cut off; n1 and n2 alone commit more.
	c.net.Isolate("n3", "n1", "n2")
	if err := c.proposeAck(acked, "n1", payloads("n1-n2-only", 20), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// At once: n2's disk is rolled back to the copy and n2 restarts; the
	// leader dies.
	c.crash("n2")
	if err := os.RemoveAll(c.node("n2").dir); err != nil {
		t.Fatal(err)
	}
	copyTree(t, copyDir, c.node("n2").dir)
	c.start("n2", false)
	c.crash("n1")
	c.net.Heal()

	c.elect("n3")
	time.Sleep(2500 * time.Millisecond) // longer than a promise round takes
	if c.node("n3").rep.Status().EpochStarted {
		c.checkAcked(acked, "n3")
		t.Fatal("n3 started an epoch with only the rolled-back n2; it must wait for n1")
	}
	c.elect("n2")
	time.Sleep(2500 * time.Millisecond)
	if c.node("n2").rep.Status().EpochStarted {
		c.checkAcked(acked, "n2")
		t.Fatal("the rolled-back n2 started an epoch with n3; it must wait for n1")
	}

	// The old leader returns: nothing acknowledged is lost.
	c.stepDown("n2")
	c.start("n1", false)
	c.elect("n3")
	c.waitStarted("n3", 10*time.Second)
	if err := c.proposeAck(acked, "n3", payloads("after", 3), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c.waitConverged("n3", 10*time.Second)
	for _, n := range c.names {
		c.checkAcked(acked, n)
	}
}

// Hole 2, second path: an ack that an old process of a follower sent must
// not count toward a commit that the follower's new process was not told
// of. The new process (here on an old copy of the disk) takes the safe_seq
// of the first started-epoch message it gets as its confirmation mark
// (rule 13); a frame committed afterwards on the old process's ack would be
// on no confirmed node but the leader. The leader's own fsync stalls, so the
// old ack is all it waits for.
//
// Seen to fail before the leader forgot a peer's match at each new stream
// (commit reached Seq 4 on the old ack after the new stream's first message
// said 1).
func TestHole2_oldProcessAckAfterNewStream(t *testing.T) {
	c := makeClusterWith(t, 3, func(name string, rc *ReplicaConfig) { rc.QuorumTimeout = 5 * time.Second })
	c.crash("n2")
	c.crash("n3")
	fp := &fakePeer{name: "n2", streams: make(chan ServerStream, 4)}
	c.net.Register("n2", fp)
	epoch := c.elect("n1")
	id := fakeWAL("n2", 1)
	s1 := <-fp.streams
	gen := drain(t, s1)
	s1.Send(&AppendResponse{Epoch: epoch, Gen: gen, OK: true, DurableSeq: 1, WALID: id})
	c.waitStarted("n1", 5*time.Second)

	g := newGate(t)
	c.setInject("n1", g.at("wal-before-fsync", nil))
	res := make(chan error, 1)
	go func() { _, _, err := c.propose("n1", "x", 3, 10*time.Second); res <- err }()
	waitFor(t, 5*time.Second, "Seq 2..4 to be written on n1", func() bool { return c.walOf("n1").WrittenSeq() >= 4 })
	s1.Send(&AppendResponse{Epoch: epoch, Gen: gen, OK: true, DurableSeq: 4, WALID: id}) // the old process fsynced 2..4
	waitFor(t, 5*time.Second, "n1 to take n2's ack of Seq 4", func() bool {
		for _, p := range c.node("n1").rep.Status().Peers {
			if p.Name == "n2" && p.DurableSeq >= 4 {
				return true
			}
		}
		return false
	})

	// n2 restarts on an old copy: the stream breaks and a new one opens.
	c.net.Cut("n1", "n2")
	time.Sleep(50 * time.Millisecond)
	c.net.Heal()
	s2 := <-fp.streams
	first, err := s2.Recv()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			if _, err := s2.Recv(); err != nil {
				return
			}
		}
	}()
	if !first.EpochStarted {
		t.Fatalf("the new stream's first message is not of a started epoch: %+v", first)
	}
	mark := first.SafeSeq // what n2's new process must hold to be confirmed
	g.release()           // n1's own fsync of 2..4 completes
	select {
	case err := <-res:
		if s := c.walOf("n1").SafeSeq(); err == nil && s > mark {
			t.Fatalf("Seq 2..4 acknowledged with safe_seq %d on the old process's ack, after telling the new one %d", s, mark)
		}
	case <-time.After(500 * time.Millisecond):
	}
	if s := c.walOf("n1").SafeSeq(); s > mark {
		t.Fatalf("safe_seq %d counts an ack of n2's old process; n2's new process was told %d", s, mark)
	}
}
