package walrepl

import (
	"slices"
	"sync"
)

// commitment is the quorum watermark of one leader epoch (DESIGN §6 rule 1):
// each voter's fsynced Seq, and the highest Seq a majority of voters has
// fsynced. It only moves forward, and never below the epoch's barrier frame:
// a leader commits earlier epochs' frames only by committing a frame of its
// own epoch after them (Raft's Figure 8).
type commitment struct {
	mu      sync.Mutex
	match   map[string]uint64 // voter → fsynced Seq that matches the leader's log
	barrier uint64            // Seq of this epoch's epoch-start frame
	commit  uint64
	changed func(uint64) // called with the new commit Seq, under no lock of ours
}

func newCommitment(voters []string, barrier uint64, changed func(uint64)) *commitment {
	c := &commitment{match: map[string]uint64{}, barrier: barrier, changed: changed}
	for _, v := range voters {
		c.match[v] = 0
	}
	return c
}

// quorum is the number of voters that make a majority.
func (c *commitment) quorum() int { return len(c.match)/2 + 1 }

// setMatch records that voter has fsynced everything up to seq. Reports from
// non-voters (learners) are ignored. Matches only grow.
func (c *commitment) setMatch(voter string, seq uint64) {
	c.mu.Lock()
	prev, ok := c.match[voter]
	if !ok || seq <= prev {
		c.mu.Unlock()
		return
	}
	c.match[voter] = seq
	newCommit := c.recalcLocked()
	c.mu.Unlock()
	if newCommit != 0 && c.changed != nil {
		c.changed(newCommit)
	}
}

// recalcLocked returns the new commit Seq if it moved, else 0.
func (c *commitment) recalcLocked() uint64 {
	vals := make([]uint64, 0, len(c.match))
	for _, v := range c.match {
		vals = append(vals, v)
	}
	slices.Sort(vals)
	slices.Reverse(vals)
	q := vals[c.quorum()-1]
	if q < c.barrier || q <= c.commit {
		return 0
	}
	c.commit = q
	return q
}

// matches returns a copy of the per-voter matches.
func (c *commitment) matches() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]uint64, len(c.match))
	for k, v := range c.match {
		out[k] = v
	}
	return out
}

func (c *commitment) committed() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.commit
}

// resetMatch forgets what a voter was known to hold: its log was replaced.
// The commit point never moves back; only future commits stop counting it.
func (c *commitment) resetMatch(voter string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.match[voter]; ok {
		c.match[voter] = 0
	}
}
