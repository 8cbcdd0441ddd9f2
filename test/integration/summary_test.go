//go:build integration

package integration

import (
	"strings"
	"testing"
	"time"
)

// Every scenario has a fault kind, so a new one cannot silently fall out of
// the per-kind failover figures; the summary line carries them.
func TestSummary_failoverByFault(t *testing.T) {
	for _, sc := range Scenarios() {
		if faultKinds[sc.Name] == "" {
			t.Errorf("scenario %02d %s has no fault kind in faultKinds", sc.Num, sc.Name)
		}
	}
	ms := time.Millisecond
	line := summary([]*Result{
		{Scenario: "kill-leader", Failovers: []time.Duration{900 * ms, 2100 * ms}},
		{Scenario: "crash-failpoints", Failovers: []time.Duration{1500 * ms}},
		{Scenario: "leader-isolated", Failovers: []time.Duration{1700 * ms}},
		{Scenario: "follower-isolated"},
		{Scenario: "kill-all", Failovers: []time.Duration{7000 * ms}},
	})
	if !strings.HasSuffix(line, "failover_by_fault={kill:1500/2100/3,cut:1700/1700/1,restart:7000/7000/1}") {
		t.Fatalf("summary: %s", line)
	}
}
