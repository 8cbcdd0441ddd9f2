//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/autonomyops/orchestrator/test/checker"
)

// Scenario is one fault scenario of issue 5.
type Scenario struct {
	Num  int
	Name string
	Desc string
	Opts ClusterOptions
	Run  func(s *S) error
}

// Result is one run of one scenario.
type Result struct {
	Scenario  string
	Rep       int
	Passed    bool
	Formed    bool   // the cluster formed at the first try, before the scenario's own steps
	Skipped   string // not run, and why
	Duration  time.Duration
	Acked     int
	Failed    int
	Unknown   int
	Check     checker.CheckResult
	Failovers []time.Duration
	Errors    []string
	Notes     []string
	Artifacts string
}

// S is what a scenario drives: the cluster, its clients and its monitor,
// plus the bookkeeping of faults, expectations and failovers.
type S struct {
	t   *testing.T
	sc  *Scenario
	C   *Cluster
	W   *Workload
	M   *Monitor
	res *Result

	mu     sync.Mutex
	active []Failpoint
	errs   []string
}

// Logf logs with the scenario's name.
func (s *S) Logf(format string, args ...any) {
	s.t.Logf("%s %s: %s", time.Now().Format("15:04:05.000"), s.sc.Name, fmt.Sprintf(format, args...))
}

// Expect records a violated expectation of the product's behaviour (the
// scenario goes on; the run fails).
func (s *S) Expect(cond bool, format string, args ...any) bool {
	if !cond {
		msg := fmt.Sprintf(format, args...)
		s.Logf("EXPECTATION FAILED: %s", msg)
		s.mu.Lock()
		s.errs = append(s.errs, msg)
		s.mu.Unlock()
	}
	return cond
}

// NoteUnless records a remark about liveness that the design tolerates (a
// spurious election costs availability, never data): reported, not failed.
func (s *S) NoteUnless(cond bool, format string, args ...any) {
	if !cond {
		msg := fmt.Sprintf(format, args...)
		s.Logf("NOTE: %s", msg)
		s.mu.Lock()
		s.res.Notes = append(s.res.Notes, msg)
		s.mu.Unlock()
	}
}

// Inject injects a fault and remembers it, so it is healed whatever happens.
func (s *S) Inject(fp Failpoint) error {
	s.Logf("inject %s", fp.Name())
	if err := fp.Inject(); err != nil {
		return fmt.Errorf("inject %s: %w", fp.Name(), err)
	}
	s.mu.Lock()
	s.active = append(s.active, fp)
	s.mu.Unlock()
	return nil
}

// Heal heals a fault injected earlier.
func (s *S) Heal(fp Failpoint) error {
	s.Logf("heal %s", fp.Name())
	s.forget(fp)
	if err := fp.Heal(); err != nil {
		return fmt.Errorf("heal %s: %w", fp.Name(), err)
	}
	return nil
}

// forget drops fp from the faults still injected.
func (s *S) forget(fp Failpoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, a := range s.active {
		if sameFailpoint(a, fp) {
			s.active = append(s.active[:i], s.active[i+1:]...)
			return
		}
	}
}

func sameFailpoint(a, b Failpoint) bool {
	ta, tb := reflect.TypeOf(a), reflect.TypeOf(b)
	if ta != tb {
		return false
	}
	if ta.Comparable() {
		return a == b
	}
	return a.Name() == b.Name() // e.g. a fault holding a func

}

// healAll heals what is still injected, newest first.
func (s *S) healAll() []error {
	s.mu.Lock()
	act := s.active
	s.active = nil
	s.mu.Unlock()
	var errs []error
	for i := len(act) - 1; i >= 0; i-- {
		s.Logf("heal %s (at the end)", act[i].Name())
		if err := act[i].Heal(); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// Leader waits for the single serving leader.
func (s *S) Leader() (*Node, wire.Health, error) {
	return s.C.WaitLeader(30 * time.Second)
}

// Failover waits until a request sent at or after t0 (the moment the leader
// was lost) is acknowledged, and records how long that took. With old set,
// only an acknowledgement by another node counts (an old leader cut from
// etcd may legitimately commit until its lease runs out). Writers must be
// running.
func (s *S) Failover(t0 time.Time, within time.Duration, old *Node) (time.Duration, bool) {
	notBy := ""
	if old != nil {
		notBy = old.Name
	}
	deadline := t0.Add(within)
	for time.Now().Before(deadline) {
		if at, ok := s.W.FirstAckAfter(t0, notBy); ok {
			d := at.Sub(t0)
			s.mu.Lock()
			s.res.Failovers = append(s.res.Failovers, d)
			s.mu.Unlock()
			s.Logf("failover: first acknowledgement %s after the leader was lost", d.Round(time.Millisecond))
			return d, true
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Expect(false, "no write acknowledged within %s of losing the leader", within)
	return 0, false
}

// Sleep waits d.
func (s *S) Sleep(d time.Duration) { time.Sleep(d) }

// WaitAcks waits until k more events were acknowledged after now, or
// records a failed expectation.
func (s *S) WaitAcks(k int, d time.Duration, what string) bool {
	t := time.Now()
	return s.Expect(s.W.WaitAcks(t, k, d), "%s: fewer than %d writes acknowledged within %s", what, k, d)
}

// runScenario runs one repetition: a fresh cluster, the scenario, healing,
// convergence and the history check.
func runScenario(t *testing.T, env Env, sc *Scenario, rep int) *Result {
	res := &Result{Scenario: sc.Name, Rep: rep}
	start := time.Now()
	name := fmt.Sprintf("%02d-%s-r%d", sc.Num, sc.Name, rep)
	s := &S{t: t, sc: sc, res: res}
	fail := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		s.Logf("FAIL: %s", msg)
		res.Errors = append(res.Errors, msg)
	}
	c, err := newCluster(env, name, s.Logf, sc.Opts)
	if err != nil {
		fail("harness: %v", err)
		res.Duration = time.Since(start)
		return res
	}
	s.C = c
	defer func() {
		res.Duration = time.Since(start)
		res.Passed = len(res.Errors) == 0
		if !res.Passed {
			printFailure(s, c, res)
		}
		if dir := c.Close(!res.Passed); dir != "" {
			res.Artifacts = dir
			s.Logf("node logs saved in %s", dir)
		}
	}()
	if err := c.StartAll(); err != nil {
		fail("harness: %v", err)
		return res
	}
	if _, _, err := c.WaitLeader(90 * time.Second); err != nil {
		fail("cluster never elected a leader: %v", err)
		return res
	}
	if err := c.WaitFormed(15 * time.Second); err != nil {
		fail("cluster formation: %v (FINDINGS F1)", err)
		// Restart the leader once: a new epoch re-reads the peer set, and
		// the scenario can still exercise its own fault.
		if l, _, lerr := c.WaitLeader(30 * time.Second); lerr == nil {
			l.Stop()
			l.Start()
		}
		if _, _, err := c.WaitLeader(60 * time.Second); err != nil {
			fail("no leader after restarting the leader: %v", err)
			return res
		}
		if err := c.WaitFormed(30 * time.Second); err != nil {
			fail("cluster formation, after restarting the leader: %v", err)
			return res
		}
	}
	res.Formed = len(res.Errors) == 0 // formed at the first try
	s.M = StartMonitor(c, 100*time.Millisecond)
	s.W = NewWorkload(c, fmt.Sprintf("s%02dr%d", sc.Num, rep))

	s.Logf("running: %s", sc.Desc)
	runErr := func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic: %v", p)
			}
		}()
		return sc.Run(s)
	}()
	s.W.Stop()
	if runErr != nil {
		fail("%v", runErr)
	}
	for _, err := range s.healAll() {
		fail("harness: %v", err)
	}
	// Every node must be up for the final check.
	for _, n := range c.Nodes {
		if st := n.State(); !st.Running {
			s.Logf("%s is not running (exit %d) after the scenario: starting it for the check", n.Name, st.ExitCode)
			if err := n.Start(); err != nil {
				fail("harness: %v", err)
			}
		}
	}
	conv, err := c.WaitConverged(45 * time.Second)
	s.M.Stop()
	for _, v := range s.M.Violations() {
		fail("monitor: %s", v)
	}
	s.mu.Lock()
	for _, e := range s.errs {
		fail("%s", e)
	}
	s.mu.Unlock()
	res.Acked, res.Failed, res.Unknown = s.W.Counts()
	if err != nil {
		fail("after healing: %v", err)
		// Check what there is anyway: lost and divergent frames are the
		// interesting part of a failure to converge.
	}
	logs := map[string][]wire.Frame{}
	for _, n := range c.Nodes {
		if st := n.State(); !st.Running {
			// It failed for good: read its committed frames from its disk.
			fs, ferr := committedFramesOnDisk(n)
			if ferr != nil {
				fail("reading the stopped %s's frames from its disk: %v", n.Name, ferr)
				continue
			}
			s.Logf("%s is down (exit %d): checking the %d committed frames on its disk", n.Name, st.ExitCode, len(fs))
			logs[n.Name] = fs
			continue
		}
		fs, _, ferr := n.Frames(context.Background())
		if ferr != nil {
			fail("reading %s's frames: %v", n.Name, ferr)
			continue
		}
		if err == nil {
			// Compare the nodes at the converged safe_seq, which each of them
			// reported: the cluster goes on committing while they are read one
			// after the other (a leader change writes an epoch-start frame), and
			// a frame committed after convergence need not be on every node yet.
			// Every frame up to it must be, identical. The writers stopped before
			// convergence, so every acknowledged event is at or below it.
			keep := fs[:0:0]
			for _, f := range fs {
				if f.Seq <= conv.SafeSeq {
					keep = append(keep, f)
				}
			}
			if len(keep) < len(fs) {
				s.Logf("%s: %d frames committed after convergence at safe_seq %d left out of the comparison", n.Name, len(fs)-len(keep), conv.SafeSeq)
			}
			fs = keep
		}
		logs[n.Name] = fs
	}
	ref := ""
	if conv.Leader != nil {
		ref = conv.Leader.Name
	} else if l, _, lerr := c.WaitLeader(5 * time.Second); lerr == nil {
		ref = l.Name
	}
	res.Check = checker.Check(logs, s.W.Events(), ref)
	for _, e := range res.Check.Errors {
		fail("checker: %s", e)
	}
	if refLog, ok := logs[ref]; ok {
		t0 := time.Now()
		lin, why := checker.CheckLinearizable(s.W.Events(), refLog, 2*time.Minute)
		s.Logf("porcupine: %s over %d events in %s", lin, len(s.W.Events()), time.Since(t0).Round(time.Millisecond))
		switch lin {
		case porcupine.Illegal:
			fail("linearizability (porcupine): the ingest history is not linearizable: %s", why)
		case porcupine.Unknown:
			s.NoteUnless(false, "linearizability (porcupine): no verdict within 2m")
		}
	}
	s.Logf("checked against %s's log: safe_seq=%d on all nodes, %d events acked, %d failed, %d unknown, %d safe_seq samples, %d leader epochs seen; lost=%d missing-on-a-node=%d duplicated=%d divergent=%d",
		ref, conv.SafeSeq, res.Acked, res.Failed, res.Unknown, s.M.Samples(), s.M.LeaderEpochs(), res.Check.Lost, res.Check.Missing, res.Check.Duplicated, res.Check.Divergent)
	return res
}

// selectScenarios applies AUTONOMY_SCENARIOS (names or numbers, comma
// separated) to the catalogue.
func selectScenarios(all []*Scenario) ([]*Scenario, error) {
	v := strings.TrimSpace(os.Getenv("AUTONOMY_SCENARIOS"))
	if v == "" || v == "all" {
		return all, nil
	}
	var out []*Scenario
	for _, want := range strings.Split(v, ",") {
		want = strings.TrimSpace(want)
		found := false
		for _, sc := range all {
			if sc.Name == want || strconv.Itoa(sc.Num) == want {
				out = append(out, sc)
				found = true
			}
		}
		if !found {
			var names []string
			for _, sc := range all {
				names = append(names, fmt.Sprintf("%d:%s", sc.Num, sc.Name))
			}
			return nil, fmt.Errorf("AUTONOMY_SCENARIOS: no scenario %q; known: %s", want, strings.Join(names, " "))
		}
	}
	return out, nil
}

func repeatCount() (int, error) {
	v := os.Getenv("AUTONOMY_SCENARIO_REPEAT")
	if v == "" {
		return 1, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("AUTONOMY_SCENARIO_REPEAT=%q must be a positive integer", v)
	}
	return n, nil
}

// summary is the suite's last line.
func summary(results []*Result) string {
	var passed, acked, lost, dup, div int
	var fos []time.Duration
	for _, r := range results {
		if r.Passed {
			passed++
		}
		acked += r.Check.Acked
		lost += r.Check.Lost
		dup += r.Check.Duplicated
		div += r.Check.Divergent
		fos = append(fos, r.Failovers...)
	}
	sort.Slice(fos, func(i, j int) bool { return fos[i] < fos[j] })
	var p50, mx int64
	if len(fos) > 0 {
		p50 = fos[(len(fos)-1)/2].Milliseconds()
		mx = fos[len(fos)-1].Milliseconds()
	}
	return fmt.Sprintf("partition suite: %d scenarios, %d passed, acked=%d lost=%d duplicated=%d divergent=%d failover_p50_ms=%d failover_max_ms=%d failover_by_fault=%s",
		len(results), passed, acked, lost, dup, div, p50, mx, failoverByFault(results))
}

// faultKinds sorts the scenarios by how the leader is lost, for failover
// times per kind of fault (issue 15): a process that dies (docker kill -s
// KILL of the container's PID 1, which is the orchestrator itself, so it is
// also "kill -9 inside the container": the container and its IP go at once
// and nothing answers with a reset), a network cut (no RST: only silence
// tells), a frozen process, and disk faults. "restart" is not a failover: no
// majority survived (all three killed, or two leaders killed within a
// second), so its figure is the time for killed nodes to start and elect
// (rule 13 makes a whole-cluster restart wait for every voter).
var faultKinds = map[string]string{
	"kill-leader": "kill", "kill-follower": "kill", "empty-follower": "kill", "crash-failpoints": "kill",
	"rolling-restart": "kill",
	"kill-all":        "restart", "double-leader-kill": "restart", "two-stopped": "restart",
	"leader-isolated": "cut", "follower-isolated": "cut", "acks-dropped": "cut", "leader-muted": "cut",
	"leader-etcd-cut": "cut", "bridge": "cut", "flapping": "cut", "netem": "cut",
	"leader-paused": "freeze", "follower-paused": "freeze",
	"disk-full-leader": "disk", "disk-full-follower": "disk", "slow-fsync": "disk", "bit-flip": "disk",
	"torn-tail": "disk", "stale-copy": "disk", "stale-copy-undetected": "disk",
}

// failoverByFault is {kind:p50/max/count,...} in milliseconds, over the
// kinds that had a failover.
func failoverByFault(results []*Result) string {
	by := map[string][]time.Duration{}
	for _, r := range results {
		k := faultKinds[r.Scenario]
		if k == "" {
			k = "other"
		}
		by[k] = append(by[k], r.Failovers...)
	}
	var parts []string
	for _, k := range []string{"kill", "cut", "freeze", "disk", "restart", "other"} {
		fos := by[k]
		if len(fos) == 0 {
			continue
		}
		slices.Sort(fos)
		parts = append(parts, fmt.Sprintf("%s:%d/%d/%d", k, fos[(len(fos)-1)/2].Milliseconds(), fos[len(fos)-1].Milliseconds(), len(fos)))
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// failureLogLines is how much of each node's log a failed run prints: CI
// keeps only stdout, so the evidence must be there, not only in artifacts.
const failureLogLines = 50

// printFailure prints what a failed run expected and the last lines of every
// node's log.
func printFailure(s *S, c *Cluster, res *Result) {
	for _, e := range res.Errors {
		s.Logf("FAILED EXPECTATION: %s", e)
	}
	for _, n := range c.Nodes {
		lines := strings.Split(strings.TrimRight(n.Logs(), "\n"), "\n")
		if len(lines) > failureLogLines {
			lines = lines[len(lines)-failureLogLines:]
		}
		s.Logf("last %d lines of %s's log:\n%s", len(lines), n.Name, strings.Join(lines, "\n"))
	}
}
