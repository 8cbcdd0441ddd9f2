package node_test

import (
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/node/proctest"
)

// TestCluster_UnderReplicatedTellsTheTruth: the leader's
// autonomy_under_replicated is 0 on an idle cluster whose every voter holds
// every committed frame, however long it stays idle; 1 within a few seconds
// once a voter stops answering, even with nothing being written (it then
// holds what was committed, but the cluster has one copy fewer than it
// should: it survives one failure fewer); and 0 again once that voter is
// back and caught up.
func TestCluster_UnderReplicatedTellsTheTruth(t *testing.T) {
	c := proctest.NewCluster(t, 3)
	c.Start()
	leader := waitSteady(t, c)
	ingestN(t, leader.URL(), "under", 20)
	waitConverged(t, c, 30*time.Second)
	const series = "autonomy_under_replicated"

	// Idle and fully replicated: 0 at every scrape for 3 s (several
	// heartbeats, ticks and quorum checks).
	deadline := time.Now().Add(10 * time.Second)
	for metric(leader, series) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("idle, fully replicated cluster: %s = %v on the leader %s", series, metric(leader, series), leader.Name)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if v := metric(leader, series); v != 0 {
			t.Fatalf("idle, fully replicated cluster: %s = %v on the leader %s (want 0 at every scrape)", series, v, leader.Name)
		}
	}

	// A follower stops; nothing is written.
	var gone *proctest.Node
	for _, n := range c.Nodes {
		if n != leader {
			gone = n
			break
		}
	}
	gone.Kill()
	t0 := time.Now()
	for metric(leader, series) != 1 {
		if time.Since(t0) > 5*time.Second {
			t.Fatalf("%s killed on an idle cluster: %s = %v on the leader after 5 s, want 1", gone.Name, series, metric(leader, series))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%s = 1 %s after the kill of %s", series, time.Since(t0).Round(time.Millisecond), gone.Name)

	// It comes back and catches up: 0 again.
	gone.Start()
	deadline = time.Now().Add(30 * time.Second)
	for {
		l := c.WaitLeader(30 * time.Second)
		if metric(l, series) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s back: %s = %v on the leader %s 30 s later", gone.Name, series, metric(l, series), l.Name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
