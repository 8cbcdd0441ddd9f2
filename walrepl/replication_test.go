package walrepl

import (
	"testing"
	"time"
)

// TestReplication_basic: a leader commits through a majority and every node
// ends up with identical frames.
func TestReplication_basic(t *testing.T) {
	c := makeCluster(t, 3)
	c.elect("n1")
	c.waitStarted("n1", 5*time.Second)
	acked := map[uint64]string{}
	for i := 0; i < 20; i++ {
		_, l := c.mustPropose("n1", "basic", 5)
		acked[l] = "basic"
	}
	waitFor(t, 5*time.Second, "followers to catch up", func() bool {
		return c.node("n2").wal.SafeSeq() == c.node("n1").wal.SafeSeq() && c.node("n3").wal.SafeSeq() == c.node("n1").wal.SafeSeq()
	})
	c.checkCommitted(c.frames("n1"), acked)
}

// TestReplication_rule3_shortestLogWinsElection: etcd may elect the node with
// the shortest log; it must adopt the most up-to-date tail of its promise
// majority, so nothing acknowledged is lost.
func TestReplication_rule3_shortestLogWinsElection(t *testing.T) {
	c := makeCluster(t, 3)
	c.elect("n1")
	c.waitStarted("n1", 5*time.Second)
	c.mustPropose("n1", "before", 10)
	c.net.Isolate("n3", "n1", "n2") // n3 lags from here on
	acked := map[uint64]string{}
	for i := 0; i < 10; i++ {
		_, l := c.mustPropose("n1", "while-n3-away", 3)
		acked[l] = "while-n3-away"
	}
	c.crash("n1")
	c.net.Heal()
	c.elect("n3") // the shortest log
	c.waitStarted("n3", 5*time.Second)
	_, l := c.mustPropose("n3", "after", 1)
	acked[l] = "after"
	ref := c.frames("n3")
	c.checkCommitted(ref, acked)
	c.start("n1", false)
	waitFor(t, 5*time.Second, "n1 to catch up", func() bool { return c.node("n1").wal.SafeSeq() >= l })
	c.checkCommitted(c.frames("n3"), acked)
}
