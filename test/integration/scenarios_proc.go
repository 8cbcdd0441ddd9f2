//go:build integration

package integration

import (
	"context"
	"fmt"
	"math/rand"
	"net/http"
	"sort"
	"strings"
	"time"
)

// 1. kill -9 the leader under load, twice.
func scKillLeader(s *S) error {
	s.W.Start(4, WriterOpts{})
	s.WaitAcks(50, 15*time.Second, "before the fault")
	for round := 1; round <= 2; round++ {
		l, _, _, err := s.leaderAndFollowers()
		if err != nil {
			return err
		}
		fp := KillFP{Nodes: []*Node{l}}
		if err := s.Inject(fp); err != nil {
			return err
		}
		t0 := time.Now() // the fault is in place
		s.Failover(t0, 15*time.Second, l)
		s.WaitAcks(30, 10*time.Second, "after the failover")
		if err := s.Heal(fp); err != nil {
			return err
		}
		if err := s.waitCaughtUp(l, 30*time.Second); err != nil {
			s.Expect(false, "round %d: the killed leader %s did not catch up: %v", round, l.Name, err)
		}
	}
	return nil
}

// 2. kill -9 a follower, restart it, it catches up; no failover.
func scKillFollower(s *S) error {
	s.W.Start(4, WriterOpts{})
	s.WaitAcks(50, 15*time.Second, "before the fault")
	l, epoch, fs, err := s.leaderAndFollowers()
	if err != nil {
		return err
	}
	f := fs[rand.Intn(len(fs))]
	fp := KillFP{Nodes: []*Node{f}}
	if err := s.Inject(fp); err != nil {
		return err
	}
	s.WaitAcks(50, 10*time.Second, "with one follower dead")
	s.Sleep(2 * time.Second)
	if err := s.Heal(fp); err != nil {
		return err
	}
	s.Expect(s.waitCaughtUp(f, 30*time.Second) == nil, "%s did not catch up after its restart", f.Name)
	l2, h2, err := s.Leader()
	if err == nil {
		s.NoteUnless(l2 == l && h2.Epoch == epoch, "a follower's death caused a leader change: leader %s epoch %d, now %s epoch %d", l.Name, epoch, l2.Name, h2.Epoch)
	}
	s.WaitAcks(30, 10*time.Second, "after the restart")
	return nil
}

// 3. kill -9 all three at once, restart in random order, the shortest log first.
func scKillAll(s *S) error {
	s.W.Start(4, WriterOpts{})
	s.WaitAcks(100, 15*time.Second, "before the fault")
	s.Sleep(time.Duration(rand.Intn(1000)) * time.Millisecond)
	fp := KillFP{Nodes: s.C.Nodes}
	if err := s.Inject(fp); err != nil {
		return err
	}
	t0 := time.Now() // the fault is in place
	type nl struct {
		n    *Node
		last uint64
	}
	var order []nl
	for _, n := range s.C.Nodes {
		if _, ok := n.WaitExit(20 * time.Second); !ok {
			return fmt.Errorf("%s still runs after kill", n.Name)
		}
		last, err := lastSeqOnDisk(n)
		if err != nil {
			return err
		}
		order = append(order, nl{n, last})
	}
	sort.Slice(order, func(i, j int) bool { return order[i].last < order[j].last })
	rest := order[1:]
	rand.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
	for i, o := range order {
		s.Logf("restart %d: %s (last Seq on disk %d)", i+1, o.n.Name, o.last)
		if err := o.n.Start(); err != nil {
			return err
		}
		s.Sleep(1500 * time.Millisecond)
	}
	s.Heal(fp) // every node already runs: nothing left to do but forget the fault
	s.Failover(t0, 60*time.Second, nil)
	s.WaitAcks(50, 15*time.Second, "after the restart")
	return nil
}

// 11. leader paused beyond its lease TTL; a new leader writes; unpause: the
// old one never commits in its old epoch.
func scLeaderPaused(s *S) error {
	s.W.Start(3, WriterOpts{})
	s.WaitAcks(50, 15*time.Second, "before the fault")
	old, oldEpoch, _, err := s.leaderAndFollowers()
	if err != nil {
		return err
	}
	fp := PauseFP{Nodes: []*Node{old}}
	if err := s.Inject(fp); err != nil {
		return err
	}
	t0 := time.Now() // the fault is in place
	s.Failover(t0, 20*time.Second, old)
	nl, nh, err := s.C.WaitLeader(20*time.Second, old)
	if err != nil {
		return err
	}
	s.Expect(nh.Epoch > oldEpoch, "new leader %s has epoch %d, not above the paused leader's %d", nl.Name, nh.Epoch, oldEpoch)
	s.Sleep(max(0, 3*time.Second-time.Since(t0))) // paused beyond the 2 s lease TTL in any case
	s.WaitAcks(30, 10*time.Second, "the new leader writes")
	// A request aimed at the frozen old leader, pending while it thaws.
	done := make(chan Event, 1)
	go func() { done <- s.W.WriteOne(context.Background(), old) }()
	s.Sleep(300 * time.Millisecond)
	if err := s.Heal(fp); err != nil {
		return err
	}
	ev := <-done
	s.Logf("write pinned to the thawed old leader: %s (Seq %d)", ev.Outcome, ev.Seq)
	ok, why := healthNot200For(old, 3*time.Second)
	if !ok {
		_, h, _ := old.Health(context.Background())
		s.Expect(h.Epoch != oldEpoch, "the thawed old leader serves again in its old epoch %d: %s", oldEpoch, why)
	}
	s.WaitAcks(30, 10*time.Second, "after the thaw")
	return nil
}

// 12. a follower paused during a burst: no failover, catch-up after.
func scFollowerPaused(s *S) error {
	s.W.Start(2, WriterOpts{})
	s.WaitAcks(30, 15*time.Second, "before the fault")
	l, epoch, fs, err := s.leaderAndFollowers()
	if err != nil {
		return err
	}
	f := fs[rand.Intn(len(fs))]
	fp := PauseFP{Nodes: []*Node{f}}
	if err := s.Inject(fp); err != nil {
		return err
	}
	stopBurst := s.W.Start(8, WriterOpts{})
	t0 := time.Now()
	s.Sleep(5 * time.Second)
	stopBurst()
	n := s.W.AcksBetween(t0, time.Now(), "", false)
	s.Logf("burst with %s paused: %d acknowledged in 5 s", f.Name, n)
	s.Expect(n >= 100, "only %d writes acknowledged during a 5 s burst with one follower paused", n)
	if err := s.Heal(fp); err != nil {
		return err
	}
	s.Expect(s.waitCaughtUp(f, 30*time.Second) == nil, "%s did not catch up after the thaw", f.Name)
	l2, h2, err := s.Leader()
	if err == nil {
		s.NoteUnless(l2 == l && h2.Epoch == epoch, "a paused follower caused a leader change (F2): leader %s epoch %d, now %s epoch %d", l.Name, epoch, l2.Name, h2.Epoch)
	}
	return nil
}

// 13. two leader kills within a second.
func scDoubleLeaderKill(s *S) error {
	s.W.Start(4, WriterOpts{})
	s.WaitAcks(50, 15*time.Second, "before the fault")
	l1, _, _, err := s.leaderAndFollowers()
	if err != nil {
		return err
	}
	fp1 := KillFP{Nodes: []*Node{l1}}
	if err := s.Inject(fp1); err != nil {
		return err
	}
	t0 := time.Now() // the fault is in place
	// The second victim: the next leader if one serves within the second,
	// else the survivor that is furthest ahead (the likeliest next leader).
	var l2 *Node
	for time.Since(t0) < 900*time.Millisecond && l2 == nil {
		for _, n := range s.C.Others(l1) {
			if code, h, err := n.Health(context.Background()); err == nil && (code == http.StatusOK || h.Role == "candidate" || h.Role == "leader") {
				l2 = n
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if l2 == nil {
		var best uint64
		for _, n := range s.C.Others(l1) {
			ws, err := n.WALStatus(context.Background())
			if err == nil && (l2 == nil || ws.LastSeq > best) {
				l2, best = n, ws.LastSeq
			}
		}
	}
	if l2 == nil {
		return fmt.Errorf("no second victim found")
	}
	fp2 := KillFP{Nodes: []*Node{l2}}
	if err := s.Inject(fp2); err != nil {
		return err
	}
	s.Logf("second kill %s %s after the first", l2.Name, time.Since(t0).Round(time.Millisecond))
	if err := s.Heal(fp1); err != nil {
		return err
	}
	if err := s.Heal(fp2); err != nil {
		return err
	}
	s.Failover(t0, 60*time.Second, nil)
	s.WaitAcks(50, 15*time.Second, "after both kills")
	return nil
}

// 14. a follower restarted with an empty data dir: a learner until caught
// up, then the leader is killed and nothing is lost.
func scEmptyFollower(s *S) error {
	s.W.Start(4, WriterOpts{})
	s.WaitAcks(300, 20*time.Second, "before the fault")
	l, _, fs, err := s.leaderAndFollowers()
	if err != nil {
		return err
	}
	v, g := fs[0], fs[1]
	wipe := DataEditFP{Label: "wipe-data-dir", Node: v, Edit: func(n *Node) error {
		return removeContents(n)
	}}
	if err := s.Inject(wipe); err != nil {
		return err
	}
	if err := s.C.ReplaceEtcdMember(l, v); err != nil {
		return fmt.Errorf("replacing %s's etcd member: %w", v.Name, err)
	}
	v.SetExisting(true)
	// The other follower freezes: until the empty node holds everything
	// committed, the leader has no majority and must commit nothing.
	pause := PauseFP{Nodes: []*Node{g}}
	if err := s.Inject(pause); err != nil {
		return err
	}
	tp := time.Now()
	s.Sleep(300 * time.Millisecond)
	lw, err := l.WALStatus(context.Background())
	if err != nil {
		return err
	}
	s0 := lw.SafeSeq
	tj := time.Now()
	if err := s.Heal(wipe); err != nil {
		return err
	}
	role, ok := waitRole(v, 30*time.Second, "learner", "follower")
	s.Expect(ok && role == "learner", "the node with an empty data dir reported role %q first, not learner", role)
	caughtUp := false
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && !caughtUp {
		at, acked := s.W.FirstAckAfter(tp, "")
		ws, err := v.WALStatus(context.Background())
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		caughtUp = ws.FsyncedSeq >= s0
		if acked && !caughtUp {
			s.Expect(false, "with %s frozen, a write was acknowledged at %s while the learner %s held only Seq %d of the %d committed before: the learner counted for the majority",
				g.Name, at.Format("15:04:05.000"), v.Name, ws.FsyncedSeq, s0)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	n := s.W.AcksBetween(tp, time.Now(), "", true)
	s.Logf("with %s frozen and %s learning: caught up to Seq %d = %v, %d writes acknowledged", g.Name, v.Name, s0, caughtUp, n)
	if err := s.Heal(pause); err != nil {
		return err
	}
	role, ok = waitRole(v, 60*time.Second, "follower")
	s.Expect(ok, "the learner did not become a follower within 60 s (role %q)", role)
	s.Logf("%s: learner to follower in %s", v.Name, time.Since(tj).Round(time.Millisecond))
	s.Expect(logHas(v, "WAL_LEARNER"), "%s never logged WAL_LEARNER", v.Name)
	l, _, err = s.Leader()
	if err != nil {
		return err
	}
	kill := KillFP{Nodes: []*Node{l}}
	if err := s.Inject(kill); err != nil {
		return err
	}
	t0 := time.Now() // the fault is in place
	s.Failover(t0, 20*time.Second, l)
	s.WaitAcks(30, 10*time.Second, "after the leader's death")
	return s.Heal(kill)
}

// 18. slow fsync on the leader (failpoint wal-before-fsync=sleep(200ms)).
func scSlowFsync(s *S) error {
	_, _, fs, err := s.leaderAndFollowers()
	if err != nil {
		return err
	}
	x := fs[0]
	fp := EnvFailpointFP{Node: x, Spec: "wal-before-fsync=sleep(200ms)"}
	if err := s.Inject(fp); err != nil {
		return err
	}
	if err := waitAnswering(x, 30*time.Second); err != nil {
		return err
	}
	if err := s.makeLeader(x); err != nil {
		return err
	}
	s.W.Start(4, WriterOpts{})
	t0 := time.Now()
	s.Sleep(8 * time.Second)
	p50 := s.W.AckLatencyP50(t0, time.Now())
	s.Logf("%s as leader with a 200 ms sleep before each fsync: ack latency p50 %s", x.Name, p50.Round(time.Millisecond))
	s.Expect(p50 >= 150*time.Millisecond, "the failpoint did not slow the leader's commits (ack latency p50 %s)", p50)
	n := s.W.AcksBetween(t0, time.Now(), "", false)
	s.Logf("%d writes acknowledged in 8 s with a 200 ms fsync on the leader", n)
	s.Expect(n >= 20, "only %d writes acknowledged in 8 s with a slow fsync", n)
	l, _, err := s.Leader()
	if err == nil {
		s.Expect(l == x, "the slow leader %s lost leadership to %s", x.Name, l.Name)
	}
	if err := x.Kill(); err != nil { // a leader loss
		return err
	}
	t1 := time.Now()
	if err := s.Heal(fp); err != nil { // restarts x without the failpoint
		return err
	}
	s.Failover(t1, 20*time.Second, nil)
	return nil
}

// 19. crash at each failpoint of the write path, on a follower and on a
// node that has just become leader.
func scCrashFailpoints(s *S) error {
	// powerloss also drops what the write put in the page cache (from a
	// random point inside it: a torn write), as a power cut would.
	specs := []string{"wal-before-write=crash", "wal-before-fsync=crash", "wal-before-fsync=powerloss",
		"wal-after-fsync=crash", "safeseq-before-persist=crash"}
	for _, p := range specs {
		// A follower crashes at the point with the next replicated batch.
		stop := s.W.Start(3, WriterOpts{})
		s.WaitAcks(20, 15*time.Second, "before "+p)
		_, _, fs, err := s.leaderAndFollowers()
		if err != nil {
			return err
		}
		f := fs[rand.Intn(len(fs))]
		fp := EnvFailpointFP{Node: f, Spec: p}
		if err := s.Inject(fp); err != nil {
			return err
		}
		code, exited := f.WaitExit(30 * time.Second)
		s.Expect(exited && code == 137, "follower %s with %s: exited=%v status %d (expected the failpoint's SIGKILL, 137)", f.Name, p, exited, code)
		s.WaitAcks(20, 10*time.Second, "with the crashed follower down")
		if err := s.Heal(fp); err != nil {
			return err
		}
		s.Expect(s.waitCaughtUp(f, 30*time.Second) == nil, "%s did not recover and catch up after the failpoint %s", f.Name, p)
		stop()

		// A node made leader crashes at the point while taking over
		// (writing, syncing or committing its epoch-start frame), with no
		// client load until then so that it cannot crash as a follower.
		s.Sleep(time.Second) // every follower has persisted the final safe_seq
		_, _, fs, err = s.leaderAndFollowers()
		if err != nil {
			return err
		}
		x := fs[rand.Intn(len(fs))]
		fpl := EnvFailpointFP{Node: x, Spec: p}
		if err := s.Inject(fpl); err != nil {
			return err
		}
		if err := waitAnswering(x, 30*time.Second); err != nil {
			return err
		}
		if _, ok := waitRole(x, 20*time.Second, "follower"); !ok {
			return fmt.Errorf("%s with %s did not come up as a follower", x.Name, p)
		}
		// The product's planned failover, not restarts: a restarted node
		// is unconfirmed until a leader confirms it (DESIGN §6 rule 13),
		// and a restart of the old leader plus x's crash would be the
		// double fault that rule lets stall until x returns.
		// The leader refuses (409) until x's replication stream is back
		// after its restart with the failpoint: ask again until it accepts.
		var herr error
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
			l, _, lerr := s.Leader()
			if herr = lerr; lerr == nil {
				_, herr = l.PlannedFailover(context.Background(), x.Name, 20*time.Second)
			}
			if herr == nil || !strings.Contains(herr.Error(), "failover_refused") {
				break
			}
		}
		code, exited = x.WaitExit(20 * time.Second)
		t0 := time.Now() // about when it crashed
		s.Expect(exited && code == 137, "%s with %s did not crash taking over as leader (exited=%v status %d, hand-over: %v)", x.Name, p, exited, code, herr)
		stop = s.W.Start(3, WriterOpts{})
		s.Failover(t0, 30*time.Second, x)
		if err := s.Heal(fpl); err != nil {
			return err
		}
		s.Expect(s.waitCaughtUp(x, 30*time.Second) == nil, "%s did not recover and catch up after the failpoint %s as leader", x.Name, p)
		stop()
	}
	return nil
}

// 23. rolling restart of all three under load, followers first.
func scRollingRestart(s *S) error {
	s.W.Start(4, WriterOpts{})
	s.WaitAcks(50, 15*time.Second, "before the restarts")
	l, _, fs, err := s.leaderAndFollowers()
	if err != nil {
		return err
	}
	for _, n := range append(fs, l) {
		wasLeader := n == l
		fp := StopFP{Nodes: []*Node{n}}
		t0 := time.Now() // a planned stop: the failover starts with it
		if err := s.Inject(fp); err != nil {
			return err
		}
		if wasLeader {
			s.Failover(t0, 15*time.Second, n)
		} else {
			s.WaitAcks(20, 10*time.Second, "with "+n.Name+" stopped")
		}
		if err := s.Heal(fp); err != nil {
			return err
		}
		s.Expect(s.waitCaughtUp(n, 30*time.Second) == nil, "%s did not catch up after its restart", n.Name)
	}
	s.WaitAcks(30, 10*time.Second, "after the rolling restart")
	return nil
}

// 24. two nodes stopped: the third answers 503 and acknowledges nothing;
// it recovers when they return.
func scTwoStopped(s *S) error {
	s.W.Start(4, WriterOpts{})
	s.WaitAcks(50, 15*time.Second, "before the fault")
	l, _, fs, err := s.leaderAndFollowers()
	if err != nil {
		return err
	}
	fp := StopFP{Nodes: fs}
	if err := s.Inject(fp); err != nil {
		return err
	}
	t0 := time.Now()
	s.Sleep(2 * time.Second) // the quorum timeout (1.5 s) passes
	ok, why := healthNot200For(l, 6*time.Second)
	s.Expect(ok, "alone, %s still claims to be a leader that can commit: %s", l.Name, why)
	code, h, err := l.Health(context.Background())
	s.Logf("%s alone: /v1/health %d role=%s reasons=%v err=%v", l.Name, code, h.Role, h.Reasons, err)
	t1 := time.Now()
	n := s.W.AcksBetween(t0, t1, "", true)
	s.Expect(n == 0, "%d events first sent after two of three nodes stopped were acknowledged", n)
	if err := s.Heal(fp); err != nil {
		return err
	}
	s.WaitAcks(30, 30*time.Second, "after the two nodes returned")
	if at, ok := s.W.FirstAckAfter(t1, ""); ok {
		s.Logf("writes resumed %s after the two nodes were started", at.Sub(t1).Round(time.Millisecond))
	}
	return nil
}
