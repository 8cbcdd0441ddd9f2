//go:build integration

package integration

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	suiteEnv     Env
	resultsMu    sync.Mutex
	suiteResults []*Result
	cleanupOnce  sync.Once
)

var (
	setupOnce sync.Once
	setupErr  error
	setupDone bool
)

// setup removes stale leftovers and creates the network, once, for the
// tests that need Docker.
func setup(t *testing.T) {
	setupOnce.Do(func() {
		setupErr = setupSuite(suiteEnv)
		resultsMu.Lock()
		setupDone = true
		resultsMu.Unlock()
	})
	if setupErr != nil {
		t.Fatal(setupErr)
	}
}

func cleanup() {
	cleanupOnce.Do(func() {
		resultsMu.Lock()
		done := setupDone
		resultsMu.Unlock()
		if done {
			teardownSuite(suiteEnv)
		}
	})
}

// TestMain removes everything the suite created (setup creates the network
// after removing stale leftovers) on every way out: normal end, failure,
// SIGINT/SIGTERM, and shortly before go test's -timeout would kill the
// binary without running deferred code.
func TestMain(m *testing.M) {
	flag.Parse()
	suiteEnv = loadEnv()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		sig := <-sigs
		fmt.Fprintf(os.Stderr, "integration: %v: removing the containers and network\n", sig)
		cleanup()
		os.Exit(1)
	}()
	if f := flag.Lookup("test.timeout"); f != nil {
		if d, err := time.ParseDuration(f.Value.String()); err == nil && d > time.Minute {
			time.AfterFunc(d-20*time.Second, func() {
				fmt.Fprintln(os.Stderr, "integration: -timeout is near: removing the containers and network")
				cleanup()
			})
		}
	}
	code := m.Run()
	cleanup()
	resultsMu.Lock()
	if len(suiteResults) > 0 {
		fmt.Println(summary(suiteResults))
	}
	resultsMu.Unlock()
	os.Exit(code)
}

// TestPartitionSuite runs the scenarios (AUTONOMY_SCENARIOS) each
// AUTONOMY_SCENARIO_REPEAT times, prints a line per run and the summary.
func TestPartitionSuite(t *testing.T) {
	setup(t)
	scs, err := selectScenarios(Scenarios())
	if err != nil {
		t.Fatal(err)
	}
	reps, err := repeatCount()
	if err != nil {
		t.Fatal(err)
	}
	deadline, hasDeadline := t.Deadline()
	var results []*Result
	for rep := 1; rep <= reps; rep++ {
		for _, sc := range scs {
			if hasDeadline && time.Until(deadline) < 3*time.Minute {
				r := &Result{Scenario: sc.Name, Rep: rep, Skipped: "not run: the -timeout is less than 3 minutes away"}
				r.Errors = append(r.Errors, r.Skipped)
				results = append(results, r)
				continue
			}
			r := runScenario(t, suiteEnv, sc, rep)
			results = append(results, r)
			t.Log(resultLine(sc, r))
			if !r.Passed {
				for _, e := range r.Errors {
					t.Errorf("%02d %s (rep %d): %s", sc.Num, sc.Name, rep, e)
				}
			}
			resultsMu.Lock()
			suiteResults = append(suiteResults, r)
			resultsMu.Unlock()
		}
	}
	t.Log("per scenario:")
	for _, r := range results {
		t.Log("  " + resultLine(nil, r))
		for _, n := range r.Notes {
			t.Log("      note: " + n)
		}
	}
	resultsMu.Lock()
	suiteResults = results
	resultsMu.Unlock()
}

func resultLine(sc *Scenario, r *Result) string {
	status := "PASS"
	if !r.Passed {
		status = "FAIL"
	}
	if r.Skipped != "" {
		status = "SKIP"
	}
	var fo []string
	for _, d := range r.Failovers {
		fo = append(fo, fmt.Sprint(d.Milliseconds()))
	}
	name := r.Scenario
	if sc != nil {
		name = fmt.Sprintf("%02d-%s", sc.Num, sc.Name)
	}
	return fmt.Sprintf("%s %s rep=%d time=%s acked=%d failed=%d unknown=%d lost=%d missing=%d duplicated=%d divergent=%d phantom=%d failover_ms=[%s] errors=%d",
		status, name, r.Rep, r.Duration.Round(100*time.Millisecond), r.Acked, r.Failed, r.Unknown, r.Check.Lost, r.Check.Missing, r.Check.Duplicated,
		r.Check.Divergent, r.Check.Phantom, strings.Join(fo, ","), len(r.Errors))
}
