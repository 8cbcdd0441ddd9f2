//go:build integration

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMutantsApply checks, without Docker, that every planted bug still
// applies to the current code and that every scenario is named by one.
func TestMutantsApply(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	covered := map[int]bool{}
	names := map[string]bool{}
	for _, m := range Mutants() {
		if names[m.Name] {
			t.Errorf("two mutants are named %s", m.Name)
		}
		names[m.Name] = true
		if _, err := m.apply(root); err != nil {
			t.Error(err)
		}
		for _, n := range m.Scenarios {
			covered[n] = true
		}
	}
	for _, sc := range Scenarios() {
		if !covered[sc.Num] {
			t.Errorf("scenario %02d-%s is named by no planted bug", sc.Num, sc.Name)
		}
	}
}

// TestPlantedBugs builds an image per planted bug (AUTONOMY_MUTANTS: "all"
// or a comma list of names) and runs each of its scenarios (narrowed by
// AUTONOMY_SCENARIOS) against it, up to AUTONOMY_MUTANT_ATTEMPTS times (3)
// until the scenario fails. A scenario that passes every attempt missed the
// bug, and the test fails. `make test-mutants` runs it.
func TestPlantedBugs(t *testing.T) {
	sel := strings.TrimSpace(os.Getenv("AUTONOMY_MUTANTS"))
	if sel == "" {
		t.Skip("planted bugs run with `make test-mutants` (AUTONOMY_MUTANTS=all or a comma list of names)")
	}
	attempts := 3
	if v := os.Getenv("AUTONOMY_MUTANT_ATTEMPTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("AUTONOMY_MUTANT_ATTEMPTS=%q must be a positive integer", v)
		}
		attempts = n
	}
	var muts []*Mutant
	for _, m := range Mutants() {
		if sel == "all" || strings.Contains(","+sel+",", ","+m.Name+",") {
			muts = append(muts, m)
		}
	}
	if len(muts) == 0 {
		t.Fatalf("AUTONOMY_MUTANTS=%q names no planted bug", sel)
	}
	scs, err := selectScenarios(Scenarios())
	if err != nil {
		t.Fatal(err)
	}
	byNum := map[int]*Scenario{}
	for _, sc := range scs {
		byNum[sc.Num] = sc
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	setup(t)

	var report []string
	runs, caught := 0, 0
	for _, m := range muts {
		image := "autonomy-orchestrator:mutant-" + m.Name
		t0 := time.Now()
		if _, err := buildMutantImage(root, m, image); err != nil {
			t.Errorf("planted bug %s: %v", m.Name, err)
			continue
		}
		t.Logf("planted bug %s (%s): image %s built in %s", m.Name, m.Breaks, image, time.Since(t0).Round(time.Second))
		env := suiteEnv
		env.Image = image
		env.Artifacts = filepath.Join(suiteEnv.Artifacts, "mutant-"+m.Name)
		env.SaveLogs = true // a missed bug's logs show which defence stopped it
		for _, num := range m.Scenarios {
			sc := byNum[num]
			if sc == nil {
				continue
			}
			runs++
			line := fmt.Sprintf("MISSED planted bug %s in %02d-%s: passed %d attempts", m.Name, sc.Num, sc.Name, attempts)
			for a := 1; a <= attempts; a++ {
				r := runScenario(t, env, sc, a)
				if !r.Formed {
					// Failing before the fault proves nothing about the
					// scenario: the mutant must be subtler.
					line = fmt.Sprintf("BROKEN planted bug %s in %02d-%s: the cluster did not form, so the scenario never ran: %s",
						m.Name, sc.Num, sc.Name, strings.Join(r.Errors, " | "))
					break
				}
				if !r.Passed {
					caught++
					errs := r.Errors
					if len(errs) > 3 {
						errs = errs[:3]
					}
					line = fmt.Sprintf("CAUGHT planted bug %s in %02d-%s on attempt %d (lost=%d divergent=%d): %s",
						m.Name, sc.Num, sc.Name, a, r.Check.Lost, r.Check.Divergent, strings.Join(errs, " | "))
					break
				}
			}
			t.Log(line)
			report = append(report, line)
			if !strings.HasPrefix(line, "CAUGHT") {
				t.Error(line)
			}
		}
		docker("image", "rm", "-f", image)
	}
	t.Log("planted bugs:")
	for _, l := range report {
		t.Log("  " + l)
	}
	fmt.Printf("planted bugs: %d mutants, %d runs, %d caught, %d missed\n", len(muts), runs, caught, runs-caught)
}
