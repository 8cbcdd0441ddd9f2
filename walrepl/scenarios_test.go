package walrepl

// Known failure scenarios of replicated logs, replayed against walrepl:
// Kafka's KIP-101 scenarios 1 and 2, KAFKA-7164, Raft's Figure 8, failovers
// with an empty node, and a deposed leader meeting a reset node.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// KIP-101 scenario 1: a follower restarts with its persisted high watermark
// behind frames it had fsynced; it must not truncate to the watermark, lose
// a committed frame, and then lead a cluster that forgets it.
func TestScenario_KIP101_1_restartedFollowerKeepsCommitted(t *testing.T) {
	c := makeCluster(t, 3)
	h := newHistory(c)
	h.start(5 * time.Millisecond)
	c.elect("n1")
	c.waitStarted("n1", 5*time.Second)
	waitConfirmed(t, c, "n3")
	acked := newAckLog()
	c.net.Isolate("n3", "n1", "n2") // commits need n2
	if err := c.proposeAck(acked, "n1", payloads("m1", 3), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	m1 := c.walOf("n1").SafeSeq()
	waitFor(t, 5*time.Second, "n2 to persist safe_seq m1", func() bool { return c.walOf("n2").Status().PersistedSafeSeq >= m1 })
	// n2's watermark file stops moving (a lazy persist not yet done).
	g := newGate(t)
	c.setInject("n2", g.at("safeseq-before-persist", nil))
	if err := c.proposeAck(acked, "n1", payloads("m2", 3), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	m2, _, _, _ := c.walOf("n1").Positions()
	waitFor(t, 5*time.Second, "n2 to fsync m2", func() bool { _, _, d, _ := c.walOf("n2").Positions(); return d >= m2 })
	g.kill()
	c.crash("n2")
	if v, err := readSafeSeq(c.node("n2").dir); err != nil || v >= m2 {
		t.Fatalf("n2's persisted safe_seq is %d (%v): the scenario needs it behind m2=%d", v, err, m2)
	}
	c.start("n2", false)
	// KIP-101's bug is the truncation to the stale watermark at restart.
	if last, _, d, _ := c.walOf("n2").Positions(); last < m2 || d < m2 {
		t.Fatalf("n2 restarted holding Seq %d (durable %d): it dropped frames up to m2=%d it had fsynced", last, d, m2)
	}
	// n1 confirms n2's log before it dies (DESIGN §6 rule 13: a restarted
	// node that no leader has confirmed stands for its tail only beside a
	// confirmed majority or every voter; TestHole2_* covers that stall).
	waitConfirmed(t, c, "n2")
	c.crash("n1")
	c.net.Heal()
	c.elect("n2")
	c.waitStarted("n2", 5*time.Second)
	c.checkAcked(acked, "n2")
	if err := c.proposeAck(acked, "n2", payloads("after", 2), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c.start("n1", false)
	c.waitConverged("n2", 5*time.Second)
	for _, n := range c.names {
		c.checkAcked(acked, n)
	}
	h.check(t)
}

// KIP-101 scenario 2: leader and follower crash together with divergent
// tails. After they restart the logs converge and nothing acknowledged is
// lost, whichever of them leads next.
func TestScenario_KIP101_2_crashTogetherDivergentTails(t *testing.T) {
	for _, next := range []string{"n1", "n2"} {
		t.Run("next-leader-"+next, func(t *testing.T) {
			c := makeCluster(t, 3)
			h := newHistory(c)
			h.start(5 * time.Millisecond)
			c.elect("n1")
			c.waitStarted("n1", 5*time.Second)
			acked := newAckLog()
			if err := c.proposeAck(acked, "n1", payloads("base", 4), 5*time.Second); err != nil {
				t.Fatal(err)
			}
			// n3 goes away; n1 writes a tail n2 never sees.
			c.crash("n3")
			c.net.Isolate("n1", "n2")
			c.proposeAck(acked, "n1", payloads("n1-only", 5), 300*time.Millisecond)
			// Power loss for both.
			c.crash("n1")
			c.crash("n2")
			c.net.Heal()
			c.start("n1", false)
			c.start("n2", false)
			c.start("n3", false)
			if a, b := c.walOf("n1").Status().LastSeq, c.walOf("n2").Status().LastSeq; a <= b {
				t.Fatalf("tails do not diverge: n1 last %d, n2 last %d", a, b)
			}
			c.elect(next)
			c.waitStarted(next, 5*time.Second)
			if err := c.proposeAck(acked, next, payloads("after", 3), 5*time.Second); err != nil {
				t.Fatal(err)
			}
			c.waitConverged(next, 5*time.Second)
			for _, n := range c.names {
				c.checkAcked(acked, n)
			}
			h.check(t)
		})
	}
}

// proposers keeps k goroutines proposing to whichever node leads a started
// epoch, recording acknowledgements, until stopped.
type proposers struct {
	wg   sync.WaitGroup
	stop chan struct{}
	n    atomic.Int64
}

func (c *testCluster) startProposers(a *ackLog, k int, prefix string) *proposers {
	p := &proposers{stop: make(chan struct{})}
	for g := 0; g < k; g++ {
		p.wg.Add(1)
		go func(g int) {
			defer p.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-p.stop:
					return
				default:
				}
				leader := ""
				for _, n := range c.names {
					if tn := c.node(n); tn != nil && c.running(n) && tn.rep.Status().EpochStarted {
						leader = n
					}
				}
				if leader == "" {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				tag := fmt.Sprintf("%s-g%d-%d", prefix, g, i)
				if err := c.proposeAck(a, leader, payloads(tag, 1+i%3), 500*time.Millisecond); err == nil {
					p.n.Add(1)
				}
			}
		}(g)
	}
	return p
}

func (p *proposers) halt() { close(p.stop); p.wg.Wait() }

// KAFKA-7164: two leader changes in quick succession, with ingest going on.
// Followers that truncated or appended under the middle leader must still
// converge on the last leader's log, and nothing acknowledged is lost.
func TestScenario_KAFKA7164_doubleFastFailover(t *testing.T) {
	c := makeCluster(t, 3)
	h := newHistory(c)
	h.start(5 * time.Millisecond)
	acked := newAckLog()
	c.elect("n1")
	c.waitStarted("n1", 5*time.Second)
	p := c.startProposers(acked, 3, "ingest")
	order := [][3]string{{"n1", "n2", "n3"}, {"n3", "n1", "n2"}, {"n2", "n3", "n1"}, {"n1", "n3", "n2"}}
	for round, o := range order {
		old, mid, last := o[0], o[1], o[2]
		// The old leader writes a tail nobody else has, then loses office.
		waitFor(t, 5*time.Second, old+" to lead", func() bool { return c.node(old).rep.Status().EpochStarted })
		c.net.Isolate(old, mid, last)
		c.proposeAck(acked, old, payloads(fmt.Sprintf("orphan-%d", round), 4), 100*time.Millisecond)
		c.stepDown(old)
		c.net.Heal()
		// Two elections in quick succession: mid barely starts (or not).
		c.elect(mid)
		time.Sleep(time.Duration(round) * 3 * time.Millisecond) // the fault schedule
		c.stepDown(mid)
		c.elect(last)
		c.waitStarted(last, 5*time.Second)
		if err := c.proposeAck(acked, last, payloads(fmt.Sprintf("round-%d", round), 2), 5*time.Second); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		// The next round's old leader is this one.
		c.stepDown(last)
		c.elect(order[(round+1)%len(order)][0])
	}
	p.halt()
	leader := order[0][0]
	c.waitStarted(leader, 5*time.Second)
	if err := c.proposeAck(acked, leader, payloads("final", 1), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c.waitConverged(leader, 5*time.Second)
	t.Logf("%d proposals acknowledged during the failovers", p.n.Load())
	for _, n := range c.names {
		c.checkAcked(acked, n)
	}
	h.check(t)
}

// Raft's Figure 8: a leader must not count replicas of a frame of an older
// epoch as committed; it commits them only by committing a frame of its own
// epoch after them (here: the epoch-start barrier).
//
// (a) n1 (epoch A) writes X at Seq s, on n1 only. (b) n3 (epoch B, promise
// from n2) writes its barrier Y at Seq s, on n3 only. (c) n1 (epoch C,
// promise from n2) copies X to n2, so X is on a majority, but C's barrier is
// fsynced on n1 alone; X must not be reported committed. (d) n3 (epoch D,
// promise from n2: its tail (B, s) beats n2's (A, s)) overwrites X with Y.
//
// Mutation: rule3-figure8 (core_lead.go setMatch, `if q < ld.barrier ||
// q <= ld.commit` → `if q <= ld.commit`).
func TestScenario_RaftFigure8(t *testing.T) {
	c := makeClusterWith(t, 3, func(name string, rc *ReplicaConfig) {
		if name == "n1" {
			rc.MaxInflight = 1 // one frame per round trip: X reaches n2 before C's barrier
		}
	})
	h := newHistory(c)
	h.start(2 * time.Millisecond)
	acked := newAckLog()

	// (a) No node restarts before (c): a subset elects only with confirmed
	// promisers (DESIGN §6 rule 13), so leaders step down instead of dying.
	c.elect("n1")
	c.waitStarted("n1", 5*time.Second)
	if err := c.proposeAck(acked, "n1", payloads("base", 2), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	base := c.walOf("n1").SafeSeq()
	s := base + 1
	waitFor(t, 5*time.Second, "every node to commit the base", func() bool {
		return c.walOf("n2").SafeSeq() == base && c.walOf("n3").SafeSeq() == base
	})
	waitConfirmed(t, c, "n2")
	waitConfirmed(t, c, "n3")
	c.net.Isolate("n1", "n2", "n3")
	if err := c.proposeAck(acked, "n1", [][]byte{[]byte(`{"frame":"X"}`)}, 100*time.Millisecond); err == nil {
		t.Fatal("isolated n1 acknowledged X")
	}
	waitFor(t, 5*time.Second, "n1 to fsync X", func() bool { _, _, d, _ := c.walOf("n1").Positions(); return d >= s })
	c.stepDown("n1")

	// (b) n3 gets n2's promise, then the link breaks: Y reaches n3's disk only.
	h3 := holdOnce(c.net, "stream", "n3", "n2")
	epochB := c.elect("n3")
	h3.wait(t, "n3's promise round never got n2's answer")
	c.net.Partition([]string{"n1"}, []string{"n2"}, []string{"n3"})
	close(h3.release)
	waitFor(t, 5*time.Second, "n3 to write Y", func() bool { _, _, d, _ := c.walOf("n3").Positions(); return d >= s })
	c.stepDown("n3")
	w2 := c.walOf("n2")
	if l, _, _, _ := w2.Positions(); l != base {
		t.Fatalf("n2 holds Seq %d, want %d (neither X nor Y)", l, base)
	}

	// (c) n1 gets n2's promise (n3 cut off) and copies X to n2.
	c.net.Heal()
	c.net.Partition([]string{"n1", "n2"}, []string{"n3"})
	g2 := newGate(t)
	c.setInject("n2", g2.at("wal-before-write", func() bool { l, _, _, _ := w2.Positions(); return l > s }))
	c.elect("n1")
	waitFor(t, 5*time.Second, "X on n2 and n1's barrier queued there", func() bool {
		l, _, d, _ := w2.Positions()
		return d >= s && l > s
	})
	waitFor(t, 5*time.Second, "n1 to hear n2's ack of X", func() bool {
		for _, p := range c.node("n1").rep.Status().Peers {
			if p.Name == "n2" && p.DurableSeq >= s {
				return true
			}
		}
		return false
	})
	h.sample()
	if safe := c.walOf("n1").SafeSeq(); safe >= s {
		t.Errorf("n1 reports safe_seq=%d: X of an older epoch counted committed before n1's barrier", safe)
	}
	if c.node("n1").rep.Status().EpochStarted {
		t.Error("n1's epoch started with its barrier fsynced on n1 alone")
	}
	g2.kill()
	c.crash("n2")
	c.crash("n1")

	// (d) n2 restarted, so it is unconfirmed (DESIGN §6 rule 13) and n3
	// alone is not a confirmed majority: an epoch needs every voter that is
	// not a learner. n1's disk is replaced (a learner holds nothing to
	// stand for), so {n2, n3} elect n3 without it, as Figure 8's S5 is
	// elected without S1.
	h.reset("n1")
	c.start("n2", false)
	c.net.Heal()
	c.elect("n3")
	c.waitStarted("n3", 5*time.Second)
	if e, ok := c.walOf("n3").EpochAt(s); !ok || e != epochB {
		t.Fatalf("n3's frame at Seq=%d has epoch %d, want Y's %d", s, e, epochB)
	}
	if err := c.proposeAck(acked, "n3", payloads("d", 2), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c.waitConverged("n3", 5*time.Second)
	if fs := c.frames("n2"); string(fs[s-1].Payload) == `{"frame":"X"}` {
		t.Fatal("X survived on n2 although Y overwrote it on n3: the scenario did not happen")
	}
	for _, n := range c.names {
		c.checkAcked(acked, n)
	}
	h.check(t)
}

// Double failover with an empty node: n3's disk is replaced while n1 leads,
// then n1 and later n2 fail. A leader is elected only when a majority of
// voters (not counting a learner that has not caught up) promised, and no
// acknowledged or committed frame is lost.
func TestScenario_doubleFailoverWithEmptyNode(t *testing.T) {
	c := makeCluster(t, 3)
	h := newHistory(c)
	h.start(10 * time.Millisecond)
	acked := newAckLog()
	c.elect("n1")
	c.waitStarted("n1", 5*time.Second)
	for i := 0; i < 20; i++ {
		if err := c.proposeAck(acked, "n1", payloads(fmt.Sprintf("base-%d", i), 50), 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	h.reset("n3")
	// First failover, while n3 may still be catching up.
	c.crash("n1")
	c.elect("n2")
	started := false
	for !started {
		if c.node("n2").rep.Status().EpochStarted {
			started = true
			break
		}
		if err, ended := c.leadEnded("n2", 20*time.Millisecond); ended {
			if !errors.Is(err, ErrNoQuorum) {
				t.Fatalf("n2's Lead: %v", err)
			}
			t.Log("n2 could not start with n3 still a learner; n1 returns")
			c.start("n1", false)
			c.elect("n2")
		}
	}
	if err := c.proposeAck(acked, "n2", payloads("n2-leads", 5), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// n3 catches up from n2 (were n2 to fail first, n3 would stay a learner
	// and, rightly, no leader could start without n2).
	waitFor(t, 10*time.Second, "n3 to become a voter", func() bool { return !c.node("n3").rep.Status().Learner })
	// Second failover: n2 fails; n3 leads with n1.
	c.crash("n2")
	if !c.running("n1") {
		c.start("n1", false)
	}
	c.elect("n3")
	c.waitStarted("n3", 5*time.Second)
	if err := c.proposeAck(acked, "n3", payloads("n3-leads", 5), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c.start("n2", false)
	c.waitConverged("n3", 10*time.Second)
	for _, n := range c.names {
		c.checkAcked(acked, n)
	}
	h.check(t)
}

// A deposed leader meets a node whose disk was replaced. Had the reset node
// forgotten every promise (createWAL removes telemetry.state), it would
// accept the deposed leader's old epoch, take that leader's stale safe_seq
// as the point to reach, become a voter once it holds it, and give the
// deposed leader a majority again: the old epoch would acknowledge frames at
// Seqs the new epoch had already committed. It failed that way until the
// reset node's promise was restored from the current epoch
// (ReplicaConfig.MinEpoch; the harness sets it as node/ does from etcd).
func TestScenario_resetNodeRevivesDeposedLeader(t *testing.T) {
	// Safety must not depend on timing: the deposed leader is slow to notice.
	c := makeClusterWith(t, 3, func(_ string, rc *ReplicaConfig) { rc.QuorumTimeout = 20 * time.Second })
	h := newHistory(c)
	h.start(5 * time.Millisecond)
	acked := newAckLog()
	c.elect("n1")
	c.waitStarted("n1", 5*time.Second)
	if err := c.proposeAck(acked, "n1", payloads("base", 3), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// n1 is cut off but still believes it leads; its next proposal waits.
	c.net.Isolate("n1", "n2", "n3")
	stale := make(chan error, 1)
	go func() { stale <- c.proposeAck(acked, "n1", payloads("stale", 3), 15*time.Second) }()
	// n3 leads a newer epoch with n2 and commits.
	c.elect("n3")
	c.waitStarted("n3", 5*time.Second)
	for i := 0; i < 3; i++ {
		if err := c.proposeAck(acked, "n3", payloads(fmt.Sprintf("new-%d", i), 3), 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	// n2's disk is replaced; it comes back where it can reach n1 only.
	h.reset("n2")
	c.net.Heal()
	c.net.Isolate("n3", "n1", "n2")
	select {
	case err := <-stale:
		if err == nil {
			t.Error("the deposed leader of the old epoch acknowledged frames after a reset node rejoined it")
		}
	case <-time.After(5 * time.Second):
	}
	// Whatever happened, after healing nothing acknowledged may be lost.
	c.stepDown("n1")
	c.stepDown("n3")
	c.net.Heal()
	c.elect("n3")
	c.waitStarted("n3", 5*time.Second)
	if err := c.proposeAck(acked, "n3", payloads("final", 1), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c.checkAcked(acked, "n3")
	// The others converge, or fail hard when told to drop frames they hold
	// at or below their safe_seq.
	last := c.walOf("n3").Status().LastSeq
	waitFor(t, 10*time.Second, "n1 and n2 to converge or fail", func() bool {
		for _, n := range []string{"n1", "n2"} {
			if w := c.walOf(n); w.Err() == nil && w.SafeSeq() < last {
				return false
			}
		}
		return true
	})
	for _, n := range []string{"n1", "n2"} {
		if err := c.walOf(n).Err(); err != nil {
			t.Errorf("%s failed hard: %v", n, err)
			continue
		}
		c.checkAcked(acked, n)
	}
	h.check(t)
}

// Two elections overlap: n1 is still running the promise round of epoch E
// (n2 has promised E but, its disk being slow, has not answered yet) when a
// candidate for F > E obtains n1's promise for F (the request is delivered
// to n1 directly here; n3 is the would-be leader of F). n1 must not go on to
// lead E: it has promised F, so by rule 2 it must reject E, its own epoch
// included. Otherwise n1 and n2 commit and acknowledge frames in epoch E
// that F's promise majority {n3, n1} did not hold when it promised, and the
// leader of F may then overwrite them (on n2, whose safe_seq lags).
//
// Failed deterministically (n1 started E and acknowledged a frame in it)
// until a promise to a higher epoch cancelled a running candidate
// (follower.go acceptEpochLocked, r.candidate).
func TestScenario_candidateOvertakenByHigherEpoch(t *testing.T) {
	c := makeCluster(t, 3)
	h := newHistory(c)
	h.start(5 * time.Millisecond)
	acked := newAckLog()
	c.elect("n1")
	c.waitStarted("n1", 5*time.Second)
	if err := c.proposeAck(acked, "n1", payloads("base", 2), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// n2's disk stalls with a frame queued (committed by n1 and n3).
	slow := newGate(t)
	c.setInject("n2", slow.at("wal-before-fsync", nil))
	if err := c.proposeAck(acked, "n1", payloads("p", 1), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	w2 := c.walOf("n2")
	waitFor(t, 5*time.Second, "n2 to queue the frame", func() bool { l, _, d, _ := w2.Positions(); return l > d })
	c.stepDown("n1")
	c.net.Isolate("n3", "n1", "n2")

	// n1 runs for E; n2 promises E and then waits for its disk to answer.
	e := c.elect("n1")
	waitFor(t, 5*time.Second, "n2 to promise E", func() bool { return c.node("n2").rep.Status().Promised == e })
	// Meanwhile n1 promises F to n3.
	f := e + 5
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	resp := c.node("n1").rep.HandlePromise(ctx, &PromiseRequest{Epoch: f, Leader: "n3"})
	cancel()
	if !resp.OK {
		t.Fatalf("n1 refused to promise F=%d: %+v", f, resp)
	}
	// n2's disk recovers and its answer for E reaches n1.
	slow.release()

	// n1 promised F: it must not start E.
	started := false
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if c.node("n1").rep.Status().EpochStarted {
			started = true
			break
		}
		if _, ended := c.leadEnded("n1", 0); ended {
			break
		}
	}
	if started {
		t.Errorf("n1 started epoch %d after promising epoch %d", e, f)
		if err := c.proposeAck(acked, "n1", [][]byte{[]byte(`{"frame":"X"}`)}, 2*time.Second); err == nil {
			t.Errorf("n1 acknowledged a frame in epoch %d after promising epoch %d", e, f)
		}
	}
	c.stepDown("n1")
	c.net.Heal()
	c.elect("n3")
	c.waitStarted("n3", 5*time.Second)
	if err := c.proposeAck(acked, "n3", payloads("after", 1), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c.waitConverged("n3", 5*time.Second)
	for _, n := range c.names {
		c.checkAcked(acked, n)
	}
	h.check(t)
}

// A learner's target is the first safe_seq it hears from a leader; a newly
// elected leader's safe_seq may lag what the previous epoch committed
// (followers learn it lazily). Then the learner becomes a voter holding less
// than the committed history, and {lagging node, promoted learner} elects a
// leader that forgets acknowledged frames (DESIGN §6 rule 7).
//
// n1 (epoch A, heartbeats off so n3's safe_seq lags) commits c2 with n3; n3
// knows safe_seq=6 while 9 is committed. n1's disk is replaced (learner).
// n3 leads B with n2's promise; n2's disk stalls so B's barrier does not
// commit; n3 feeds n1 one frame per round trip and n1's disk stalls above
// Seq 6. If n1 becomes a voter now, n3 and n2 failing leaves {n1, n2}, and
// n2 leading C adopts n1's tail (6): c2 (7..9) is lost.
//
// Failed deterministically (acknowledged Seq 7..9 lost on every node) until
// a learner took its target only from a leader whose epoch has started
// (AppendRequest.EpochStarted), whose safe_seq covers every earlier commit.
func TestScenario_learnerPromotedBelowCommitted(t *testing.T) {
	c := makeClusterWith(t, 3, func(name string, rc *ReplicaConfig) {
		switch name {
		case "n1":
			rc.HeartbeatInterval, rc.QuorumTimeout = time.Hour, 2*time.Hour // no heartbeats, no quorum watch
		case "n3":
			rc.MaxInflight = 1
		}
	})
	h := newHistory(c)
	h.start(5 * time.Millisecond)
	acked := newAckLog()
	c.elect("n1")
	c.waitStarted("n1", 5*time.Second)
	if err := c.proposeAck(acked, "n1", payloads("base", 2), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c.net.Isolate("n2", "n1", "n3")
	for _, tag := range []string{"c1", "c2"} {
		if err := c.proposeAck(acked, "n1", payloads(tag, 3), 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	committed := c.walOf("n1").SafeSeq()
	lag := c.walOf("n3").SafeSeq()
	if lag >= committed {
		t.Fatalf("n3's safe_seq %d does not lag the commit point %d", lag, committed)
	}
	c.crash("n1")
	h.reset("n1")
	c.net.Heal()
	// n2's disk stalls: epoch B's barrier cannot commit.
	g2 := newGate(t)
	c.setInject("n2", g2.at("wal-before-write", nil))
	// n1's disk stalls above the lagging safe_seq.
	g1 := newGate(t)
	w1 := c.walOf("n1")
	c.setInject("n1", g1.at("wal-before-write", func() bool { l, _, _, _ := w1.Positions(); return l > lag }))
	c.elect("n3")
	promoted := false
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if !c.node("n1").rep.Status().Learner {
			promoted = true
			break
		}
	}
	if promoted {
		_, _, d, _ := w1.Positions()
		t.Errorf("n1 became a voter holding Seq ≤ %d while Seq ≤ %d was committed before its reset", d, committed)
		// {n1, n2} now elect n2.
		c.crash("n3")
		g1.kill()
		g2.kill()
		c.crash("n1")
		c.crash("n2")
		c.start("n1", false)
		c.start("n2", false)
		c.elect("n2")
		c.waitStarted("n2", 5*time.Second)
		c.checkAcked(acked, "n2")
		c.start("n3", false)
	} else {
		g1.release()
		g2.release()
	}
	c.net.Heal()
	leader := "n2"
	if !promoted {
		leader = "n3"
	}
	c.waitStarted(leader, 5*time.Second)
	if err := c.proposeAck(acked, leader, payloads("after", 1), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c.waitConverged(leader, 10*time.Second)
	for _, n := range c.names {
		c.checkAcked(acked, n)
	}
	h.check(t)
}
