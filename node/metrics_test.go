package node

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/settings"
	"github.com/autonomyops/orchestrator/walrepl"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
)

// TestMetrics_retentionLimitsFollowTheSettings: the retention bounds a node
// applies are exported, and move when the settings move (Live.Load is what
// the etcd watch calls), with no restart: the flag's value, the stored
// setting's, the flag's again once the setting is deleted. 0 means no
// bound. The families pass promlint (promtool check metrics' rules).
func TestMetrics_retentionLimitsFollowTheSettings(t *testing.T) {
	cfg := DefaultConfig()
	cfg.WALRetentionBytes, cfg.WALRetentionAge = 4<<30, 0
	n := &Node{cfg: cfg, live: settings.NewLive(settingsDefaults(cfg))}
	m := newMetrics()
	m.n = n
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(m); err != nil {
		t.Fatal(err)
	}
	want := func(bytes, ageSeconds float64) {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			if mf.GetType() == dto.MetricType_GAUGE && len(mf.GetMetric()) == 1 {
				got[mf.GetName()] = mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		for name, v := range map[string]float64{"autonomy_wal_retention_limit_bytes": bytes, "autonomy_wal_retention_age_limit_seconds": ageSeconds} {
			if g, ok := got[name]; !ok || g != v {
				t.Errorf("%s = %v (present %v), want %v", name, g, ok, v)
			}
		}
	}
	want(4<<30, 0) // the flags: 4 GiB, no age bound

	raw := func(v any) json.RawMessage { b, _ := json.Marshal(v); return b }
	n.live.Load(map[string]settings.Stored{
		"retention/max_bytes": {Value: raw(1 << 20), Revision: 7},
		"retention/max_age":   {Value: raw("720h"), Revision: 8},
	}, 8)
	want(1<<20, (720 * time.Hour).Seconds())

	n.live.Load(map[string]settings.Stored{"retention/max_bytes": {Value: raw(0), Revision: 9}}, 9)
	want(0, 0) // size bound off by the setting; age back to the flag's (none)

	n.live.Load(nil, 10)
	want(4<<30, 0)

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var ours []*dto.MetricFamily
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "autonomy_wal_retention") {
			ours = append(ours, mf)
		}
	}
	if len(ours) != 2 {
		t.Fatalf("gathered %d autonomy_wal_retention* families, want 2", len(ours))
	}
	problems, err := promlint.NewWithMetricFamilies(ours).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not installed (apt-get install prometheus): skipping promtool check metrics; promlint passed")
		return
	}
	var text strings.Builder // the text exposition format of the two gauges
	for _, mf := range ours {
		fmt.Fprintf(&text, "# HELP %s %s\n# TYPE %s gauge\n%s %g\n", mf.GetName(), mf.GetHelp(), mf.GetName(),
			mf.GetName(), mf.GetMetric()[0].GetGauge().GetValue())
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text.String())
	if out, err := cmd.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("promtool check metrics: %v\n%s\non:\n%s", err, out, text.String())
	}
}

// TestPeerUnderReplicated: a voter that answers and holds safe_seq is fully
// replicated, idle or not; lacking a committed frame, being a learner, never
// answering in this epoch, or silence for a second is not.
func TestPeerUnderReplicated(t *testing.T) {
	const safe = 42
	for _, tc := range []struct {
		name string
		p    walrepl.PeerStatus
		want bool
	}{
		{"idle and caught up, heard 30ms ago", walrepl.PeerStatus{DurableSeq: safe, Heard: true, SinceHeard: 30 * time.Millisecond}, false},
		{"heard within the current tick", walrepl.PeerStatus{DurableSeq: safe, Heard: true}, false},
		{"holds more than committed", walrepl.PeerStatus{DurableSeq: safe + 5, Heard: true, SinceHeard: time.Millisecond}, false},
		{"lacks a committed frame", walrepl.PeerStatus{DurableSeq: safe - 1, Heard: true, SinceHeard: time.Millisecond}, true},
		{"learner", walrepl.PeerStatus{DurableSeq: safe, Heard: true, Learner: true}, true},
		{"never answered this epoch", walrepl.PeerStatus{DurableSeq: safe}, true},
		{"silent for a second (dead, idle cluster)", walrepl.PeerStatus{DurableSeq: safe, Heard: true, SinceHeard: peerAliveWindow}, true},
	} {
		if got := peerUnderReplicated(tc.p, safe); got != tc.want {
			t.Errorf("%s: under-replicated %v, want %v", tc.name, got, tc.want)
		}
	}
}
