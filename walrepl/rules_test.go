package walrepl

// One test per replication rule of DESIGN §6 (rules 1–9; 10 and 11 are
// API-level and tested there). Above each test: the production change that
// breaks the rule and that the test was seen to fail with.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gate blocks a WAL fault point until opened; once failing is set, a
// blocked or later call returns an error (the process "died" there).
type gate struct {
	open    chan struct{}
	once    sync.Once
	failing atomic.Bool
}

// newGate returns a shut gate; it is killed at the end of t so no
// goroutine stays blocked on it (registered after makeCluster, it runs before
// the cluster is crashed).
func newGate(t *testing.T) *gate {
	g := &gate{open: make(chan struct{})}
	t.Cleanup(g.kill)
	return g
}

func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

// kill makes the blocked call fail, as if the process died before it
// completed, and releases it.
func (g *gate) kill() { g.failing.Store(true); g.release() }

func (g *gate) wait() error {
	<-g.open
	if g.failing.Load() {
		return errors.New("test: process died here")
	}
	return nil
}

// at returns a fault seam that blocks on g at point when cond (if any)
// holds.
func (g *gate) at(point string, cond func() bool) func(string) error {
	return func(p string) error {
		if p == point && (cond == nil || cond()) {
			return g.wait()
		}
		return nil
	}
}

// fakeServerStream drives a Replica's HandleStream directly, standing in for
// a leader (possibly an old one).
type fakeServerStream struct {
	reqs  chan *AppendRequest
	resps chan *AppendResponse
	done  chan error
}

func openFakeStream(r *Replica) *fakeServerStream {
	s := &fakeServerStream{reqs: make(chan *AppendRequest, 16), resps: make(chan *AppendResponse, 1024), done: make(chan error, 1)}
	go func() { s.done <- r.HandleStream(context.Background(), s) }()
	return s
}

func (s *fakeServerStream) Recv() (*AppendRequest, error) {
	r, ok := <-s.reqs
	if !ok {
		return nil, io.EOF
	}
	return r, nil
}

func (s *fakeServerStream) Send(r *AppendResponse) error {
	select {
	case s.resps <- r:
		return nil
	default:
		return errors.New("test: response buffer full")
	}
}

func (s *fakeServerStream) close() error { close(s.reqs); return <-s.done }

// next waits for the next response.
func (s *fakeServerStream) next(t *testing.T, d time.Duration) *AppendResponse {
	t.Helper()
	select {
	case r := <-s.resps:
		return r
	case <-time.After(d):
		t.Fatalf("no response from the follower within %s", d)
		return nil
	}
}

// expectRefusedEpoch checks that r refuses promise, fetch and append of an
// epoch below promised, and that its log does not change.
func expectRefusedEpoch(t *testing.T, c *testCluster, name string, old, promised uint64) {
	t.Helper()
	r := c.node(name).rep
	w := c.walOf(name)
	before := w.Status().LastSeq
	if p := r.HandlePromise(context.Background(), &PromiseRequest{Epoch: old, Leader: "old"}); p.OK || p.Promised != promised {
		t.Errorf("%s: promise of old epoch %d: OK=%v promised=%d, want refusal naming %d", name, old, p.OK, p.Promised, promised)
	}
	if f := r.HandleFetch(context.Background(), &FetchRequest{Epoch: old, From: 1}); f.OK {
		t.Errorf("%s: fetch in old epoch %d was served", name, old)
	}
	s := openFakeStream(r)
	s.reqs <- &AppendRequest{Epoch: old, Leader: "old", Gen: 1, PrevSeq: before, PrevEpoch: w.Status().LastEpoch, SafeSeq: before + 1,
		Frames: []Frame{{Seq: before + 1, Epoch: old, Type: FrameEvent, Payload: []byte(`{"stale":true}`)}}}
	resp := s.next(t, 2*time.Second)
	if resp.OK || resp.Promised != promised {
		t.Errorf("%s: append of old epoch %d answered OK=%v promised=%d, want a refusal naming %d", name, old, resp.OK, resp.Promised, promised)
	}
	s.close()
	for len(s.resps) > 0 {
		if r := <-s.resps; r.OK {
			t.Errorf("%s: old-epoch stream got an OK answer %+v", name, r)
		}
	}
	if got := c.walOf(name).Status().LastSeq; got != before {
		t.Errorf("%s: log grew from %d to %d on an old-epoch append", name, before, got)
	}
}

// Rule 1: a frame is committed (and acknowledged) only once a majority of
// voters has fsynced it; safe_seq only grows.
//
// Mutations (sim_mutants_test.go, also found by the simulator):
// rule1-quorum-of-one (the leader alone commits) and rule1-ack-before-fsync
// (a follower acknowledges before its fsync).
func TestRule1_commitNeedsMajorityFsync(t *testing.T) {
	c := makeCluster(t, 3)
	c.elect("n1")
	c.waitStarted("n1", 5*time.Second)
	c.mustPropose("n1", "base", 5)
	leader := c.walOf("n1")
	safe0 := leader.SafeSeq()
	// "base" committed on n1 and one follower; n2 may still be fsyncing it.
	// Gate n2's fsync only once that is done, or the gate stops n2 on the
	// base batch and it never writes the new frames.
	waitFor(t, 5*time.Second, "n2 to fsync the base frames", func() bool {
		_, _, d, _ := c.walOf("n2").Positions()
		return d >= safe0
	})

	// n3 is unreachable and n2 receives frames but cannot fsync them: the
	// leader's own fsync is not a majority.
	c.net.Isolate("n3", "n1", "n2")
	g := newGate(t)
	c.setInject("n2", g.at("wal-before-fsync", nil))
	res := make(chan error, 1)
	var last atomic.Uint64
	go func() {
		_, l, err := c.propose("n1", "needs-n2-fsync", 3, 10*time.Second)
		last.Store(l)
		res <- err
	}()
	waitFor(t, 5*time.Second, "n2 to receive the frames", func() bool {
		l, _, _, _ := leader.Positions()
		return l > safe0 && c.walOf("n2").WrittenSeq() >= l
	})
	deadline := time.Now().Add(400 * time.Millisecond)
	for time.Now().Before(deadline) {
		select {
		case err := <-res:
			t.Fatalf("Propose returned (err=%v) before a majority fsynced the frames", err)
		default:
		}
		if s := leader.SafeSeq(); s != safe0 {
			t.Fatalf("leader safe_seq moved %d → %d with one fsync of three", safe0, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
	g.release()
	select {
	case err := <-res:
		if err != nil {
			t.Fatalf("Propose after n2's fsync: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Propose did not return after n2 fsynced")
	}
	if s := leader.SafeSeq(); s < last.Load() {
		t.Fatalf("acknowledged Seq=%d above the leader's safe_seq %d", last.Load(), s)
	}
	if _, _, d, _ := c.walOf("n2").Positions(); d < last.Load() {
		t.Fatalf("acknowledged Seq=%d but n2 fsynced only %d", last.Load(), d)
	}

	// A leader cut off from every follower never acknowledges, and its
	// safe_seq does not move (and never goes down).
	c.setInject("n2", nil)
	c.net.Heal()
	c.elect("n1")
	c.waitStarted("n1", 5*time.Second)
	leader = c.walOf("n1")
	safe1 := leader.SafeSeq()
	c.net.Isolate("n1", "n2", "n3")
	if _, _, err := c.propose("n1", "partitioned", 2, 400*time.Millisecond); err == nil {
		t.Fatal("a partitioned leader acknowledged a proposal")
	}
	if s := leader.SafeSeq(); s != safe1 {
		t.Fatalf("partitioned leader's safe_seq moved %d → %d", safe1, s)
	}
}

// Rule 2: a node that accepted epoch E refuses every message of a smaller
// epoch (promise, fetch, append), and the promise survives a restart.
//
// Mutations: rule2-old-epoch-accepted (core.go acceptEpoch's refusal
// deleted) and rule2-promise-not-persisted (the promise kept in memory only;
// the check after the restart fails).
func TestRule2_oldEpochRefused(t *testing.T) {
	c := makeCluster(t, 3)
	e1 := c.elect("n1")
	c.waitStarted("n1", 5*time.Second)
	acked := newAckLog()
	if err := c.proposeAck(acked, "n1", payloads("e1", 4), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	e2 := c.elect("n2")
	c.waitStarted("n2", 5*time.Second)
	if err := c.proposeAck(acked, "n2", payloads("e2", 4), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err, ok := c.leadEnded("n1", 3*time.Second); !ok {
		t.Fatal("the leader of the old epoch did not step down")
	} else if !errors.Is(err, ErrDeposed) && !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("old leader's Lead returned %v, want ErrDeposed", err)
	}

	// Old-epoch messages sent straight to n3 are refused, before and after
	// a restart. n3 may not have been in the majority that committed n2's
	// frames: wait until it holds them, so that only the old-epoch append
	// could make its log grow.
	l2, _, _, _ := c.walOf("n2").Positions()
	waitFor(t, 5*time.Second, "n3 to hold n2's log", func() bool { return c.walOf("n3").WrittenSeq() >= l2 })
	expectRefusedEpoch(t, c, "n3", e1, e2)
	c.restart("n3")
	if p := c.node("n3").rep.Status().Promised; p != e2 {
		t.Fatalf("n3's promised epoch after restart is %d, want %d", p, e2)
	}
	expectRefusedEpoch(t, c, "n3", e1, e2)
	if _, _, err := c.propose("n1", "old", 1, 100*time.Millisecond); err == nil {
		t.Fatal("old leader acknowledged")
	}

	if err := c.proposeAck(acked, "n2", payloads("e2-after", 2), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c.waitConverged("n2", 5*time.Second)
	for _, n := range c.names {
		c.checkAcked(acked, n)
	}
}

// Rule 2, cluster level: a deposed leader that can still reach a node which
// promised the new epoch must not gather a majority with it, whatever that
// node's log holds for the new epoch.
//
// n1 (epoch A, heartbeats off so it only learns of B by sending) is cut off
// from n2, which leads epoch B with n3 and commits a longer log. n1's stream
// to n3 stays open. n3 is then kept busy (a promise it is answering holds
// its log lock while its disk is slow), so n1's next frames wait at n3 for
// a moment: n1 must not count anything n3 says in epoch B as an ack.
//
// Failed before 4bbc038 (deterministically, in this form): the follower's
// acker acked on every open stream with the replica's current epoch and
// matched Seq, and the leader counted acks without checking their epoch, so
// n1 acknowledged frames n3 never held. Mutation (restoring that):
// rule2-acks-of-another-epoch.
func TestRule2_deposedLeaderCannotCommit(t *testing.T) {
	c := makeClusterWith(t, 3, func(name string, rc *ReplicaConfig) {
		if name == "n1" {
			rc.HeartbeatInterval, rc.QuorumTimeout = time.Hour, 2*time.Hour // no heartbeats, no quorum watch
		}
	})
	e1 := c.elect("n1")
	c.waitStarted("n1", 5*time.Second)
	acked := newAckLog()
	if err := c.proposeAck(acked, "n1", payloads("e1", 4), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c.net.Isolate("n1", "n2")
	e2 := c.elect("n2")
	c.waitStarted("n2", 5*time.Second)
	if err := c.proposeAck(acked, "n2", payloads("e2", 4), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	high := c.walOf("n2").SafeSeq()
	waitFor(t, 5*time.Second, "n3 to fsync epoch B's log", func() bool { _, _, d, _ := c.walOf("n3").Positions(); return d >= high })
	// Give n3 time to say whatever it says on n1's stream.
	for deadline := time.Now().Add(300 * time.Millisecond); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, p := range c.node("n1").rep.Status().Peers {
			if p.Name == "n3" && p.DurableSeq >= high {
				t.Logf("n1 believes n3 fsynced Seq=%d of its log (epoch %d); n3 holds epoch %d's", p.DurableSeq, e1, e2)
				deadline = time.Now()
			}
		}
	}
	// n3's disk stalls with a frame of n2's queued, and n3 is asked for a
	// promise of epoch B: it answers only once that frame is durable.
	g := newGate(t)
	w3 := c.walOf("n3")
	c.setInject("n3", g.at("wal-before-fsync", nil))
	held := make(chan error, 1)
	go func() { held <- c.proposeAck(acked, "n2", payloads("held", 1), 3*time.Second) }()
	waitFor(t, 5*time.Second, "a frame queued on n3", func() bool { l, _, d, _ := w3.Positions(); return l > d })
	promised := make(chan *PromiseResponse, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		promised <- c.node("n3").rep.HandlePromise(ctx, &PromiseRequest{Epoch: e2, Leader: "n2"})
	}()
	// A promise reports only a durable tail: n3 must not answer before the
	// stalled fsync completes.
	time.Sleep(100 * time.Millisecond)
	select {
	case resp := <-promised:
		t.Fatalf("n3 answered a promise (%+v) while its tail was not fsynced", resp)
	default:
	}
	if err := c.proposeAck(acked, "n1", payloads("deposed", 2), 500*time.Millisecond); err == nil {
		t.Errorf("the deposed leader of epoch %d acknowledged frames that only it holds", e1)
	}
	g.release()
	<-promised
	<-held
	c.stepDown("n1")
	c.net.Heal()
	if err := c.proposeAck(acked, "n2", payloads("e2-after", 2), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c.waitConverged("n2", 5*time.Second)
	for _, n := range c.names {
		c.checkAcked(acked, n)
	}
}

// Rule 3: a new leader serves no write until its epoch-start frame is
// committed, and adopts the most up-to-date tail of its promise majority,
// compared by (last frame's epoch, last Seq) — not by length.
//
// Mutations: rule3-serves-before-barrier (part 1) and rule3-longest-log-wins
// (part 2: replica.go better() compares lengths only).
func TestRule3_barrierAndBestTail(t *testing.T) {
	t.Run("barrier", func(t *testing.T) {
		c := makeCluster(t, 3)
		g := newGate(t)
		c.setInject("n2", g.at("wal-before-fsync", nil))
		c.setInject("n3", g.at("wal-before-fsync", nil))
		c.elect("n1")
		waitFor(t, 5*time.Second, "n1 to append its barrier", func() bool {
			return c.node("n1").rep.Status().Role == RoleLeader && c.walOf("n2").WrittenSeq() >= 1
		})
		deadline := time.Now().Add(300 * time.Millisecond)
		for time.Now().Before(deadline) {
			if c.node("n1").rep.Status().EpochStarted {
				t.Fatal("epoch reported started before its barrier frame was committed")
			}
			_, _, err := c.propose("n1", "early", 1, 50*time.Millisecond)
			if !errors.Is(err, ErrEpochNotStarted) {
				t.Fatalf("Propose before the barrier committed: %v, want ErrEpochNotStarted", err)
			}
		}
		if s := c.walOf("n1").SafeSeq(); s != 0 {
			t.Fatalf("safe_seq=%d before any follower fsynced", s)
		}
		g.release()
		c.waitStarted("n1", 5*time.Second)
		f, l := c.mustPropose("n1", "after", 2)
		if f != 2 || l != 3 {
			t.Fatalf("first proposal got Seq %d..%d, want 2..3 after the barrier at 1", f, l)
		}
	})

	t.Run("bestTailByEpochThenSeq", func(t *testing.T) {
		c := makeCluster(t, 3)
		c.elect("n1")
		c.waitStarted("n1", 5*time.Second)
		acked := newAckLog()
		if err := c.proposeAck(acked, "n1", payloads("base", 3), 5*time.Second); err != nil {
			t.Fatal(err)
		}
		// n1, cut off, writes a long uncommitted tail in its old epoch.
		c.net.Isolate("n1", "n2", "n3")
		if _, _, err := c.propose("n1", "orphan", 20, 300*time.Millisecond); err == nil {
			t.Fatal("isolated leader acknowledged")
		}
		c.stepDown("n1")
		// n2 and n3 commit a shorter tail in a newer epoch.
		c.elect("n2")
		c.waitStarted("n2", 5*time.Second)
		if err := c.proposeAck(acked, "n2", payloads("newer", 2), 5*time.Second); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "n3 to learn the commit", func() bool {
			return c.walOf("n3").SafeSeq() == c.walOf("n2").SafeSeq()
		})
		c.crash("n2")
		c.net.Heal()
		// n3 gets n1's promise: n1's log is longer but older.
		c.elect("n3")
		c.waitStarted("n3", 5*time.Second)
		c.checkAcked(acked, "n3")
		if err := c.proposeAck(acked, "n3", payloads("e3", 1), 5*time.Second); err != nil {
			t.Fatal(err)
		}
		c.start("n2", false)
		c.waitConverged("n3", 5*time.Second)
		for _, n := range c.names {
			c.checkAcked(acked, n)
		}
	})
}

// Rule 4: a follower truncates only its uncommitted divergent suffix and
// converges; asked to truncate at or below its safe_seq, it fail-hards.
//
// Mutations: rule4-divergent-suffix-kept (part 1, the follower keeps its
// divergent suffix). Seen to fail (part 2, WAL code, not in the simulator's
// table): wal.go TruncateAfter, delete the `if seq < w.safeSeq { ... }`
// refusal.
func TestRule4_divergentSuffix(t *testing.T) {
	t.Run("truncatedAndConverges", func(t *testing.T) {
		c := makeCluster(t, 3)
		c.elect("n1")
		c.waitStarted("n1", 5*time.Second)
		acked := newAckLog()
		if err := c.proposeAck(acked, "n1", payloads("base", 5), 5*time.Second); err != nil {
			t.Fatal(err)
		}
		c.net.Isolate("n1", "n2", "n3")
		c.propose("n1", "divergent", 10, 300*time.Millisecond)
		c.stepDown("n1")
		base := acked.len() + 1 // frames incl. barrier
		if l := c.walOf("n1").Status().LastSeq; l <= uint64(base) {
			t.Fatalf("n1 has no divergent suffix (last %d)", l)
		}
		c.elect("n2")
		c.waitStarted("n2", 5*time.Second)
		if err := c.proposeAck(acked, "n2", payloads("new", 3), 5*time.Second); err != nil {
			t.Fatal(err)
		}
		c.net.Heal()
		if err := c.proposeAck(acked, "n2", payloads("healed", 1), 5*time.Second); err != nil {
			t.Fatal(err)
		}
		c.waitConverged("n2", 5*time.Second)
		if err := c.walOf("n1").Err(); err != nil {
			t.Fatalf("n1 failed: %v", err)
		}
		if a, b := c.walOf("n1").Status().LastSeq, c.walOf("n2").Status().LastSeq; a != b {
			t.Fatalf("n1 last Seq %d, leader %d: the divergent suffix was not dropped", a, b)
		}
		for _, n := range c.names {
			c.checkAcked(acked, n)
		}
	})

	t.Run("truncateCommittedFailsHard", func(t *testing.T) {
		c := makeCluster(t, 3)
		c.elect("n1")
		c.waitStarted("n1", 5*time.Second)
		c.mustPropose("n1", "committed", 5)
		w := c.walOf("n3")
		waitFor(t, 5*time.Second, "n3 to learn safe_seq 6", func() bool { return w.SafeSeq() >= 6 })
		c.crash("n1")
		c.crash("n2")
		before := c.frames("n3")
		// A (buggy) leader of a higher epoch whose log diverges after Seq 2.
		s := openFakeStream(c.node("n3").rep)
		s.reqs <- &AppendRequest{Epoch: 1000, Leader: "rogue", Gen: 1, PrevSeq: 2, PrevEpoch: before[1].Epoch, SafeSeq: 2,
			Frames: []Frame{{Seq: 3, Epoch: 1000, Type: FrameEvent, Payload: []byte(`{"rogue":1}`)}}}
		waitFor(t, 2*time.Second, "n3 to handle the request", func() bool {
			return w.Err() != nil || w.Status().LastSeq != uint64(len(before))
		})
		if err := w.Err(); !errors.Is(err, ErrTruncateCommitted) {
			t.Fatalf("n3's WAL error is %v (last Seq %d, safe_seq %d), want ErrTruncateCommitted (fail-hard)", err, w.Status().LastSeq, w.SafeSeq())
		}
		if err := s.close(); !errors.Is(err, ErrTruncateCommitted) {
			t.Errorf("HandleStream returned %v, want ErrTruncateCommitted", err)
		}
		sawErr := false
		for len(s.resps) > 0 {
			if r := <-s.resps; r.Error != "" {
				sawErr = true
			} else if r.OK && r.Epoch == 1000 {
				t.Errorf("n3 acknowledged the rogue leader: %+v", r)
			}
		}
		if !sawErr {
			t.Error("n3 did not tell the leader about its fatal error")
		}
		after := c.frames("n3")
		if len(after) != len(before) {
			t.Fatalf("n3 lost frames: %d → %d", len(before), len(after))
		}
		for i := range before {
			if !sameFrame(before[i], after[i]) {
				t.Fatalf("n3's committed frame Seq=%d changed", i+1)
			}
		}
	})
}

// Rule 5: a follower persists min(leader's safe_seq, its own fsynced Seq).
// n3's disk is slow while the leader commits with n2, so the leader's
// safe_seq runs ahead of what n3 has fsynced; the file must not follow it,
// and after a crash n3 must recover (R3: safe_seq ≤ last frame).
//
// Mutation seen to fail: wal.go persistSafeSeq, `v := min(w.safeSeq,
// w.durableSeq)` → `v := w.safeSeq`.
func TestRule5_followerPersistsMinSafe(t *testing.T) {
	c := makeCluster(t, 3)
	c.elect("n1")
	c.waitStarted("n1", 5*time.Second)
	c.mustPropose("n1", "base", 2)
	var dying atomic.Bool
	c.setInject("n3", func(p string) error {
		if p == "wal-before-write" {
			time.Sleep(40 * time.Millisecond)
			if dying.Load() {
				return errors.New("test: process died before the write")
			}
		}
		return nil
	})
	w3 := c.walOf("n3")
	dir3 := c.node("n3").dir
	var ahead atomic.Bool
	stop := make(chan struct{})
	checked := make(chan string, 1)
	go func() {
		defer close(checked)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if st := w3.Status(); st.SafeSeq > st.DurableSeq {
				ahead.Store(true)
			}
			v, err := readSafeSeq(dir3)
			_, _, durable, _ := w3.Positions()
			if err == nil && v > durable {
				checked <- "persisted safe_seq above fsynced Seq"
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	for i := 0; i < 15; i++ {
		c.mustPropose("n1", "slow-n3", 5)
	}
	close(stop)
	if msg, ok := <-checked; ok {
		t.Fatalf("n3: %s", msg)
	}
	if !ahead.Load() {
		t.Fatal("n3's in-memory safe_seq never ran ahead of its fsynced Seq: the test did not exercise rule 5")
	}
	// Crash n3 with writes in flight: it must reopen cleanly.
	c.mustPropose("n1", "in-flight", 5)
	dying.Store(true)
	c.crash("n3")
	v, err := readSafeSeq(dir3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(dir3, true, 0); err != nil {
		t.Fatalf("n3's WAL after the crash (persisted safe_seq %d): %v", v, err)
	}
	c.start("n3", false)
	c.waitConverged("n1", 5*time.Second)
}

// Rule 6: a follower that was down during thousands of frames catches up in
// bulk after its restart while commits of the others go on.
//
// Mutation seen to fail: core_lead.go pump, send at most one frame per
// round trip (`maxFrames = int(c.cfg.MaxInflight - inflight)` → `1`). Not in
// the simulator's table: it is slowness, not a safety or liveness break.
func TestRule6_bulkCatchUp(t *testing.T) {
	c := makeCluster(t, 3)
	c.elect("n1")
	c.waitStarted("n1", 5*time.Second)
	c.crash("n3")
	acked := newAckLog()
	for i := 0; i < 40; i++ {
		if err := c.proposeAck(acked, "n1", payloads("while-down", 100), 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	target := c.walOf("n1").SafeSeq()
	c.net.SetDelay(time.Millisecond)
	start := time.Now()
	c.start("n3", false)
	w3 := c.walOf("n3")
	// Keep committing during the catch-up; each proposal must stay fast.
	during := 0
	var worst time.Duration
	for i := 0; w3.SafeSeq() < target; i++ {
		t0 := time.Now()
		if err := c.proposeAck(acked, "n1", payloads("during", 5), 2*time.Second); err != nil {
			t.Fatalf("proposal during n3's catch-up: %v", err)
		}
		worst = max(worst, time.Since(t0))
		if w3.SafeSeq() < target {
			during++
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("n3 caught up only to %d of %d in 10s", w3.SafeSeq(), target)
		}
	}
	took := time.Since(start)
	t.Logf("n3 caught up %d frames in %s; %d proposals committed meanwhile, slowest %s", target, took, during, worst)
	if took > 5*time.Second {
		t.Fatalf("catch-up of %d frames took %s: not in bulk", target, took)
	}
	c.net.SetDelay(0)
	c.waitConverged("n1", 10*time.Second)
	c.checkAcked(acked, "n3")
}

// Rule 7: a node that lost its WAL rejoins as a learner and counts toward no
// promise or commit majority until it holds the committed history; the
// {lagging node, empty node} pair must not elect a leader that forgets
// committed frames. Once caught up, the learner votes again.
//
// Mutation: rule7-learner-counted (a learner's promise and acks count).
func TestRule7_learnerAfterReset(t *testing.T) {
	c := makeCluster(t, 3)
	c.elect("n1")
	c.waitStarted("n1", 5*time.Second)
	acked := newAckLog()
	if err := c.proposeAck(acked, "n1", payloads("all", 3), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c.net.Isolate("n3", "n1", "n2") // n3 lags from here on
	for i := 0; i < 5; i++ {
		if err := c.proposeAck(acked, "n1", payloads("n3-away", 4), 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	committed := c.walOf("n1").SafeSeq()
	c.crash("n1")
	c.reset("n2") // new disk: empty WAL, learner
	c.net.Heal()
	if st := c.node("n2").rep.Status(); !st.Learner {
		t.Fatalf("reset n2 is not a learner: %+v", st)
	}

	// {n3 lagging, n2 empty} is not a majority.
	before := c.walOf("n3").Status().LastSeq
	c.elect("n3")
	deadline := time.Now().Add(4 * time.Second)
	var leadErr error
	for {
		if st := c.node("n3").rep.Status(); st.Role == RoleLeader || st.EpochStarted {
			t.Fatalf("n3 took office (%+v) with a learner's promise: committed frames would be lost", st)
		}
		if err, ok := c.leadEnded("n3", 20*time.Millisecond); ok {
			leadErr = err
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("n3's Lead neither started nor gave up")
		}
	}
	if !errors.Is(leadErr, ErrNoQuorum) {
		t.Fatalf("n3's Lead returned %v, want ErrNoQuorum", leadErr)
	}
	if l := c.walOf("n3").Status().LastSeq; l != before {
		t.Fatalf("n3's log went from Seq %d to %d (committed: %d) without a promise majority", before, l, committed)
	}

	// n1 returns: n3 leads with n1's promise and adopts its tail.
	c.start("n1", false)
	c.elect("n3")
	c.waitStarted("n3", 5*time.Second)
	if err := c.proposeAck(acked, "n3", payloads("n3-leads", 2), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c.waitConverged("n3", 5*time.Second)
	for _, n := range c.names {
		c.checkAcked(acked, n)
	}
	waitFor(t, 5*time.Second, "n2 to become a voter", func() bool { return !c.node("n2").rep.Status().Learner })

	// n2 now counts: with n1 down, n3 and n2 commit.
	c.crash("n1")
	if err := c.proposeAck(acked, "n3", payloads("n2-votes", 2), 5*time.Second); err != nil {
		t.Fatalf("the caught-up learner does not count toward the majority: %v", err)
	}
	c.restart("n2")
	if st := c.node("n2").rep.Status(); st.Learner {
		t.Fatal("n2 is a learner again after a restart: promotion not persisted")
	}
}

// Rule 8: a write or fsync error is fatal for the WAL: nothing more is
// acknowledged and the leader steps down; a leader that hears no majority
// within QuorumTimeout steps down.
//
// Mutation seen to fail (part 1, WAL code): wal.go flushOnce, on error set
// `w.durableSeq = last` instead of calling failLocked (the error is
// ignored). Part 2: rule8-no-step-down. (Part 2's bound of
// QuorumTimeout+400ms failed before 4bbc038, which stepped down up to
// 2×QuorumTimeout after the majority was last heard.)
func TestRule8_fatalErrorsAndQuorumLoss(t *testing.T) {
	t.Run("fsyncError", func(t *testing.T) {
		c := makeCluster(t, 3)
		c.elect("n1")
		c.waitStarted("n1", 5*time.Second)
		c.mustPropose("n1", "base", 3)
		slow := func(p string) error {
			if p == "wal-before-fsync" {
				time.Sleep(100 * time.Millisecond)
			}
			return nil
		}
		c.setInject("n2", slow)
		c.setInject("n3", slow)
		c.setInject("n1", func(p string) error {
			if p == "wal-before-fsync" {
				return errors.New("test: EIO")
			}
			return nil
		})
		if _, _, err := c.propose("n1", "eio", 2, 3*time.Second); err == nil {
			t.Fatal("Propose acknowledged a frame whose fsync failed on the leader")
		} else if !errors.Is(err, ErrFailed) && !errors.Is(err, ErrUnknownOutcome) {
			t.Fatalf("Propose error %v, want ErrFailed", err)
		}
		err, ok := c.leadEnded("n1", 3*time.Second)
		if !ok {
			t.Fatal("the leader with a failed WAL did not step down")
		}
		if !errors.Is(err, ErrFailed) {
			t.Fatalf("Lead returned %v, want ErrFailed", err)
		}
		if c.walOf("n1").Err() == nil {
			t.Fatal("the WAL is not failed after an fsync error")
		}
		if _, _, err := c.propose("n1", "again", 1, time.Second); err == nil {
			t.Fatal("Propose succeeded on a failed WAL")
		}
	})

	t.Run("noQuorumStepsDown", func(t *testing.T) {
		took, qt := isolatedStepDown(t, 3*time.Second)
		t.Logf("isolated leader stepped down after %s (QuorumTimeout %s)", took, qt)
		// It last heard the majority just before the isolation.
		if took > qt+400*time.Millisecond {
			t.Fatalf("stepped down %s after last hearing a majority, QuorumTimeout is %s", took, qt)
		}
	})
}

// isolatedStepDown isolates a started leader, checks it acknowledges
// nothing and steps down with ErrNoQuorum within limit past the isolation,
// and returns how long that took.
func isolatedStepDown(t *testing.T, limit time.Duration) (took, qt time.Duration) {
	c := makeCluster(t, 3)
	c.elect("n1")
	c.waitStarted("n1", 5*time.Second)
	c.mustPropose("n1", "base", 3)
	qt = c.node("n1").rep.cfg.QuorumTimeout
	t0 := time.Now()
	c.net.Isolate("n1", "n2", "n3")
	if _, _, err := c.propose("n1", "isolated", 1, qt/2); err == nil {
		t.Fatal("isolated leader acknowledged")
	}
	err, ok := c.leadEnded("n1", limit)
	if !ok {
		t.Fatalf("isolated leader still leads %s after losing every peer (QuorumTimeout %s)", time.Since(t0), qt)
	}
	took = time.Since(t0)
	if !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("Lead returned %v, want ErrNoQuorum", err)
	}
	if st := c.node("n1").rep.Status(); st.Role == RoleLeader || st.EpochStarted {
		t.Fatalf("status after stepping down: %+v", st)
	}
	return took, qt
}

// jumpClock is a Clock whose wall time is stepped by step at every reading,
// as NTP or an operator may step a machine's clock. Its times carry no
// monotonic reading; Since answers from the real monotonic clock, which is
// what "every timeout uses the monotonic clock" asks of the code: elapsed
// time only through Since of a time Now returned, never by subtracting
// wall readings.
type jumpClock struct {
	step time.Duration

	mu     sync.Mutex
	offset time.Duration
	issued map[int64]time.Time // wall reading handed out → monotonic instant
	misuse string
}

func (c *jumpClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.issued == nil {
		c.issued = map[int64]time.Time{}
	}
	c.offset += c.step
	mono := time.Now()
	wall := time.Unix(0, mono.UnixNano()).Add(c.offset) // no monotonic reading
	c.issued[wall.UnixNano()] = mono
	return wall
}

func (c *jumpClock) Since(t time.Time) time.Duration {
	c.mu.Lock()
	mono, ok := c.issued[t.UnixNano()]
	if !ok && c.misuse == "" {
		c.misuse = fmt.Sprintf("Since(%s) of a time the clock never returned", t)
	}
	c.mu.Unlock()
	if !ok {
		return c.Now().Sub(t)
	}
	return time.Since(mono)
}

// Rule 9: timeouts use the monotonic clock, so wall-clock jumps change
// nothing; gossip never reaches a commit or leadership decision.
//
// Mutation: rule9-wall-clock (how long ago a peer was heard measured on the
// wall clock): with the clock stepping forward the leader steps down although
// every peer is heard; stepping backward, an isolated leader never steps down. Seen to fail (gossip): adding `import _
// "github.com/hashicorp/memberlist"` to a walrepl source file.
func TestRule9_clockJumpsAndNoGossip(t *testing.T) {
	for _, tc := range []struct {
		name string
		step time.Duration
	}{{"forward", time.Hour}, {"backward", -time.Hour}} {
		t.Run(tc.name, func(t *testing.T) {
			clk := &jumpClock{step: tc.step}
			c := makeClusterWith(t, 3, func(_ string, rc *ReplicaConfig) { rc.Clock = clk })
			c.elect("n1")
			c.waitStarted("n1", 5*time.Second)
			r := c.node("n1").rep
			qt := r.cfg.QuorumTimeout
			// Commits continue for several QuorumTimeouts with peers heard.
			for t0 := time.Now(); time.Since(t0) < 3*qt; {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, _, err := r.Propose(ctx, clk.Now().UnixNano(), payloads("jumpy", 2))
				cancel()
				if err != nil {
					t.Fatalf("Propose with the wall clock jumping %s per reading: %v", tc.step, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err, ended := c.leadEnded("n1", 0); ended {
				t.Fatalf("leader stepped down with every peer heard: %v", err)
			}
			if st := r.Status(); !st.QuorumOK || !st.EpochStarted {
				t.Fatalf("leader status %+v", st)
			}
			// An isolated leader still steps down on time.
			t0 := time.Now()
			c.net.Isolate("n1", "n2", "n3")
			err, ended := c.leadEnded("n1", qt+time.Second)
			if !ended {
				t.Fatalf("isolated leader still leads after %s", time.Since(t0))
			}
			if !errors.Is(err, ErrNoQuorum) {
				t.Fatalf("Lead returned %v, want ErrNoQuorum", err)
			}
			clk.mu.Lock()
			defer clk.mu.Unlock()
			if clk.misuse != "" {
				t.Fatalf("elapsed time measured outside the clock: %s", clk.misuse)
			}
		})
	}

	t.Run("noGossipOrEtcdInWalrepl", func(t *testing.T) {
		gobin, err := exec.LookPath("go")
		if err != nil {
			gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		cmd := exec.Command(gobin, "list", "-deps", ".")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps: %v\n%s", err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.HasPrefix(dep, "go.etcd.io/") || strings.HasPrefix(dep, "github.com/hashicorp/memberlist") || dep == "net/http" {
				t.Errorf("walrepl depends on %s: gossip, etcd and HTTP must not reach replication decisions", dep)
			}
		}
	})
}
