package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
	for _, k := range []string{"c1", "c16", "c64"} {
		r.JetStream.Sync[k] = &latency{OpsPerS: 4000, P50Ms: 1.5, P99Ms: 6}
	}
	r.JetStream.Async100["c64"] = &batchLat{EventsPerS: 20000, P50Ms: 20, P99Ms: 80}
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
		"jetstream":       {"async100", "sync"},
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
	var js map[string]json.RawMessage
	json.Unmarshal(m["jetstream"], &js)
	if got := keys(js["sync"]); !slices.Equal(got, []string{"c1", "c16", "c64"}) {
		t.Errorf("jetstream.sync keys = %v", got)
	}
	if got := keys(js["async100"]); !slices.Equal(got, []string{"c64"}) {
		t.Errorf("jetstream.async100 keys = %v", got)
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

		"ingest_c64_vs_jetstream_c64_ops":        true,  // 10000/4000 = 2.5
		"ingest_c1_vs_jetstream_c1_p50":          true,  // 1/1.5
		"batch100_c64_vs_jetstream_async100_c64": false, // 30000/20000 = 1.5
	}
	for k, w := range wantPass {
		if got, ok := pass[k]; !ok || got != w {
			t.Errorf("ratio %s pass = %v (present %v), want %v", k, got, ok, w)
		}
	}
}

// Issue 15's goals against JetStream: this cluster ÷ JetStream, each printed
// right after the same measure's goal against etcd, and left out when
// either side was not measured.
func TestComputeRatios_jetStream(t *testing.T) {
	full := func() *results {
		r := newResults(&options{}, &workspace{})
		r.RawFsync.Group256RPS = 800000
		r.Etcd["c1"] = &latency{OpsPerS: 1100, P50Ms: 0.9, P99Ms: 3}
		r.Etcd["c64"] = &latency{OpsPerS: 6200, P50Ms: 10, P99Ms: 30}
		r.IngestSingle["c1"] = &latency{OpsPerS: 1300, P50Ms: 0.74, P99Ms: 2}
		r.IngestSingle["c64"] = &latency{OpsPerS: 9957, P50Ms: 6, P99Ms: 20}
		r.IngestBatch100["c64"] = &batchLat{EventsPerS: 54392}
		r.JetStream.Sync["c1"] = &latency{OpsPerS: 1190, P50Ms: 0.84, P99Ms: 2.5}
		r.JetStream.Sync["c64"] = &latency{OpsPerS: 14868, P50Ms: 4, P99Ms: 15}
		r.JetStream.Async100["c64"] = &batchLat{EventsPerS: 82333}
		return r
	}
	type want struct {
		key    string
		value  float64
		target float64
		pass   bool
	}
	r := full()
	r.computeRatios()
	// Issue 15's table, "ratio now": 0.67× JetStream at c64, 0.66× for batches.
	for _, w := range []want{
		{"ingest_c64_vs_jetstream_c64_ops", 0.67, 2, false},
		{"ingest_c1_vs_jetstream_c1_p50", 0.881, 0.75, false},
		{"batch100_c64_vs_jetstream_async100_c64", 0.661, 2, false},
	} {
		i := slices.IndexFunc(r.Ratios, func(x ratio) bool { return x.Key == w.key })
		if i < 0 {
			t.Errorf("%s missing", w.key)
			continue
		}
		got := r.Ratios[i]
		if got.Value != w.value || got.Target != w.target || got.Pass != w.pass {
			t.Errorf("%s = %g (target %g, pass %v), want %g (target %g, pass %v)", w.key, got.Value, got.Target, got.Pass, w.value, w.target, w.pass)
		}
	}
	var order []string
	for _, x := range r.Ratios {
		order = append(order, x.Key)
	}
	wantOrder := []string{
		"ingest_c64_vs_etcd_c64_ops", "ingest_c64_vs_jetstream_c64_ops",
		"ingest_c1_vs_etcd_c1_p50", "ingest_c1_vs_jetstream_c1_p50",
		"ingest_c1_vs_etcd_c1_p99",
		"batch100_c64_vs_raw_group256", "batch100_c64_vs_jetstream_async100_c64",
	}
	if !slices.Equal(order, wantOrder) {
		t.Errorf("ratio order = %v, want %v", order, wantOrder)
	}

	// A faster cluster passes: exactly at the bound counts.
	r = full()
	r.IngestSingle["c64"].OpsPerS = 2 * r.JetStream.Sync["c64"].OpsPerS
	r.IngestSingle["c1"].P50Ms = 0.75 * r.JetStream.Sync["c1"].P50Ms
	r.IngestBatch100["c64"].EventsPerS = 3 * r.JetStream.Async100["c64"].EventsPerS
	r.computeRatios()
	for _, x := range r.Ratios {
		if strings.Contains(x.Key, "jetstream") && !x.Pass {
			t.Errorf("%s = %g, want PASS against %s %g", x.Key, x.Value, x.Op, x.Target)
		}
	}

	// No JetStream phase (-only etcd,ingest): no JetStream ratio, the others stay.
	r = full()
	r.JetStream.Sync, r.JetStream.Async100 = map[string]*latency{}, map[string]*batchLat{}
	r.computeRatios()
	for _, x := range r.Ratios {
		if strings.Contains(x.Key, "jetstream") {
			t.Errorf("ratio %s present without a JetStream measurement", x.Key)
		}
	}
	if len(r.Ratios) != 4 {
		t.Errorf("%d ratios without JetStream, want the 4 against etcd and the disk", len(r.Ratios))
	}

	// JetStream measured but no batch phase: no batch ratio against it.
	r = full()
	delete(r.IngestBatch100, "c64")
	r.computeRatios()
	for _, x := range r.Ratios {
		if x.Key == "batch100_c64_vs_jetstream_async100_c64" {
			t.Errorf("batch ratio present without the batch phase")
		}
	}
}

func TestPrintTable_jetStream(t *testing.T) {
	r := newResults(&options{}, &workspace{})
	r.IngestSingle["c64"] = &latency{OpsPerS: 9957, P50Ms: 6, P99Ms: 20}
	r.JetStream.Sync["c1"] = &latency{OpsPerS: 1190, P50Ms: 0.84, P99Ms: 2.5}
	r.JetStream.Sync["c64"] = &latency{OpsPerS: 4000, P50Ms: 4, P99Ms: 15}
	r.JetStream.Async100["c64"] = &batchLat{EventsPerS: 82333, P50Ms: 70, P99Ms: 200}
	r.computeRatios()
	var buf bytes.Buffer
	printTable(&buf, r)
	out := buf.String()
	for _, want := range []string{
		"JetStream sync publish c1", "1190 msgs/s", "JetStream sync publish c64",
		"JetStream async publish, windows of 100, c64", "82333 msgs/s",
		"ingest c64 ops/s ÷ JetStream sync publish c64 msgs/s", "2.49", ">= 2", "PASS", "9957 ÷ 4000",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// The streaming endpoint's figures (issue 15): under "ingest_stream" in the
// JSON only when measured, printed per window, and one target against
// JetStream's async publish, right after the batch targets.
func TestStream_ratioJSONAndTable(t *testing.T) {
	full := func() *results {
		r := newResults(&options{}, &workspace{})
		r.RawFsync.Group256RPS = 800000
		r.IngestBatch100["c64"] = &batchLat{EventsPerS: 54392}
		r.JetStream.Async100["c64"] = &batchLat{EventsPerS: 40000, P50Ms: 150, P99Ms: 300}
		r.IngestStream = streamResults{
			"c64":          {EventsPerS: 90000, P50Ms: 60, P99Ms: 120, EventsPerLine: 1, Window: 100},
			"batch100_c64": {EventsPerS: 70000, P50Ms: 300, P99Ms: 500, EventsPerLine: 100, Window: 4},
		}
		return r
	}
	r := full()
	r.computeRatios()
	var order []string
	for _, x := range r.Ratios {
		order = append(order, x.Key)
	}
	if want := []string{"batch100_c64_vs_raw_group256", "batch100_c64_vs_jetstream_async100_c64", "stream_c64_vs_jetstream_async100_c64"}; !slices.Equal(order, want) {
		t.Fatalf("ratio order = %v, want %v", order, want)
	}
	if x := r.Ratios[2]; x.Value != 2.25 || x.Target != 2 || x.Op != ">=" || !x.Pass || x.Note != "90000 ÷ 40000" {
		t.Errorf("stream ratio = %+v, want 2.25 >= 2 PASS", x)
	}
	r.IngestStream["c64"].EventsPerS = 79999
	r.computeRatios()
	if x := r.Ratios[2]; x.Pass {
		t.Errorf("79999 ÷ 40000 passes: %+v", x)
	}

	var buf bytes.Buffer
	printTable(&buf, full())
	for _, want := range []string{
		"ingest stream, 1 event(s)/line, windows of 100, c64", "90000 events/s", "60.00", "120.00",
		"ingest stream, 100 event(s)/line, windows of 4, c64", "70000 events/s",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}

	path := filepath.Join(t.TempDir(), "out.json")
	if err := full().write(path); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	var m struct {
		Stream map[string]map[string]float64 `json:"ingest_stream"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if got := m.Stream["c64"]; got["events_per_s"] != 90000 || got["window"] != 100 || got["events_per_line"] != 1 || got["p50_ms"] != 60 {
		t.Errorf("ingest_stream.c64 = %v", got)
	}

	// Not measured (-only without stream), or no JetStream: no key, no ratio.
	r = newResults(&options{}, &workspace{})
	r.JetStream.Async100["c64"] = &batchLat{EventsPerS: 40000}
	r.computeRatios()
	if err := r.write(path); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	if bytes.Contains(b, []byte("ingest_stream")) || len(r.Ratios) != 0 {
		t.Errorf("without a stream phase: ratios %v, JSON has ingest_stream: %v", r.Ratios, bytes.Contains(b, []byte("ingest_stream")))
	}
	r = full()
	r.JetStream.Async100 = map[string]*batchLat{}
	r.computeRatios()
	for _, x := range r.Ratios {
		if x.Key == "stream_c64_vs_jetstream_async100_c64" {
			t.Errorf("stream ratio present without JetStream")
		}
	}
}
