package node_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/ctl"
	"github.com/autonomyops/orchestrator/node/proctest"
)

// scrape returns every sample of a node's /metrics, keyed by the series as
// written (name with its labels), and the raw text.
func scrape(n *proctest.Node) (map[string]float64, string, error) {
	resp, err := proctest.Client.Get(n.URL() + "/metrics")
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", err
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, string(b), nil
}

// metric returns one series' value, or -1 when the node does not answer or
// lacks the series.
func metric(n *proctest.Node, series string) float64 {
	m, _, err := scrape(n)
	if err != nil {
		return -1
	}
	v, ok := m[series]
	if !ok {
		return -1
	}
	return v
}

// runCTL runs autonomyctl in-process against endpoints and returns its exit
// status and stdout.
func runCTL(endpoints []string, args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	cli := &ctl.CLI{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code := cli.Run(ctx, append(append([]string{}, args...), "--endpoints", strings.Join(endpoints, ",")))
	return code, stdout.String(), stderr.String()
}

func urls(c *proctest.Cluster) []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.URL())
	}
	return out
}

// waitSteady waits until exactly one node answers /v1/health 200 and every
// other running node hears it (/v1/health/replica), re-reading the leader
// each time: an election right after start may move it. It returns the
// leader.
func waitSteady(t *testing.T, c *proctest.Cluster) *proctest.Node {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if ls := c.Leaders(); len(ls) == 1 {
			heard := true
			for _, n := range c.Nodes {
				if n == ls[0] || !n.Running() {
					continue
				}
				resp, err := proctest.Client.Get(n.URL() + "/v1/health/replica?max_lag=1000000")
				if err != nil {
					heard = false
					break
				}
				resp.Body.Close()
				heard = heard && resp.StatusCode == http.StatusOK
			}
			if heard {
				return ls[0]
			}
		}
		if time.Now().After(deadline) {
			var logs strings.Builder
			for _, n := range c.Nodes {
				fmt.Fprintf(&logs, "--- %s\n%s\n", n.Name, n.Logs())
			}
			t.Fatalf("no steady leader heard by every node within 60 s:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// memberStates parses the member table of `ha status`: name → STATE.
func memberStates(out string) map[string]string {
	states := map[string]string{}
	inTable := false
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && f[0] == "MEMBER" {
			inTable = true
			continue
		}
		if inTable && len(f) > 2 && !strings.HasPrefix(l, "WARNING") {
			states[f[0]] = f[1]
		}
	}
	return states
}

// TestCluster_QuorumLossTellsTheTruth is issue 13's "done when": two of three
// nodes stop (a follower by SIGTERM, then the leader by SIGKILL); within 5 s
// of the second the survivor's /v1/health gives reason no_quorum and
// names no leader, autonomy_cluster_has_leader is 0, `ha status` shows no
// leader and all three members (the survivor alive, the others unreachable),
// and `status` and `ha status` exit 7. When the two come back, both exit 0.
func TestCluster_QuorumLossTellsTheTruth(t *testing.T) {
	c := proctest.NewCluster(t, 3)
	c.Start()
	leader := waitSteady(t, c)
	var survivor, other *proctest.Node
	for _, n := range c.Nodes {
		switch {
		case n == leader:
		case survivor == nil:
			survivor = n
		default:
			other = n
		}
	}
	eps := urls(c)
	for _, n := range c.Nodes {
		deadline := time.Now().Add(10 * time.Second)
		for metric(n, "autonomy_cluster_has_leader") != 1 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: autonomy_cluster_has_leader is %v, not 1, before the stop (running %v):\n%s", n.Name,
					metric(n, "autonomy_cluster_has_leader"), n.Running(), n.Logs())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if code, out, errOut := runCTL(eps, "status"); code != ctl.ExitOK {
		t.Fatalf("status before the stop: exit %d\n%s%s", code, out, errOut)
	}

	// A follower stops cleanly: two of three still commit, and every surface
	// says so, with the stopped node unreachable.
	if code := other.Stop(); code != 0 {
		t.Fatalf("%s: SIGTERM exit %d", other.Name, code)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		sc, _, _ := runCTL(eps, "status")
		hc, out, _ := runCTL(eps, "ha", "status")
		if st := memberStates(out); sc == ctl.ExitOK && hc == ctl.ExitOK && st[other.Name] == "unreachable" && st[survivor.Name] == "alive" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with one node stopped: status %d, ha status %d:\n%s", sc, hc, out)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Then the leader crashes: the majority is gone from this instant.
	leader.Kill()

	var (
		lastWhy  string
		healthAt time.Duration
		metricAt time.Duration
		haAt     time.Duration
		statusAt time.Duration
	)
	t1 := time.Now()
	for time.Since(t1) < 5*time.Second && (healthAt == 0 || metricAt == 0 || haAt == 0 || statusAt == 0) {
		if healthAt == 0 {
			code, h := survivor.Health()
			if code == http.StatusServiceUnavailable && len(h.Reasons) > 0 && h.Reasons[0] == "no_quorum" && h.Leader == "" {
				healthAt = time.Since(t1)
			} else {
				lastWhy = fmt.Sprintf("health %d %+v", code, h)
			}
		}
		if metricAt == 0 && metric(survivor, "autonomy_cluster_has_leader") == 0 {
			metricAt = time.Since(t1)
		}
		if haAt == 0 {
			code, out, _ := runCTL(eps, "ha", "status")
			st := memberStates(out)
			if code == ctl.ExitNoLeader && strings.Contains(out, "none can commit") && len(st) == 3 &&
				st[survivor.Name] == "alive" && st[leader.Name] == "unreachable" && st[other.Name] == "unreachable" {
				haAt = time.Since(t1)
				t.Logf("ha status under quorum loss (exit %d):\n%s", code, out)
			} else {
				lastWhy = fmt.Sprintf("ha status exit %d:\n%s", code, out)
			}
		}
		if statusAt == 0 {
			if code, out, _ := runCTL(eps, "status"); code == ctl.ExitNoLeader {
				statusAt = time.Since(t1)
				t.Logf("status under quorum loss (exit %d):\n%s", code, out)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("after the kill of the leader: health no_quorum in %s, has_leader 0 in %s, ha status in %s, status exit 7 in %s",
		healthAt.Round(time.Millisecond), metricAt.Round(time.Millisecond),
		haAt.Round(time.Millisecond), statusAt.Round(time.Millisecond))
	if healthAt == 0 || metricAt == 0 || haAt == 0 || statusAt == 0 {
		t.Fatalf("not every surface told the truth within 5 s of the stop (zero = never); last: %s\nsurvivor log:\n%s", lastWhy, survivor.Logs())
	}
	if code, _, _ := runCTL(eps, "ha", "status", "-o", "json"); code != ctl.ExitNoLeader {
		t.Errorf("ha status -o json: exit %d, want %d", code, ctl.ExitNoLeader)
	}

	// Quorum returns.
	leader.Start()
	other.Start()
	deadline = time.Now().Add(60 * time.Second)
	for {
		sc, _, _ := runCTL(eps, "status")
		hc, out, _ := runCTL(eps, "ha", "status")
		if sc == ctl.ExitOK && hc == ctl.ExitOK {
			t.Logf("after recovery:\n%s", out)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %d, ha status %d 60 s after quorum returned:\n%s", sc, hc, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The survivor tells the truth too, within the same 5 s: it counts the
	// new leader once that leader's stream (or gossip) shows it serving.
	t2 := time.Now()
	for {
		v := metric(survivor, "autonomy_cluster_has_leader")
		_, h := survivor.Health()
		if v == 1 && h.Leader != "" && !slices.Contains(h.Reasons, "no_quorum") && !slices.Contains(h.Reasons, "leader_not_serving") {
			t.Logf("survivor: has_leader 1 and health naming %s %s after status exit 0", h.Leader, time.Since(t2).Round(time.Millisecond))
			break
		}
		if time.Since(t2) > 5*time.Second {
			t.Fatalf("survivor 5 s after recovery: autonomy_cluster_has_leader %v, health %+v", v, h)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCluster_LeaderChangesCountServedEpochs: every node's
// autonomy_cluster_leader_changes_total rises by exactly 1 for each planned
// failover (one new epoch that began serving), however many candidacies the
// handoff walked through. The live metrics also pass `promtool check
// metrics` and the API series count what was sent.
func TestCluster_LeaderChangesCountServedEpochs(t *testing.T) {
	c := proctest.NewCluster(t, 3)
	c.Start()
	leader := waitSteady(t, c)
	waitConverged(t, c, 30*time.Second)
	const series = "autonomy_cluster_leader_changes_total"
	counts := map[string]float64{}
	waitCounts := func(want func(name string) float64) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			ok := true
			for _, n := range c.Nodes {
				counts[n.Name] = metric(n, series)
				if counts[n.Name] != want(n.Name) {
					ok = false
				}
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v", series, counts)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// The epochs served since start (one, or more if the first election
	// moved): the same count on every node, at least 1.
	deadline := time.Now().Add(15 * time.Second)
	for {
		first := metric(c.Nodes[0], series)
		same := first >= 1
		for _, n := range c.Nodes {
			counts[n.Name] = metric(n, series)
			same = same && counts[n.Name] == first
		}
		if same {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s differs across nodes after start: %v", series, counts)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if l := waitSteady(t, c); l != leader {
		t.Fatalf("the leader moved from %s to %s while the counts settled", leader.Name, l.Name)
	}

	for round := 1; round <= 2; round++ {
		var target *proctest.Node
		for _, n := range c.Nodes {
			if n != leader {
				target = n
				break
			}
		}
		before := map[string]float64{}
		for k, v := range counts {
			before[k] = v
		}
		code, _, b := do(t, "POST", leader.URL()+"/v1/ha/failover", "", fmt.Sprintf(`{"to":%q}`, target.Name), nil)
		if code != http.StatusOK {
			t.Fatalf("round %d: failover to %s: %d %s", round, target.Name, code, b)
		}
		if got := c.WaitLeader(20 * time.Second); got != target {
			t.Fatalf("round %d: leader is %s, want %s", round, got.Name, target.Name)
		}
		leader = target
		if l := waitSteady(t, c); l != leader {
			t.Fatalf("round %d: the leader moved on to %s", round, l.Name)
		}
		waitConverged(t, c, 30*time.Second)
		waitCounts(func(name string) float64 { return before[name] + 1 })
		// Nothing more arrives late: the count stays at +1.
		time.Sleep(time.Second)
		waitCounts(func(name string) float64 { return before[name] + 1 })
		elected := 0
		for _, n := range c.Nodes {
			elected += strings.Count(n.Logs(), "ELECTED_LEADER")
		}
		t.Logf("round %d: leader %s; %s %v; ELECTED_LEADER lines so far across nodes: %d", round, leader.Name, series, counts, elected)
	}

	// The API series count what was sent.
	ingestN(t, leader.URL(), "m", 5)
	if code, _, b := do(t, "POST", leader.URL()+"/v1/telemetry/events", "", `{"kind": oops}`, nil); code != http.StatusBadRequest {
		t.Fatalf("bad JSON: %d %s", code, b)
	}
	m, text, err := scrape(leader)
	if err != nil {
		t.Fatal(err)
	}
	for s, want := range map[string]float64{
		`autonomy_ingest_requests_total{outcome="ok"}`:                                        5,
		`autonomy_ingest_events_total{outcome="ok"}`:                                          5,
		`autonomy_ingest_requests_total{outcome="bad_json"}`:                                  1,
		`autonomy_ingest_commit_latency_seconds_count`:                                        5,
		`autonomy_http_requests_total{code="200",method="POST",route="/v1/telemetry/events"}`: 5,
		`autonomy_http_requests_total{code="400",method="POST",route="/v1/telemetry/events"}`: 1,
		`autonomy_cluster_has_leader`:                                                         1,
		`autonomy_cluster_is_leader`:                                                          1,
		`autonomy_wal_failed`:                                                                 0,
		`autonomy_wal_learner`:                                                                0,
		`autonomy_cluster_peers{state="alive"}`:                                               2,
		`autonomy_cluster_peers{state="unreachable"}`:                                         0,
	} {
		if got, ok := m[s]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", s, got, ok, want)
		}
	}
	promtoolCheck(t, text)
}

// promtoolCheck runs `promtool check metrics` on the autonomy_* families of
// a scrape (etcd's and Go's own series are not ours to lint).
func promtoolCheck(t *testing.T, text string) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not installed (apt-get install prometheus): skipping the lint of the live metrics")
		return
	}
	var ours strings.Builder
	for _, l := range strings.Split(text, "\n") {
		name := l
		if strings.HasPrefix(l, "# HELP ") || strings.HasPrefix(l, "# TYPE ") {
			name = l[len("# HELP "):]
		}
		if strings.HasPrefix(name, "autonomy_") {
			ours.WriteString(l + "\n")
		}
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = strings.NewReader(ours.String())
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
		return
	}
	t.Logf("promtool check metrics: clean on %d autonomy_* lines", strings.Count(ours.String(), "\n"))
}

// TestCluster_HasLeaderOnlyWhileTheLeaderServes: etcd can have a quorum and
// a raft leader, and the leader key be held under a valid lease, while no
// leader can commit: after a restart of the whole cluster with one voter
// missing, a candidate holds the key but waits for that voter (DESIGN §6
// rule 13, LEADER_WAITING_FOR_CONFIRMED_VOTERS). Every surface must say that
// nothing commits: autonomy_cluster_has_leader 0 on both running nodes at
// every scrape, /v1/health naming no leader (leader_not_serving on the
// follower), `status` and `ha status` exit 7 with ha status naming the key
// holder. Once the third voter is back and the epoch starts, all return.
func TestCluster_HasLeaderOnlyWhileTheLeaderServes(t *testing.T) {
	c := proctest.NewCluster(t, 3)
	c.Start()
	leader := waitSteady(t, c)
	ingestN(t, leader.URL(), "before", 5)
	waitConverged(t, c, 30*time.Second)
	for _, n := range c.Nodes {
		n.Kill()
	}
	missing := c.Nodes[2]
	survivors := []*proctest.Node{c.Nodes[0], c.Nodes[1]}
	for _, n := range survivors {
		n.Start()
	}
	deadline := time.Now().Add(60 * time.Second)
	var candidate *proctest.Node
	for candidate == nil {
		for _, n := range survivors {
			if strings.Contains(n.Logs(), "LEADER_WAITING_FOR_CONFIRMED_VOTERS") {
				candidate = n
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no candidate waited for %s:\n%s\n%s", missing.Name, tailLines(survivors[0].Logs(), 30), tailLines(survivors[1].Logs(), 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
	eps := urls(c)
	// Gossip and the probes settle within a second or two; from then on the
	// truth holds at every look, for as long as the candidate waits.
	settle := time.Now().Add(10 * time.Second)
	for metric(survivors[0], "autonomy_cluster_has_leader") != 0 || metric(survivors[1], "autonomy_cluster_has_leader") != 0 {
		if time.Now().After(settle) {
			t.Fatalf("%s holds the leader key but cannot serve: autonomy_cluster_has_leader is %v on %s and %v on %s, want 0 on both", candidate.Name,
				metric(survivors[0], "autonomy_cluster_has_leader"), survivors[0].Name, metric(survivors[1], "autonomy_cluster_has_leader"), survivors[1].Name)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		for _, n := range survivors {
			if v := metric(n, "autonomy_cluster_has_leader"); v != 0 {
				t.Fatalf("%s: autonomy_cluster_has_leader %v while the candidate waits for %s", n.Name, v, missing.Name)
			}
			code, h := n.Health()
			if code != http.StatusServiceUnavailable || h.Leader != "" {
				t.Fatalf("%s: /v1/health %d naming leader %q while nothing can commit: %+v", n.Name, code, h.Leader, h)
			}
		}
		// The survivors may take turns as the candidate that waits: each says
		// why by its role.
		for _, n := range survivors {
			_, h := n.Health()
			switch {
			case slices.Contains(h.Reasons, "no_quorum"):
				t.Fatalf("%s: reasons %v: etcd has a quorum here", n.Name, h.Reasons)
			case h.Role == "follower" && !slices.Contains(h.Reasons, "leader_not_serving"):
				t.Fatalf("%s (follower): reasons %v, want leader_not_serving (the key holder does not serve)", n.Name, h.Reasons)
			case h.Role == "candidate" && !slices.Contains(h.Reasons, "epoch_not_started"):
				t.Fatalf("%s (candidate): reasons %v, want epoch_not_started", n.Name, h.Reasons)
			}
		}
	}
	if code, out, errOut := runCTL(eps, "status"); code != ctl.ExitNoLeader {
		t.Fatalf("status while the candidate waits: exit %d, want %d\n%s%s", code, ctl.ExitNoLeader, out, errOut)
	}
	code, out, errOut := runCTL(eps, "ha", "status")
	if code != ctl.ExitNoLeader || !strings.Contains(out, "holds the leader key") ||
		!strings.Contains(errOut, "LEADER_WAITING_FOR_CONFIRMED_VOTERS") {
		t.Fatalf("ha status while the candidate waits: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("ha status while a candidate waits for %s:\n%s%s", missing.Name, out, errOut)

	missing.Start()
	deadline = time.Now().Add(60 * time.Second)
	for {
		ok := true
		for _, n := range c.Nodes {
			ok = ok && metric(n, "autonomy_cluster_has_leader") == 1
		}
		if sc, _, _ := runCTL(eps, "status"); ok && sc == ctl.ExitOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("60 s after %s came back: has_leader %v %v %v", missing.Name, metric(c.Nodes[0], "autonomy_cluster_has_leader"),
				metric(c.Nodes[1], "autonomy_cluster_has_leader"), metric(c.Nodes[2], "autonomy_cluster_has_leader"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
