package walrepl

// Randomised fault schedules under ingest. Each seed fixes the schedule of
// faults (partitions, one-way cuts, crashes, restarts, elections of random
// nodes) through math/rand; the proposers and the sampler run alongside.
//
//	go test -run TestRandomised ./walrepl                    # the CI seeds
//	WALREPL_SEEDS="1,2,3,40" go test -run TestRandomised ./walrepl
//	WALREPL_SEED=7 go test -run TestRandomised ./walrepl     # replay one

import (
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// defaultSeeds is what CI runs.
var defaultSeeds = []int64{1, 2, 3, 4, 5, 6, 7, 8}

func randomSeeds(t *testing.T) []int64 {
	if s := os.Getenv("WALREPL_SEED"); s != "" {
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			t.Fatalf("WALREPL_SEED=%q: %v", s, err)
		}
		return []int64{n}
	}
	if s := os.Getenv("WALREPL_SEEDS"); s != "" {
		var out []int64
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
			if err != nil {
				t.Fatalf("WALREPL_SEEDS=%q: %v", s, err)
			}
			out = append(out, n)
		}
		return out
	}
	return defaultSeeds
}

func TestRandomised(t *testing.T) {
	for _, seed := range randomSeeds(t) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			defer func() {
				if t.Failed() {
					t.Logf("FAILED with seed %d; replay: WALREPL_SEED=%d go test -run TestRandomised ./walrepl", seed, seed)
				}
			}()
			runRandomSchedule(t, seed)
		})
	}
}

// runRandomSchedule runs one seed's schedule: steps of faults with pauses
// between them, a checkpoint (heal, restart the crashed, elect, commit,
// check that the leader holds everything acknowledged) every few steps, and
// a final checkpoint that restarts every node and checks that all logs
// converge with nothing acknowledged or committed lost.
func runRandomSchedule(t *testing.T, seed int64) {
	rng := rand.New(rand.NewSource(seed))
	n := 3
	if seed%4 == 0 {
		n = 5
	}
	c := makeCluster(t, n)
	h := newHistory(c)
	h.start(10 * time.Millisecond)
	acked := newAckLog()
	pick := func(from []string) string { return from[rng.Intn(len(from))] }
	up := func() (names []string) {
		for _, x := range c.names {
			if c.running(x) {
				names = append(names, x)
			}
		}
		return names
	}
	down := func() (names []string) {
		for _, x := range c.names {
			if !c.running(x) {
				names = append(names, x)
			}
		}
		return names
	}
	others := func(x string) (o []string) {
		for _, y := range c.names {
			if y != x {
				o = append(o, y)
			}
		}
		return o
	}
	learners := func() (k int) {
		for _, x := range c.names {
			if c.node(x).rep.Status().Learner {
				k++
			}
		}
		return k
	}
	voters := func() (names []string) {
		for _, x := range c.names {
			if !c.node(x).rep.Status().Learner {
				names = append(names, x)
			}
		}
		return names
	}
	step := 0
	logf := func(format string, args ...any) {
		t.Logf("seed %d step %d: "+format, append([]any{seed, step}, args...)...)
	}

	checkpoint := func(final bool) {
		t.Helper()
		c.net.Heal()
		for _, x := range down() {
			c.start(x, false)
		}
		if final {
			for _, x := range c.names {
				c.restart(x)
			}
		}
		leader := pick(voters())
		logf("checkpoint: heal, restart, elect %s (final=%v)", leader, final)
		c.elect(leader)
		c.waitStarted(leader, 10*time.Second)
		if err := c.proposeAck(acked, leader, payloads(fmt.Sprintf("checkpoint-%d", step), 1), 5*time.Second); err != nil {
			t.Fatalf("seed %d step %d: proposal on %s after healing: %v", seed, step, leader, err)
		}
		c.checkAcked(acked, leader)
		if final {
			c.waitConverged(leader, 10*time.Second)
			for _, x := range c.names {
				c.checkAcked(acked, x)
			}
			c.checkHistory(acked, leader)
		}
	}

	c.elect("n1")
	c.waitStarted("n1", 5*time.Second)
	p := c.startProposers(acked, 3, fmt.Sprintf("s%d", seed))
	defer func() {
		if p != nil {
			p.halt()
		}
	}()

	const steps = 36
	for step = 1; step <= steps; step++ {
		if step%12 == 0 {
			checkpoint(false)
			continue
		}
		switch r := rng.Intn(100); {
		case r < 25:
			if u := up(); len(u) > 0 {
				x := pick(u)
				logf("elect %s", x)
				c.elect(x)
			}
		case r < 37:
			if u := up(); len(u) > 1 {
				x := pick(u)
				logf("crash %s", x)
				c.crash(x)
			}
		case r < 52:
			if d := down(); len(d) > 0 {
				x := pick(d)
				logf("restart %s", x)
				c.start(x, false)
			}
		case r < 62:
			x := pick(c.names)
			logf("isolate %s", x)
			c.net.Isolate(x, others(x)...)
		case r < 72:
			perm := rng.Perm(n)
			k := 1 + rng.Intn(n-1)
			var a, b []string
			for i, j := range perm {
				if i < k {
					a = append(a, c.names[j])
				} else {
					b = append(b, c.names[j])
				}
			}
			logf("partition %v | %v", a, b)
			c.net.Partition(a, b)
		case r < 82:
			x := pick(c.names)
			y := pick(others(x))
			logf("cut %s → %s", x, y)
			c.net.Cut(x, y)
		case r < 86:
			// A new disk: at most one learner at a time, or no majority
			// of voters with data may remain (and, rightly, nothing can
			// be elected until an operator intervenes).
			x := pick(c.names)
			if learners() == 0 {
				logf("reset %s (new disk, rejoins as a learner)", x)
				h.reset(x)
			}
		default:
			logf("heal")
			c.net.Heal()
		}
		// The pause is part of the schedule.
		time.Sleep(time.Duration(10+rng.Intn(90)) * time.Millisecond)
	}
	step = steps + 1
	p.halt()
	p = nil
	checkpoint(true)
	if !h.check(t) {
		return
	}
	t.Logf("seed %d: %d acknowledged frames, %d committed frames checked over %d samples",
		seed, acked.len(), len(h.committed), h.samples)
	if acked.len() == 0 {
		t.Errorf("seed %d: nothing was acknowledged; the schedule exercised nothing", seed)
	}
}
