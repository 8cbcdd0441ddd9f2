package node

import (
	"context"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/autonomyops/orchestrator/walrepl"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are this node's Prometheus series. They share the default
// registry with etcd's own metrics and the Go runtime's, so one scrape of
// /metrics shows all three.
type metrics struct {
	fsync         prometheus.Histogram
	leaderChanges atomic.Uint64
	n             *Node
}

var (
	descHasLeader     = prometheus.NewDesc("autonomy_cluster_has_leader", "1 while some leader can commit as this node can tell: etcd has a raft leader, the leader key is held under a valid lease, and its holder serves (its epoch started; it says so in gossip, or its replication stream shows it).", nil, nil)
	descIsLeader      = prometheus.NewDesc("autonomy_cluster_is_leader", "1 on the leader whose epoch has started.", nil, nil)
	descLeaderChanges = prometheus.NewDesc("autonomy_cluster_leader_changes_total", "Epochs that began serving (their epoch-start frame committed) since this process started, as seen in this node's log.", nil, nil)
	descMembers       = prometheus.NewDesc("autonomy_cluster_members", "Cluster members by gossip state.", []string{"state"}, nil)
	descLastSeq       = prometheus.NewDesc("autonomy_wal_last_seq", "Seq of the last frame in this node's WAL.", nil, nil)
	descSafeSeq       = prometheus.NewDesc("autonomy_wal_safe_seq", "The quorum-committed watermark as this node knows it.", nil, nil)
	descLag           = prometheus.NewDesc("autonomy_replication_lag_entries", "Frames a follower lacks, measured on the leader.", []string{"peer"}, nil)
	descUnder         = prometheus.NewDesc("autonomy_under_replicated", "1 on the leader while some voter lacks committed frames, is a learner, or has not answered replication within the last second.", nil, nil)
	descBuild         = prometheus.NewDesc("autonomy_build_info", "Build information.", []string{"version", "goversion"}, nil)
	descBytesOnDisk   = prometheus.NewDesc("autonomy_wal_bytes_on_disk", "Bytes the WAL's segment files (telemetry.wal and the sealed telemetry-<Seq>.seg) occupy: the sum of their sizes.", nil, nil)
	descFirstSeq      = prometheus.NewDesc("autonomy_wal_first_seq", "Seq of the first retained frame.", nil, nil)
	descTrimmed       = prometheus.NewDesc("autonomy_wal_trimmed_frames_total", "Frames retention trimmed since start.", nil, nil)
	descWALFailed     = prometheus.NewDesc("autonomy_wal_failed", "1 when this node's WAL has failed (fail-hard): it takes no writes and the node exits.", nil, nil)
	descLearner       = prometheus.NewDesc("autonomy_wal_learner", "1 while this node's WAL is a learner: catching up, counted in no majority.", nil, nil)
	descPeers         = prometheus.NewDesc("autonomy_cluster_peers", "Other voters by reachability as this node can tell (gossip alive or heard on replication within 1s).", []string{"state"}, nil)
	// The retention bounds this node applies now: the settings
	// retention/max_bytes and retention/max_age when stored, else its
	// --wal-retention-bytes and --wal-retention-age. They change when the
	// settings do, with no restart.
	descRetentionBytes = prometheus.NewDesc("autonomy_wal_retention_limit_bytes", "The WAL size bound retention applies on this node now (retention/max_bytes, else --wal-retention-bytes); 0: no size bound.", nil, nil)
	descRetentionAge   = prometheus.NewDesc("autonomy_wal_retention_age_limit_seconds", "The WAL age bound retention applies on this node now (retention/max_age, else --wal-retention-age); 0: no age bound.", nil, nil)
	// The idempotency index against its bounds (ingest/idempotency_window
	// and ingest/idempotency_window_bytes).
	descIdemIDs   = prometheus.NewDesc("autonomy_idempotency_ids", "Client event ids the idempotency index holds (at most ingest/idempotency_window).", nil, nil)
	descIdemBytes = prometheus.NewDesc("autonomy_idempotency_index_bytes", "Memory the idempotency index's arrays occupy (at most ingest/idempotency_window_bytes).", nil, nil)
)

func newMetrics() *metrics {
	return &metrics{fsync: prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "autonomy_wal_fsync_duration_seconds",
		Help:    "Duration of the WAL's fdatasync calls.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16), // 100µs .. ~3.3s
	})}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHasLeader, descIsLeader, descLeaderChanges, descMembers, descLastSeq, descSafeSeq, descLag, descUnder, descBuild, descBytesOnDisk, descFirstSeq, descTrimmed, descWALFailed, descLearner, descPeers, descRetentionBytes, descRetentionAge, descIdemIDs, descIdemBytes} {
		ch <- d
	}
	m.fsync.Describe(ch)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.fsync.Collect(ch)
	ch <- prometheus.MustNewConstMetric(descBuild, prometheus.GaugeValue, 1, Version, runtime.Version())
	ch <- prometheus.MustNewConstMetric(descLeaderChanges, prometheus.CounterValue, float64(m.leaderChanges.Load()))
	n := m.n
	if n == nil {
		return
	}
	if n.live != nil {
		v := n.live.Values()
		ch <- prometheus.MustNewConstMetric(descRetentionBytes, prometheus.GaugeValue, float64(v.RetentionBytes))
		ch <- prometheus.MustNewConstMetric(descRetentionAge, prometheus.GaugeValue, v.RetentionAge.Seconds())
	}
	if n.ids != nil {
		ids, bytes := n.ids.usage()
		ch <- prometheus.MustNewConstMetric(descIdemIDs, prometheus.GaugeValue, float64(ids))
		ch <- prometheus.MustNewConstMetric(descIdemBytes, prometheus.GaugeValue, float64(bytes))
	}
	if n.replica == nil {
		return
	}
	_, hasLeader := n.committingLeader()
	// Positions before Status: a commit in between only raises what the
	// peers are seen to hold, so a busy cluster does not read as
	// under-replicated for a frame committed after safe was read.
	last, _, _, safe := n.wal.Positions()
	rs := n.replica.Status()
	ch <- prometheus.MustNewConstMetric(descHasLeader, prometheus.GaugeValue, b2f(hasLeader))
	ch <- prometheus.MustNewConstMetric(descIsLeader, prometheus.GaugeValue, b2f(rs.Role == walrepl.RoleLeader && rs.EpochStarted))
	ch <- prometheus.MustNewConstMetric(descLastSeq, prometheus.GaugeValue, float64(last))
	ch <- prometheus.MustNewConstMetric(descSafeSeq, prometheus.GaugeValue, float64(safe))
	base, _ := n.wal.Base()
	ch <- prometheus.MustNewConstMetric(descFirstSeq, prometheus.GaugeValue, float64(base))
	ch <- prometheus.MustNewConstMetric(descBytesOnDisk, prometheus.GaugeValue, float64(n.wal.BytesOnDisk()))
	ch <- prometheus.MustNewConstMetric(descTrimmed, prometheus.CounterValue, float64(n.wal.Trimmed()))
	ch <- prometheus.MustNewConstMetric(descWALFailed, prometheus.GaugeValue, b2f(n.wal.Err() != nil))
	ch <- prometheus.MustNewConstMetric(descLearner, prometheus.GaugeValue, b2f(rs.Role == walrepl.RoleLearner))
	var etcdMembers map[string]bool // nil: unknown
	if n.member != nil {
		peers := map[string]int{"alive": 0, "unreachable": 0}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		ms, err := n.member.LocalMembers(ctx)
		cancel()
		if err == nil {
			var names []string
			etcdMembers = map[string]bool{}
			for _, m := range ms {
				etcdMembers[m.Name] = true
				if !m.IsLearner && m.Name != "" && m.Name != n.cfg.Name {
					names = append(names, m.Name)
				}
			}
			for _, st := range n.reachability(names) {
				peers[st]++
			}
			for st, c := range peers {
				ch <- prometheus.MustNewConstMetric(descPeers, prometheus.GaugeValue, float64(c), st)
			}
		}
	}
	if n.gossip != nil {
		states := map[string]int{"alive": 0, "suspect": 0, "dead": 0, "left": 0}
		for name, p := range n.gossip.Peers() {
			if p.State == "dead" && etcdMembers != nil && !etcdMembers[name] {
				continue // removed from the cluster (member remove): not a member that died
			}
			states[p.State]++
		}
		for st, c := range states {
			ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(c), st)
		}
	}
	if rs.Role == walrepl.RoleLeader {
		under := false
		for _, p := range rs.Peers {
			lag := uint64(0)
			if last > p.DurableSeq {
				lag = last - p.DurableSeq
			}
			if peerUnderReplicated(p, safe) {
				under = true
			}
			ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(lag), p.Name)
		}
		ch <- prometheus.MustNewConstMetric(descUnder, prometheus.GaugeValue, b2f(under))
	}
}

// peerUnderReplicated judges one voter on the leader: it lacks committed
// frames, is a learner, has not answered in this epoch, or has not answered
// within peerAliveWindow. The last matters on an idle cluster, where a voter
// that died still "holds" everything committed: the cluster then keeps one
// copy fewer than it should and survives one failure fewer. A voter that
// answers heartbeats (every 50 ms) and holds safe_seq is fully replicated,
// however long nothing is written.
func peerUnderReplicated(p walrepl.PeerStatus, safe uint64) bool {
	return p.DurableSeq < safe || p.Learner || !p.Heard || p.SinceHeard >= peerAliveWindow
}
