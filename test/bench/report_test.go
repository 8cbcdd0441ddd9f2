package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestPercentile_nearestRank(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}, {0.001, time.Millisecond}} {
		if got := percentile(d, c.p); got != c.want {
			t.Errorf("percentile(1..100 ms, %g) = %s, want %s", c.p, got, c.want)
		}
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile(nil) = %s, want 0", got)
	}
}

func TestMedian(t *testing.T) {
	if got := median([]float64{5, 1, 3}); got != 3 {
		t.Errorf("median odd = %g", got)
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("median even = %g", got)
	}
}

// The issue fixes the JSON's shape: these keys, nothing renamed.
func TestResults_issueShape(t *testing.T) {
	r := newResults(&options{}, &workspace{})
	r.RawFsync = rawFsync{SingleRPS: 1000, Group256RPS: 100000, FdatasyncP50Ms: 0.5}
	r.Etcd["c1"] = &latency{OpsPerS: 200, P50Ms: 4, P99Ms: 20}
	r.Etcd["c64"] = &latency{OpsPerS: 2000, P50Ms: 30, P99Ms: 100}
	for _, k := range []string{"c1", "c16", "c64"} {
		r.IngestSingle[k] = &latency{OpsPerS: 10000, P50Ms: 1, P99Ms: 5}
	}
	r.IngestBatch100["c64"] = &batchLat{EventsPerS: 30000, P50Ms: 10, P99Ms: 50}
	r.FailoverMs = []float64{1000, 1200, 900, 3000, 1100}
	r.RSSMiB = map[string]float64{"n1": 90, "n2": 95, "n3": 160}
	r.computeRatios()

	path := filepath.Join(t.TempDir(), "out.json")
	if err := r.write(path); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	keys := func(raw json.RawMessage) []string {
		var mm map[string]json.RawMessage
		if err := json.Unmarshal(raw, &mm); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		var out []string
		for k := range mm {
			out = append(out, k)
		}
		slices.Sort(out)
		return out
	}
	want := map[string][]string{
		"raw_fsync":       {"fdatasync_p50_ms", "group256_rps", "single_rps"},
		"etcd":            {"c1", "c64"},
		"ingest_single":   {"c1", "c16", "c64"},
		"ingest_batch100": {"c64"},
		"rss_mib":         {"n1", "n2", "n3"},
	}
	for k, w := range want {
		if got := keys(m[k]); !slices.Equal(got, w) {
			t.Errorf("%s keys = %v, want %v", k, got, w)
		}
	}
	var etcd map[string]json.RawMessage
	json.Unmarshal(m["etcd"], &etcd)
	if got := keys(etcd["c1"]); !slices.Equal(got, []string{"ops_per_s", "p50_ms", "p99_ms"}) {
		t.Errorf("etcd.c1 keys = %v", got)
	}
	var batch map[string]json.RawMessage
	json.Unmarshal(m["ingest_batch100"], &batch)
	if got := keys(batch["c64"]); !slices.Equal(got, []string{"events_per_s", "p50_ms", "p99_ms"}) {
		t.Errorf("ingest_batch100.c64 keys = %v", got)
	}
	var fo []float64
	if err := json.Unmarshal(m["failover_ms"], &fo); err != nil || len(fo) != 5 {
		t.Errorf("failover_ms = %s", m["failover_ms"])
	}

	pass := map[string]bool{}
	for _, x := range r.Ratios {
		pass[x.Key] = x.Pass
	}
	wantPass := map[string]bool{
		"ingest_c64_vs_etcd_c64_ops":   true,  // 10000/2000 = 5
		"ingest_c1_vs_etcd_c1_p50":     true,  // 1/4
		"ingest_c1_vs_etcd_c1_p99":     true,  // 5/20
		"batch100_c64_vs_raw_group256": true,  // 0.3
		"failover_median_ms":           true,  // 1100
		"failover_max_ms":              false, // 3000
		"rss_max_mib":                  false, // 160
	}
	for k, w := range wantPass {
		if got, ok := pass[k]; !ok || got != w {
			t.Errorf("ratio %s pass = %v (present %v), want %v", k, got, ok, w)
		}
	}
}
