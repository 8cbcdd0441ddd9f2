//go:build integration

package integration

import (
	"context"
	"math/rand"
	"os"
	"strconv"
	"time"
)

// 4. leader isolated from both followers while clients keep writing to it:
// it acknowledges nothing new, a new leader takes over, the old tail is
// truncated after heal.
func scLeaderIsolated(s *S) error {
	s.W.Start(3, WriterOpts{})
	s.WaitAcks(50, 15*time.Second, "before the fault")
	old, _, fs, err := s.leaderAndFollowers()
	if err != nil {
		return err
	}
	s.W.Start(2, WriterOpts{Pin: old}) // clients that keep writing to the old leader
	s.Sleep(500 * time.Millisecond)
	fp := Isolate(old, fs...)
	if err := s.Inject(fp); err != nil {
		return err
	}
	t0 := time.Now() // the fault is in place
	s.Failover(t0, 20*time.Second, old)
	nl, _, err := s.C.WaitLeader(20*time.Second, old)
	if err != nil {
		return err
	}
	s.Logf("new leader %s", nl.Name)
	s.WaitAcks(50, 10*time.Second, "on the majority side")
	s.Sleep(2 * time.Second)
	ows, err := old.WALStatus(context.Background())
	if err == nil {
		s.Logf("isolated old leader %s: last_seq=%d safe_seq=%d (an uncommitted tail of %d frames)", old.Name, ows.LastSeq, ows.SafeSeq, ows.LastSeq-ows.SafeSeq)
	}
	n := s.W.AcksBetween(t0, time.Now(), old.Name, true)
	s.Expect(n == 0, "the isolated old leader %s acknowledged %d events first sent after it was cut off", old.Name, n)
	ok, why := healthNot200For(old, 500*time.Millisecond)
	s.Expect(ok, "the isolated old leader still reports it can commit: %s", why)
	if err := s.Heal(fp); err != nil {
		return err
	}
	s.WaitAcks(50, 15*time.Second, "after the heal")
	s.W.Stop()
	conv, err := s.C.WaitConverged(60 * time.Second)
	if err != nil {
		s.Expect(false, "after healing: %v", err)
		return nil
	}
	if ows.LastSeq > ows.SafeSeq {
		s.Expect(logHas(old, "WAL_DIVERGENT_SUFFIX_TRUNCATED") || conv.SafeSeq >= ows.LastSeq,
			"the old leader's uncommitted tail (Seq %d..%d) was neither truncated (WAL_DIVERGENT_SUFFIX_TRUNCATED) nor adopted", ows.SafeSeq+1, ows.LastSeq)
		for _, l := range grepLog(old, "WAL_DIVERGENT_SUFFIX_TRUNCATED", 3) {
			s.Logf("%s: %s", old.Name, l)
		}
	}
	return nil
}

// 5. one follower isolated: no failover, catch-up after heal.
func scFollowerIsolated(s *S) error {
	s.W.Start(4, WriterOpts{})
	s.WaitAcks(50, 15*time.Second, "before the fault")
	l, epoch, fs, err := s.leaderAndFollowers()
	if err != nil {
		return err
	}
	f := fs[rand.Intn(len(fs))]
	fp := Isolate(f, s.C.Others(f)...)
	if err := s.Inject(fp); err != nil {
		return err
	}
	s.WaitAcks(100, 10*time.Second, "with a follower isolated")
	s.Sleep(4 * time.Second)
	if err := s.Heal(fp); err != nil {
		return err
	}
	s.Expect(s.waitCaughtUp(f, 30*time.Second) == nil, "%s did not catch up after the heal", f.Name)
	s.Sleep(2 * time.Second)
	l2, h2, err := s.Leader()
	if err == nil {
		s.Expect(l2 == l && h2.Epoch == epoch, "isolating a follower caused a failover: leader %s epoch %d, now %s epoch %d", l.Name, epoch, l2.Name, h2.Epoch)
	}
	return nil
}

// 6. one-way cut: the followers' replication answers (acks) to the leader
// are dropped. The leader acknowledges nothing it wrote after the cut; the
// cluster recovers under another leader.
func scAcksDropped(s *S) error {
	s.W.Start(4, WriterOpts{})
	s.WaitAcks(50, 15*time.Second, "before the fault")
	old, _, fs, err := s.leaderAndFollowers()
	if err != nil {
		return err
	}
	s.W.Start(1, WriterOpts{Pin: old})
	fp := NewIPTables("drop-acks(followers→"+old.Name+" :7400)", old, Rule{In: true, Peers: fs, Port: PortRepl, PeerPort: true})
	safeBefore := uint64(0)
	if ws, err := old.WALStatus(context.Background()); err == nil {
		safeBefore = ws.SafeSeq
	}
	if err := s.Inject(fp); err != nil {
		return err
	}
	t0 := time.Now()                 // the fault is in place
	s.Sleep(1200 * time.Millisecond) // below the 1.5 s quorum timeout: still leading, nothing commits
	if ws, err := old.WALStatus(context.Background()); err == nil {
		s.Logf("%s 1.2 s into the cut: safe_seq %d → %d, last_seq %d", old.Name, safeBefore, ws.SafeSeq, ws.LastSeq)
	}
	s.Failover(t0, 20*time.Second, old)
	s.Sleep(3 * time.Second)
	n := s.W.AcksBetween(t0, time.Now(), old.Name, true)
	s.Expect(n == 0, "%s acknowledged %d events first sent after its followers' acks were cut", old.Name, n)
	if l, _, err := s.Leader(); err == nil {
		s.Logf("leader during the cut: %s", l.Name)
	}
	return s.Heal(fp)
}

// 7. one-way the other way: everything the leader sends to the followers is
// dropped (all ports); they hear nothing from it, it hears them.
func scLeaderMuted(s *S) error {
	s.W.Start(4, WriterOpts{})
	s.WaitAcks(50, 15*time.Second, "before the fault")
	old, _, fs, err := s.leaderAndFollowers()
	if err != nil {
		return err
	}
	s.W.Start(1, WriterOpts{Pin: old})
	fp := NewIPTables("drop("+old.Name+"→followers)", old, Rule{In: false, Peers: fs})
	if err := s.Inject(fp); err != nil {
		return err
	}
	t0 := time.Now() // the fault is in place
	s.Failover(t0, 20*time.Second, old)
	nl, _, err := s.C.WaitLeader(20*time.Second, old)
	if err == nil {
		s.Logf("new leader %s", nl.Name)
	} else {
		s.Expect(false, "no leader other than the muted %s: %v", old.Name, err)
	}
	s.Sleep(3 * time.Second)
	n := s.W.AcksBetween(t0, time.Now(), old.Name, true)
	s.Expect(n == 0, "%s acknowledged %d events first sent after it could no longer reach its followers", old.Name, n)
	return s.Heal(fp)
}

// 8. the leader is cut from the etcd peers only (ports 2379/2380), still
// reaching the followers on replication: it loses its lease and is fenced.
func scLeaderEtcdCut(s *S) error {
	s.W.Start(4, WriterOpts{})
	s.WaitAcks(50, 15*time.Second, "before the fault")
	old, oldEpoch, fs, err := s.leaderAndFollowers()
	if err != nil {
		return err
	}
	s.W.Start(1, WriterOpts{Pin: old})
	fp := CutPorts(old, fs, PortEtcdClient, PortEtcdPeer)
	if err := s.Inject(fp); err != nil {
		return err
	}
	t0 := time.Now() // the fault is in place
	s.Failover(t0, 20*time.Second, old)
	nl, nh, err := s.C.WaitLeader(20*time.Second, old)
	if err != nil {
		s.Expect(false, "no new leader while %s is cut from etcd: %v", old.Name, err)
		return nil
	}
	s.Expect(nh.Epoch > oldEpoch, "new leader %s epoch %d not above %d", nl.Name, nh.Epoch, oldEpoch)
	_, _, tn, ok := s.M.LeaderSince(t0)
	if !ok {
		tn = time.Now()
	}
	s.Logf("new leader %s (epoch %d) serving %s after the cut", nl.Name, nh.Epoch, tn.Sub(t0).Round(time.Millisecond))
	s.Sleep(3 * time.Second)
	n := s.W.AcksBetween(tn, time.Now(), old.Name, true)
	s.Expect(n == 0, "the fenced old leader %s acknowledged %d events first sent after the new leader took over", old.Name, n)
	ok, why := healthNot200For(old, time.Second)
	s.Expect(ok, "the old leader, cut from etcd for %s, still serves: %s", time.Since(t0).Round(time.Second), why)
	s.Expect(logHas(old, "LEADER_SESSION_LOST") || logHas(old, "LEADERSHIP_ENDED"), "%s never logged losing its session", old.Name)
	return s.Heal(fp)
}

// 9. bridge: A (the leader) and C cannot talk; B sees both.
func scBridge(s *S) error {
	s.W.Start(4, WriterOpts{})
	s.WaitAcks(50, 15*time.Second, "before the fault")
	a, _, fs, err := s.leaderAndFollowers()
	if err != nil {
		return err
	}
	c := fs[rand.Intn(len(fs))]
	fp := Isolate(a, c)
	fp.Label = "bridge(" + a.Name + "×" + c.Name + ")"
	if err := s.Inject(fp); err != nil {
		return err
	}
	t0 := time.Now() // the fault is in place
	s.Sleep(8 * time.Second)
	n := s.W.AcksBetween(t0.Add(3*time.Second), time.Now(), "", false)
	s.Logf("bridge: %d acknowledged in the last 5 s; leader epochs seen so far %d", n, s.M.LeaderEpochs())
	s.Expect(n >= 50, "with a bridge partition (a majority can still talk) only %d writes were acknowledged in 5 s", n)
	return s.Heal(fp)
}

// 10. flapping partitions every 1–5 s for a minute under writes.
func scFlapping(s *S) error {
	dur := 60 * time.Second
	if v, err := strconv.Atoi(os.Getenv("AUTONOMY_FLAP_SECONDS")); err == nil && v > 0 {
		dur = time.Duration(v) * time.Second
	}
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	s.Logf("flapping for %s, seed %d", dur, seed)
	s.W.Start(4, WriterOpts{})
	s.WaitAcks(50, 15*time.Second, "before the fault")
	end := time.Now().Add(dur)
	var cur Failpoint
	cuts := 0
	for time.Now().Before(end) {
		if cur != nil {
			if err := s.Heal(cur); err != nil {
				return err
			}
			cur = nil
		}
		if rng.Intn(4) > 0 { // mostly partitioned, sometimes whole
			ns := s.C.Nodes
			a := ns[rng.Intn(3)]
			others := s.C.Others(a)
			switch rng.Intn(4) {
			case 0:
				cur = Isolate(a, others...)
			case 1:
				fp := Isolate(a, others[rng.Intn(2)])
				fp.Label = "bridge-" + fp.Label
				cur = fp
			case 2:
				cur = NewIPTables("one-way-in("+a.Name+")", a, Rule{In: true, Peers: others})
			default:
				cur = NewIPTables("one-way-out("+a.Name+")", a, Rule{In: false, Peers: others})
			}
			if err := s.Inject(cur); err != nil {
				return err
			}
			cuts++
		}
		s.Sleep(time.Second + time.Duration(rng.Intn(4000))*time.Millisecond)
	}
	if cur != nil {
		if err := s.Heal(cur); err != nil {
			return err
		}
	}
	s.Logf("%d partitions in %s; %d leader epochs seen", cuts, dur, s.M.LeaderEpochs())
	s.WaitAcks(50, 30*time.Second, "after the flapping stopped")
	return nil
}

// 17. 75±50 ms delay and 5% loss on every link under load.
func scNetem(s *S) error {
	s.W.Start(4, WriterOpts{})
	s.WaitAcks(50, 15*time.Second, "before the fault")
	fp := &NetemFP{Nodes: s.C.Nodes, DelayMs: 75, JitterMs: 50, LossPct: 5}
	if err := s.Inject(fp); err != nil {
		return err
	}
	t0 := time.Now() // the fault is in place
	s.Logf("delay and loss by %s", fp.How())
	s.Sleep(20 * time.Second)
	n := s.W.AcksBetween(t0, time.Now(), "", false)
	s.Logf("%d writes acknowledged in 20 s of 75±50 ms delay and 5%% loss (ack latency p50 %s); %d leader epochs seen",
		n, s.W.AckLatencyP50(t0, time.Now()).Round(time.Millisecond), s.M.LeaderEpochs())
	s.Expect(n >= 40, "only %d writes acknowledged in 20 s of 75±50 ms delay and 5%% loss", n)
	if err := s.Heal(fp); err != nil {
		return err
	}
	s.WaitAcks(30, 15*time.Second, "after the delay was removed")
	return nil
}
