package main

import (
	"fmt"
	"io"
)

// The results of issue 15 §4 (startup.go, catchup.go): their JSON, their
// rows in the table and their targets. results embeds startupResults, so
// "startup" and "catchup" are top-level keys of bench-results.json.

type startupResults struct {
	Startup *startupRes `json:"startup,omitempty"`
	CatchUp *catchUpRes `json:"catchup,omitempty"`
}

// startupRes is "open a 1 GiB WAL → healthy". Times are ms from the
// process start (the first of the three, started within a few ms).
type startupRes struct {
	WALBytes  int64  `json:"wal_bytes"`  // the largest node's WAL files at the stop
	ColdCache bool   `json:"cold_cache"` // the page cache was dropped before the start
	CacheNote string `json:"cache_note,omitempty"`
	// OpenMs is the slowest node's process start → WAL_RECOVERED, and
	// OpenMBps its WAL bytes ÷ that time.
	OpenMs   float64 `json:"open_ms"`
	OpenMBps float64 `json:"open_mb_s"`
	// LeaderHealthyMs: → the first /v1/health 200 (a leader that can commit).
	LeaderHealthyMs float64 `json:"leader_healthy_ms"`
	Leader          string  `json:"leader"`
	// AllHealthyMs: → all three alive, confirmed since their restart (rule
	// 13), caught up, heard by the leader.
	AllHealthyMs float64 `json:"all_healthy_ms"`
	// FirstAckMs: → the first write acknowledged (one event with an id,
	// sent from the moment the leader was healthy).
	FirstAckMs    float64                 `json:"first_ack_ms"`
	FirstAckError string                  `json:"first_ack_error,omitempty"` // none within startTimeout
	Nodes         map[string]*startupNode `json:"nodes"`
	// SingleNode is a follower restarted alone on a cold cache after the
	// cluster start: one appliance's own WAL, no competition for the disk
	// and CPUs from the other two opens.
	SingleNode *startupNode `json:"single_node_restart,omitempty"`
	// DiskReadMBps: the first 256 MiB of one node's WAL files read cold
	// with 4 MiB reads (like dd bs=4M); DiskRead3MBps: the three nodes' at
	// once, in all.
	DiskReadMBps  float64 `json:"disk_read_mb_s,omitempty"`
	DiskRead3MBps float64 `json:"disk_read3_mb_s,omitempty"`
	// The fill: from the WAL size before it, how long, and the rate.
	FillFromBytes  int64   `json:"fill_from_bytes"`
	FillSeconds    float64 `json:"fill_s"`
	FillEventsPerS float64 `json:"fill_events_per_s"`
	FillErrors     int     `json:"fill_errors,omitempty"`
}

type startupNode struct {
	Node     string  `json:"node,omitempty"`
	WALBytes int64   `json:"wal_bytes"`
	Segments int     `json:"segments"`
	OpenMs   float64 `json:"open_ms"` // process start → WAL_RECOVERED
	OpenMBps float64 `json:"open_mb_s"`
	// ConfirmedMs (single-node restart): → the cluster steady again with
	// this node confirmed.
	ConfirmedMs     float64            `json:"confirmed_ms,omitempty"`
	RSSAfterFillMiB float64            `json:"rss_after_fill_mib,omitempty"`
	Log             map[string]float64 `json:"log_ms"` // first line of each milestone, ms after the process start
}

// catchUpRes is the catch-up of an empty follower under a paced load.
type catchUpRes struct {
	Node   string `json:"node"`
	Leader string `json:"leader"`
	// The paced load: catchUpShare of MaxEventsPerS (measured by MaxFrom).
	MaxEventsPerS  float64 `json:"max_events_per_s"`
	MaxFrom        string  `json:"max_from"`
	LoadEventsPerS float64 `json:"load_events_per_s"`
	// Without catch-up: the leader's commit rate (events acknowledged per
	// second) and the requests' latency.
	BaseEventsPerS   float64 `json:"base_events_per_s"`
	BaseP50Ms        float64 `json:"base_p50_ms"`
	BaseP99Ms        float64 `json:"base_p99_ms"`
	BaseLeaderCPUPct float64 `json:"base_leader_cpu_pct"`
	// The new node: its start → its first frame, → its last Seq at the
	// leader's; bytes it copied, and MBps = CopiedBytes ÷ Seconds (first
	// frame → caught up).
	FirstFrameMs float64 `json:"first_frame_ms"`
	CaughtUpMs   float64 `json:"caught_up_ms"`
	CopiedBytes  int64   `json:"copied_bytes"`
	Seconds      float64 `json:"seconds"`
	MBps         float64 `json:"mb_s"`
	TimedOut     bool    `json:"timed_out,omitempty"`
	// During the catch-up (first frame → caught up): the leader's commit
	// rate and latency; ReplaceEventsPerS over the whole replacement (kill,
	// member remove and add, start, catch-up), elections included.
	DuringEventsPerS   float64 `json:"during_events_per_s"`
	DuringP50Ms        float64 `json:"during_p50_ms"`
	DuringP99Ms        float64 `json:"during_p99_ms"`
	DuringLeaderCPUPct float64 `json:"during_leader_cpu_pct"`
	ReplaceEventsPerS  float64 `json:"replace_events_per_s"`
	LeaderChanged      string  `json:"leader_changed,omitempty"`
	Errors             int     `json:"errors"`
	Missed             int     `json:"missed"` // batches not sent: every request slot was busy
	FirstError         string  `json:"first_error,omitempty"`
}

// startupRatios adds issue 15 §4's targets. The open target is only
// evaluated on a WAL of at least 1 GiB (-wal-gib 1, the default).
func (r *results) startupRatios(add func(key, name string, num, den float64, op string, target float64, note string)) {
	if s := r.Startup; s != nil && s.WALBytes >= 1<<30 {
		add("open_1gib_to_healthy_ms", "open a 1 GiB WAL → leader healthy (ms)", s.LeaderHealthyMs, 1, "<=", 2000,
			fmt.Sprintf("%.2f GiB on each node, %s cache; slowest open %.0f MB/s", float64(s.WALBytes)/(1<<30),
				pick(s.ColdCache, "cold", "warm"), s.OpenMBps))
	}
	if cu := r.CatchUp; cu != nil {
		note := fmt.Sprintf("%.0f MB in %.1f s", float64(cu.CopiedBytes)/1e6, cu.Seconds)
		if cu.TimedOut {
			note += ", not caught up (timed out)"
		}
		add("catchup_mb_s", "empty follower catch-up (MB/s)", cu.MBps, 1, ">=", 50, note)
		name, note := "leader commit rate during catch-up ÷ without", fmt.Sprintf("%.0f ÷ %.0f events/s", cu.DuringEventsPerS, cu.BaseEventsPerS)
		if cu.DuringEventsPerS == 0 && cu.BaseEventsPerS > 0 {
			// add leaves out a zero numerator as "not measured"; here it
			// is the worst result: nothing committed during the catch-up.
			r.Ratios = append(r.Ratios, ratio{Key: "catchup_leader_rate_ratio", Name: name, Op: ">=", Target: 0.8, Note: note})
		} else {
			add("catchup_leader_rate_ratio", name, cu.DuringEventsPerS, cu.BaseEventsPerS, ">=", 0.8, note)
		}
	}
}

// printStartupRows prints the rows of issue 15 §4 in the measurement table.
func printStartupRows(tw io.Writer, r *results) {
	if s := r.Startup; s != nil {
		fmt.Fprintf(tw, "open %.2f GiB WAL, 3 nodes at once, %s cache → WAL_RECOVERED (slowest)\t%.0f MB/s\t%.0f ms\t\t\n",
			float64(s.WALBytes)/(1<<30), pick(s.ColdCache, "cold", "warm"), s.OpenMBps, s.OpenMs)
		fmt.Fprintf(tw, "  → leader healthy, all three confirmed, first write acked\t%.0f, %.0f, %.0f ms\t\t\t\n",
			s.LeaderHealthyMs, s.AllHealthyMs, s.FirstAckMs)
		if n := s.SingleNode; n != nil {
			fmt.Fprintf(tw, "  one follower restarted alone → WAL_RECOVERED, confirmed\t%.0f MB/s\t%.0f, %.0f ms\t\t\n",
				n.OpenMBps, n.OpenMs, n.ConfirmedMs)
		}
		if s.DiskReadMBps > 0 {
			fmt.Fprintf(tw, "  disk: cold read of the WAL files, one node, three at once\t%.0f, %.0f MB/s\t\t\t\n",
				s.DiskReadMBps, s.DiskRead3MBps)
		}
	}
	if cu := r.CatchUp; cu != nil {
		fmt.Fprintf(tw, "empty follower catch-up under %.0f events/s\t%.1f MB/s\t%.0f MB in %.1f s\t\t\n",
			cu.LoadEventsPerS, cu.MBps, float64(cu.CopiedBytes)/1e6, cu.Seconds)
		fmt.Fprintf(tw, "  leader commit rate without, during catch-up\t%.0f, %.0f events/s\t%.1f, %.1f\t%.1f, %.1f\t\n",
			cu.BaseEventsPerS, cu.DuringEventsPerS, cu.BaseP50Ms, cu.DuringP50Ms, cu.BaseP99Ms, cu.DuringP99Ms)
	}
}
