package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// The JSON the issue asks for (bench-results.json). The keys come
// first and keep its shape exactly; the targets' ratios are under "ratios"
// and how the run was done under "meta".
type results struct {
	RawFsync       rawFsync             `json:"raw_fsync"`
	Etcd           map[string]*latency  `json:"etcd"`
	IngestSingle   map[string]*latency  `json:"ingest_single"`
	IngestBatch100 map[string]*batchLat `json:"ingest_batch100"`
	IngestStream   streamResults        `json:"ingest_stream,omitempty"`
	JetStream      jetStreamRes         `json:"jetstream"`
	FailoverMs     []float64            `json:"failover_ms"`
	RSSMiB         map[string]float64   `json:"rss_mib"`
	startupResults                      // issue 15 §4: "startup", "catchup" (startup_report.go)
	Ratios         []ratio              `json:"ratios"`
	Meta           meta                 `json:"meta"`
}

type rawFsync struct {
	SingleRPS      float64 `json:"single_rps"`
	Group256RPS    float64 `json:"group256_rps"`
	FdatasyncP50Ms float64 `json:"fdatasync_p50_ms"`
}

// jetStreamRes is the JetStream anchor (issue 15): synchronous publishes
// per concurrency ("c1", "c16", "c64") and asynchronous publishes in windows
// of 100 ("c64"; events_per_s counts messages, the latencies are a window's).
type jetStreamRes struct {
	Sync     map[string]*latency  `json:"sync"`
	Async100 map[string]*batchLat `json:"async100"`
}

type latency struct {
	OpsPerS float64 `json:"ops_per_s"`
	P50Ms   float64 `json:"p50_ms"`
	P99Ms   float64 `json:"p99_ms"`
}

type batchLat struct {
	EventsPerS float64 `json:"events_per_s"`
	P50Ms      float64 `json:"p50_ms"`
	P99Ms      float64 `json:"p99_ms"`
}

// ratio is one target: value (a ratio, or ms / MiB for the absolute ones)
// against its bound.
type ratio struct {
	Key    string  `json:"key"`
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Op     string  `json:"op"` // ">=" or "<="
	Target float64 `json:"target"`
	Pass   bool    `json:"pass"`
	Note   string  `json:"note,omitempty"`
}

// meta records how the figures were obtained, per phase: request counts,
// errors, and the CPU each side used (2 shared cores: a side at ~100% of a
// core, or both adding up to ~200%, is the limit).
type meta struct {
	Started      string                `json:"started"`
	Host         hostMeta              `json:"host"`
	WarmupS      float64               `json:"warmup_s"`
	WindowS      float64               `json:"window_s"`
	Quick        bool                  `json:"quick"`
	Raw          *rawMeta              `json:"raw,omitempty"`
	JetStream    *jsMeta               `json:"jetstream,omitempty"`
	Phases       map[string]*phaseMeta `json:"phases"`
	Failovers    []failoverMeta        `json:"failovers,omitempty"`
	RSS          map[string]rssMeta    `json:"rss,omitempty"`
	WALBytes     map[string]int64      `json:"wal_bytes,omitempty"`
	RSSTrace     *rssTrace             `json:"rss_trace,omitempty"`
	Retention    int64                 `json:"wal_retention_bytes,omitempty"`
	LoadAvg      []string              `json:"loadavg,omitempty"` // /proc/loadavg at start and end: other work on the machine
	TotalSeconds float64               `json:"total_seconds"`
}

type hostMeta struct {
	CPUs    int    `json:"cpus"`
	Go      string `json:"go"`
	Dir     string `json:"dir"`
	FS      string `json:"fs"`
	Device  string `json:"device"`
	Binary  string `json:"binary,omitempty"`
	Version string `json:"binary_version,omitempty"` // its --version
	Git     string `json:"git,omitempty"`            // git describe --always --dirty of the checkout
	Payload int    `json:"payload_bytes"`
}

type rawMeta struct {
	FdatasyncP99Ms         float64 `json:"fdatasync_p99_ms"`
	Group256FdatasyncP50Ms float64 `json:"group256_fdatasync_p50_ms"`
	Seconds                float64 `json:"seconds_each"`
}

// jsMeta says what the JetStream anchor was.
type jsMeta struct {
	ServerVersion string `json:"server_version"`
	Stream        string `json:"stream"`
	Replicas      int    `json:"replicas"`
	Storage       string `json:"storage"`
	Sync          string `json:"sync_interval"`
	ClientsTo     string `json:"clients_to"`
}

type phaseMeta struct {
	Requests     int     `json:"requests"`
	Errors       int     `json:"errors"`
	FirstError   string  `json:"first_error,omitempty"`
	ClientCPUPct float64 `json:"client_cpu_pct"`
	ServerCPUPct float64 `json:"server_cpu_pct"` // the three server processes, % of one core
	BusiestPct   float64 `json:"busiest_server_cpu_pct"`
	MachineBusy  float64 `json:"machine_busy_pct"` // all CPUs, everyone's work, % of the whole machine
}

type failoverMeta struct {
	Killed    string  `json:"killed"`
	NewLeader string  `json:"new_leader"`
	Ms        float64 `json:"ms"`
	TimedOut  bool    `json:"timed_out,omitempty"`
}

type rssMeta struct {
	PeakMiB float64 `json:"peak_mib"` // max VmHWM over the node's processes (each restart starts a new one)
	EndMiB  float64 `json:"end_rss_mib"`
}

func newResults(o *options, ws *workspace) *results {
	return &results{
		Etcd:           map[string]*latency{},
		IngestSingle:   map[string]*latency{},
		IngestBatch100: map[string]*batchLat{},
		JetStream:      jetStreamRes{Sync: map[string]*latency{}, Async100: map[string]*batchLat{}},
		FailoverMs:     []float64{},
		RSSMiB:         map[string]float64{},
		Meta: meta{
			Started: time.Now().UTC().Format(time.RFC3339),
			Host: hostMeta{CPUs: runtime.NumCPU(), Go: runtime.Version(), Dir: ws.root, FS: ws.fsName, Device: ws.device,
				Payload: recordSize},
			WarmupS: o.warmup.Seconds(), WindowS: o.measure.Seconds(), Quick: o.quick,
			Phases: map[string]*phaseMeta{},
		},
	}
}

// record files a load phase under name ("etcd c1", "ingest_single c64", ...).
func (r *results) record(name string, lr *loadResult) {
	pm := &phaseMeta{Requests: lr.ops, Errors: lr.errs,
		ClientCPUPct: round(100*lr.clientCPU/lr.window.Seconds(), 0), ServerCPUPct: round(100*lr.serverCPU/lr.window.Seconds(), 0),
		BusiestPct: round(100*lr.busiest/lr.window.Seconds(), 0), MachineBusy: round(100*lr.machine, 0)}
	if lr.firstErr != nil {
		pm.FirstError = lr.firstErr.Error()
	}
	r.Meta.Phases[name] = pm
}

func latencyOf(lr *loadResult) *latency {
	return &latency{OpsPerS: round(lr.perSecond(1), 1), P50Ms: ms(percentile(lr.lat, 0.5)), P99Ms: ms(percentile(lr.lat, 0.99))}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// computeRatios evaluates the targets from figures of this run.
// A target whose inputs were not measured is left out.
func (r *results) computeRatios() {
	r.Ratios = nil
	add := func(key, name string, num, den float64, op string, target float64, note string) {
		if num == 0 || den == 0 {
			return
		}
		v := num / den
		pass := v >= target
		if op == "<=" {
			pass = v <= target
		}
		r.Ratios = append(r.Ratios, ratio{Key: key, Name: name, Value: round(v, 3), Op: op, Target: target, Pass: pass, Note: note})
	}
	// Each goal against etcd is followed by the same measure's goal against
	// JetStream (issue 15's table), so the two ratios print side by side.
	ec1, ec64 := r.Etcd["c1"], r.Etcd["c64"]
	ic1, ic64 := r.IngestSingle["c1"], r.IngestSingle["c64"]
	jc1, jc64 := r.JetStream.Sync["c1"], r.JetStream.Sync["c64"]
	if ic64 != nil && ec64 != nil {
		add("ingest_c64_vs_etcd_c64_ops", "ingest c64 ops/s ÷ etcd c64 ops/s", ic64.OpsPerS, ec64.OpsPerS, ">=", 5,
			fmt.Sprintf("%.0f ÷ %.0f", ic64.OpsPerS, ec64.OpsPerS))
	}
	if ic64 != nil && jc64 != nil {
		add("ingest_c64_vs_jetstream_c64_ops", "ingest c64 ops/s ÷ JetStream sync publish c64 msgs/s", ic64.OpsPerS, jc64.OpsPerS, ">=", 2,
			fmt.Sprintf("%.0f ÷ %.0f", ic64.OpsPerS, jc64.OpsPerS))
	}
	if ic1 != nil && ec1 != nil {
		add("ingest_c1_vs_etcd_c1_p50", "ingest c1 p50 ÷ etcd c1 p50", ic1.P50Ms, ec1.P50Ms, "<=", 0.5, fmt.Sprintf("%.2f ms ÷ %.2f ms", ic1.P50Ms, ec1.P50Ms))
	}
	if ic1 != nil && jc1 != nil {
		add("ingest_c1_vs_jetstream_c1_p50", "ingest c1 p50 ÷ JetStream sync publish c1 p50", ic1.P50Ms, jc1.P50Ms, "<=", 0.75,
			fmt.Sprintf("%.2f ms ÷ %.2f ms", ic1.P50Ms, jc1.P50Ms))
	}
	if ic1 != nil && ec1 != nil {
		add("ingest_c1_vs_etcd_c1_p99", "ingest c1 p99 ÷ etcd c1 p99", ic1.P99Ms, ec1.P99Ms, "<=", 0.5, fmt.Sprintf("%.2f ms ÷ %.2f ms", ic1.P99Ms, ec1.P99Ms))
	}
	if b := r.IngestBatch100["c64"]; b != nil {
		add("batch100_c64_vs_raw_group256", "batch100 c64 events/s ÷ raw group256 records/s", b.EventsPerS, r.RawFsync.Group256RPS, ">=", 0.25,
			fmt.Sprintf("%.0f ÷ %.0f", b.EventsPerS, r.RawFsync.Group256RPS))
		if a := r.JetStream.Async100["c64"]; a != nil {
			add("batch100_c64_vs_jetstream_async100_c64", "batch100 c64 events/s ÷ JetStream async windows of 100 c64 msgs/s", b.EventsPerS, a.EventsPerS, ">=", 2,
				fmt.Sprintf("%.0f ÷ %.0f", b.EventsPerS, a.EventsPerS))
		}
	}
	r.streamRatios(add)
	if len(r.FailoverMs) > 0 {
		add("failover_median_ms", "failover median (ms)", median(r.FailoverMs), 1, "<=", 1500, fmt.Sprint(len(r.FailoverMs), " kills"))
		add("failover_max_ms", "failover max (ms)", slices.Max(r.FailoverMs), 1, "<=", 2500, "")
	}
	if len(r.RSSMiB) > 0 {
		var worst float64
		var who string
		for n, v := range r.RSSMiB {
			if v > worst {
				worst, who = v, n
			}
		}
		add("rss_max_mib", "peak RSS, largest node (MiB)", worst, 1, "<=", 150, who)
	}
	r.startupRatios(add)
}

func (r *results) write(path string) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep ">=" readable
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// printTable prints the figures and the targets.
func printTable(w io.Writer, r *results) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "measurement\tthroughput\tp50 ms\tp99 ms\t")
	if r.RawFsync.SingleRPS > 0 {
		fmt.Fprintf(tw, "raw write+fdatasync, 1 record\t%.0f rec/s\t%.2f\t\t\n", r.RawFsync.SingleRPS, r.RawFsync.FdatasyncP50Ms)
		fmt.Fprintf(tw, "raw write+fdatasync, 256 records\t%.0f rec/s\t\t\t\n", r.RawFsync.Group256RPS)
	}
	for _, k := range []string{"c1", "c64"} {
		if l := r.Etcd[k]; l != nil {
			fmt.Fprintf(tw, "etcd put %s\t%.0f ops/s\t%.2f\t%.2f\t\n", k, l.OpsPerS, l.P50Ms, l.P99Ms)
		}
	}
	for _, k := range []string{"c1", "c16", "c64"} {
		if l := r.JetStream.Sync[k]; l != nil {
			fmt.Fprintf(tw, "JetStream sync publish %s\t%.0f msgs/s\t%.2f\t%.2f\t\n", k, l.OpsPerS, l.P50Ms, l.P99Ms)
		}
	}
	if a := r.JetStream.Async100["c64"]; a != nil {
		fmt.Fprintf(tw, "JetStream async publish, windows of 100, c64\t%.0f msgs/s\t%.2f\t%.2f\t(per window)\n", a.EventsPerS, a.P50Ms, a.P99Ms)
	}
	for _, k := range []string{"c1", "c16", "c64"} {
		if l := r.IngestSingle[k]; l != nil {
			fmt.Fprintf(tw, "ingest 1 event/request %s\t%.0f ops/s\t%.2f\t%.2f\t\n", k, l.OpsPerS, l.P50Ms, l.P99Ms)
		}
	}
	if b := r.IngestBatch100["c64"]; b != nil {
		fmt.Fprintf(tw, "ingest 100 events/request c64\t%.0f events/s\t%.2f\t%.2f\t\n", b.EventsPerS, b.P50Ms, b.P99Ms)
	}
	printStream(tw, r)
	if len(r.FailoverMs) > 0 {
		parts := make([]string, len(r.FailoverMs))
		for i, v := range r.FailoverMs {
			parts[i] = fmt.Sprintf("%.0f", v)
		}
		fmt.Fprintf(tw, "failover kill -9 → next commit\t%s ms\t\t\t\n", strings.Join(parts, ", "))
	}
	if len(r.RSSMiB) > 0 {
		var parts []string
		for _, n := range []string{"n1", "n2", "n3"} {
			parts = append(parts, fmt.Sprintf("%s %.0f", n, r.RSSMiB[n]))
		}
		fmt.Fprintf(tw, "peak RSS (VmHWM)\t%s MiB\t\t\t\n", strings.Join(parts, ", "))
	}
	printStartupRows(tw, r)
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tvalue\tbound\tresult\tfrom\t")
	for _, t := range r.Ratios {
		res := "MISS"
		if t.Pass {
			res = "PASS"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s %g\t%s\t%s\t\n", t.Name, fmtValue(t.Value), t.Op, t.Target, res, t.Note)
	}
	tw.Flush()
}

// fmtValue prints a ratio with three significant digits and ms or MiB as
// whole numbers.
func fmtValue(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.3g", v)
}

// The streaming ingest endpoint (issue 15): POST /v1/telemetry/stream with
// a window of lines in flight per stream, measured as JetStream's async
// publish in windows of 100 is. Keys: "c64" (one event a line) and
// "batch100_c64" (lines of 100 events); the latencies are a window's, from
// its first line sent to its last ack.
type streamResults map[string]*streamLat

type streamLat struct {
	EventsPerS    float64 `json:"events_per_s"`
	P50Ms         float64 `json:"p50_ms"`
	P99Ms         float64 `json:"p99_ms"`
	EventsPerLine int     `json:"events_per_line"`
	Window        int     `json:"window"`
}

// streamRatios adds the stream's target: one event a line at c64 ≥ 2×
// JetStream's async publish in windows of 100 at c64, the goal of batches of
// 100 against the same anchor.
func (r *results) streamRatios(add func(key, name string, num, den float64, op string, target float64, note string)) {
	s, a := r.IngestStream["c64"], r.JetStream.Async100["c64"]
	if s == nil || a == nil {
		return
	}
	add("stream_c64_vs_jetstream_async100_c64", "stream 1-event lines c64 events/s ÷ JetStream async windows of 100 c64 msgs/s",
		s.EventsPerS, a.EventsPerS, ">=", 2, fmt.Sprintf("%.0f ÷ %.0f", s.EventsPerS, a.EventsPerS))
}

// printStream prints the stream's rows of the table.
func printStream(tw io.Writer, r *results) {
	for _, k := range []string{"c64", "batch100_c64"} {
		if s := r.IngestStream[k]; s != nil {
			fmt.Fprintf(tw, "ingest stream, %d event(s)/line, windows of %d, c64\t%.0f events/s\t%.2f\t%.2f\t(per window)\n",
				s.EventsPerLine, s.Window, s.EventsPerS, s.P50Ms, s.P99Ms)
		}
	}
}
