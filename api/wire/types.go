package wire

import (
	"encoding/json"
	"time"
)

// The JSON shapes of the REST API. autonomyctl and the integration suite
// decode answers into these types; changing a field name is a breaking change.

// Headers and media types of the protocol.
const (
	// HeaderLeader is set by followers on their 307 answers: the leader's API
	// URL (or name when no URL is known).
	HeaderLeader = "X-Autonomy-Leader"
	// ContentTypeNDJSON is the media type of GET /v1/logs.
	ContentTypeNDJSON = "application/x-ndjson"
	// ContentTypeSnapshot is the media type of GET /v1/snapshot (the format
	// of docs/snapshot-format.md).
	ContentTypeSnapshot = "application/vnd.autonomy.snapshot"
)

// ErrorResponse is every error answer: {"error":"<code>","message":"<text>"}.
type ErrorResponse struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	// Settings lists every settings key with its bounds when a settings
	// write was refused (unknown_setting, bad_setting).
	Settings []SettingInfo `json:"settings,omitempty"`
}

// Health is the body of GET /v1/health (200 only on the leader that can
// commit) and GET /v1/health/live.
type Health struct {
	Status    string   `json:"status"` // "ok" or "unavailable"
	Role      string   `json:"role"`   // "leader", "follower", "learner", "candidate"
	Node      string   `json:"node"`
	Leader    string   `json:"leader,omitempty"` // only a leader that can commit, as this node can tell
	LeaderURL string   `json:"leader_url,omitempty"`
	Epoch     uint64   `json:"epoch"`
	SafeSeq   uint64   `json:"safe_seq"`
	LastSeq   uint64   `json:"last_seq"`
	WAL       string   `json:"wal"`               // "ok" or "failed"
	Reasons   []string `json:"reasons,omitempty"` // why not 200; the codes are listed in docs/autonomyctl.md
	// Warnings: conditions that do not stop this node committing but need
	// the operator (peer_protocol_unsupported); listed in docs/autonomyctl.md.
	Warnings []string `json:"warnings,omitempty"`
	Version  string   `json:"version,omitempty"`
}

// IngestResponse answers POST /v1/telemetry/events once every event is
// committed: the Seq of each event in request order.
type IngestResponse struct {
	Seqs    []uint64 `json:"seqs"`
	SafeSeq uint64   `json:"safe_seq"`
}

// Event is one committed telemetry event.
type Event struct {
	Seq   uint64          `json:"seq"`
	Epoch uint64          `json:"epoch"`
	TS    time.Time       `json:"ts"`
	Event json.RawMessage `json:"event"`
}

// EventsResponse answers GET /v1/telemetry/events.
type EventsResponse struct {
	Events  []Event `json:"events"`
	SafeSeq uint64  `json:"safe_seq"`
}

// WALStatus answers GET /v1/wal/status: this node's own WAL.
type WALStatus struct {
	Node             string  `json:"node"`
	Dir              string  `json:"dir"`
	WALID            string  `json:"wal_id"`
	Base             uint64  `json:"base"`
	FirstSeq         uint64  `json:"first_seq"`
	LastSeq          uint64  `json:"last_seq"`
	FsyncedSeq       uint64  `json:"fsynced_seq"`
	SafeSeq          uint64  `json:"safe_seq"`
	PersistedSafeSeq uint64  `json:"persisted_safe_seq"`
	Bytes            int64   `json:"bytes"`
	BytesOnDisk      int64   `json:"bytes_on_disk"`
	TrimmedFrames    uint64  `json:"trimmed_frames"`
	FsyncCount       int64   `json:"fsync_count"`
	FsyncLastMs      float64 `json:"fsync_last_ms"`
	FsyncAvgMs       float64 `json:"fsync_avg_ms"`
	FsyncMaxMs       float64 `json:"fsync_max_ms"`
	Failed           string  `json:"failed,omitempty"`
}

// Frame is one WAL frame as GET /v1/wal/inspect shows it.
type Frame struct {
	Seq   uint64          `json:"seq"`
	Epoch uint64          `json:"epoch"`
	TS    time.Time       `json:"ts"`
	Type  string          `json:"type"` // "event" or "epoch_start"
	Event json.RawMessage `json:"event"`
}

// InspectResponse answers GET /v1/wal/inspect.
type InspectResponse struct {
	Node    string  `json:"node"`
	Frames  []Frame `json:"frames"`
	SafeSeq uint64  `json:"safe_seq"`
}

// HAStatus answers GET /v1/ha/status on every node.
type HAStatus struct {
	Node string `json:"node"`
	Role string `json:"role"`
	// Leader is the leader that can commit, as the answering node can tell;
	// nil when it cannot tell that any can (no quorum). LastLeader then
	// names the last leader it saw.
	Leader     *LeaderRef `json:"leader,omitempty"`
	LastLeader *LeaderRef `json:"last_leader,omitempty"`
	Members    []Member   `json:"members"`
	SafeSeq    uint64     `json:"safe_seq"`
	Quorum     Quorum     `json:"quorum"`
	// Etcd is etcd's view; Members carry gossip's. Disagreements lists every
	// place where the two (or the replication stream) disagree.
	Etcd          *EtcdView `json:"etcd,omitempty"`
	Disagreements []string  `json:"disagreements,omitempty"`
}

// LeaderRef names the current leader as etcd sees it.
type LeaderRef struct {
	Name   string    `json:"name"`
	APIURL string    `json:"api_url"`
	Epoch  uint64    `json:"epoch"`
	Since  time.Time `json:"since"`
}

// Member is one node in ha status.
type Member struct {
	Name   string `json:"name"`
	APIURL string `json:"api_url"`
	// State is "alive" or "unreachable" as the answering node can tell: alive
	// in gossip, or heard on the replication stream within the last second.
	State       string `json:"state,omitempty"`
	Role        string `json:"role"`
	GossipState string `json:"gossip_state"` // alive, suspect, dead (until it rejoins), or unknown if gossip never saw it
	LastSeq     uint64 `json:"last_seq"`
	FsyncedSeq  uint64 `json:"fsynced_seq"`
	Lag         uint64 `json:"lag"`
	Learner     bool   `json:"learner"`
	FailHard    string `json:"fail_hard,omitempty"`
	// Version is the member's build version as it gossips it (the answering
	// node's own for itself); "" for a member that does not gossip one (an
	// older release) or that gossip never saw.
	Version string `json:"version,omitempty"`
}

// Quorum summarises whether the cluster can commit: Size voters are needed;
// Healthy counts the member rows marked alive (itself included), so it
// matches the member table.
type Quorum struct {
	Size    int `json:"size"`
	Healthy int `json:"healthy"`
}

// ReplicaHealth answers GET /v1/health/replica?max_lag=N: 200 on a follower
// whose fsynced Seq is within max_lag frames of the leader's safe_seq as last
// carried by the leader's replication heartbeats.
type ReplicaHealth struct {
	Status        string   `json:"status"` // "ok" or "unavailable"
	Node          string   `json:"node"`
	Role          string   `json:"role"`
	FsyncedSeq    uint64   `json:"fsynced_seq"`
	LeaderSafeSeq uint64   `json:"leader_safe_seq"`
	Lag           uint64   `json:"lag"`
	MaxLag        uint64   `json:"max_lag"`
	SinceLeaderMs int64    `json:"since_leader_ms"`   // since the last message from the leader; -1 if never
	Reasons       []string `json:"reasons,omitempty"` // not_follower, learner, lagging, leader_not_heard, wal_failed
}

// FailoverRequest is the body of POST /v1/ha/failover.
type FailoverRequest struct {
	To     string `json:"to,omitempty"` // a node name; empty: the best candidate
	DryRun bool   `json:"dry_run,omitempty"`
}

// FailoverCandidate is one possible new leader with everything that blocks it.
type FailoverCandidate struct {
	Name       string   `json:"name"`
	FsyncedSeq uint64   `json:"fsynced_seq"`
	Lag        uint64   `json:"lag"`
	Gossip     string   `json:"gossip_state"`
	Eligible   bool     `json:"eligible"`
	Blockers   []string `json:"blockers,omitempty"` // e.g. "lagging by 1200 frames (bound 1000)", "learner", "not healthy in gossip (suspect)", "not answering replication for 3.2s"
}

// FailoverResponse answers POST /v1/ha/failover.
type FailoverResponse struct {
	DryRun     bool                `json:"dry_run"`
	From       string              `json:"from"`
	To         string              `json:"to,omitempty"`
	NewLeader  string              `json:"new_leader,omitempty"`
	NewEpoch   uint64              `json:"new_epoch,omitempty"`
	TookMs     int64               `json:"took_ms,omitempty"`
	Candidates []FailoverCandidate `json:"candidates"`
}

// FleetAgent is one agent in the fleet summary.
type FleetAgent struct {
	Agent    string            `json:"agent"`
	Events   uint64            `json:"events"`
	Errors   uint64            `json:"errors"`
	LastSeen time.Time         `json:"last_seen"`
	LastSeq  uint64            `json:"last_seq"`
	ByKind   map[string]uint64 `json:"by_kind"`
}

// FleetSummary answers GET /v1/fleet/summary: derived from committed frames.
type FleetSummary struct {
	Agents  []FleetAgent      `json:"agents"`
	ByKind  map[string]uint64 `json:"by_kind"`
	Events  uint64            `json:"events"`
	Errors  uint64            `json:"errors"`
	SafeSeq uint64            `json:"safe_seq"`
}

// Setting is one cluster setting stored in etcd (GET/PUT/DELETE /v1/config/*key).
type Setting struct {
	Key      string          `json:"key"`
	Value    json.RawMessage `json:"value,omitempty"`
	Revision int64           `json:"revision"` // etcd ModRevision; send it back in If-Match for compare-and-set
}

// SettingsList answers GET /v1/config/ (every setting).
type SettingsList struct {
	// Settings are the keys stored in etcd, as stored.
	Settings []Setting `json:"settings"`
	Revision int64     `json:"revision"`
	// Known is every key of the schema as the answering node (the leader)
	// resolves it against what etcd stores: its value, default and source.
	Known []SettingInfo `json:"known"`
	// Unknown are stored keys outside the schema: they have no effect.
	Unknown []string `json:"unknown,omitempty"`
}

// SettingInfo is one key of the settings schema (docs/autonomyctl.md,
// "settings") as a node resolves it.
type SettingInfo struct {
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"` // in effect
	// Default is the value without a stored one: the node's serve flag
	// (Flag), or the built-in default.
	Default  json.RawMessage `json:"default"`
	Source   string          `json:"source"`             // "etcd" or "default"
	Revision int64           `json:"revision,omitempty"` // etcd ModRevision of the stored value
	Type     string          `json:"type"`               // integer, duration or string
	Bounds   string          `json:"bounds"`
	Flag     string          `json:"flag,omitempty"`
	Help     string          `json:"help"`
	// Refused says why a stored value is not applied (the default is).
	Refused string `json:"refused,omitempty"`
}

// NodeSettings answers GET /v1/node/settings on every node: the settings it
// applies now, as of the etcd revision its watch has reached.
type NodeSettings struct {
	Node     string        `json:"node"`
	Revision int64         `json:"revision"`
	Settings []SettingInfo `json:"settings"`
	Unknown  []string      `json:"unknown,omitempty"`
}

// AuditRecord is one operator action.
type AuditRecord struct {
	At      time.Time      `json:"at"`
	Who     string         `json:"who"` // token name, or "anonymous" with auth off, or "operator" for local actions
	Action  string         `json:"action"`
	Node    string         `json:"node"`
	Details map[string]any `json:"details,omitempty"`
}

// AuditResponse answers GET /v1/audit (newest first).
type AuditResponse struct {
	Records []AuditRecord `json:"records"`
}

// EtcdView is etcd's side of ha status.
type EtcdView struct {
	Members []EtcdMember `json:"members"`
	Leader  string       `json:"leader_key_holder,omitempty"`
	Epoch   uint64       `json:"epoch"`
	// Stale: etcd has no quorum as the answering node can tell, so Members
	// is its local copy (the last it saw) and the key holder is unknown.
	Stale bool `json:"stale,omitempty"`
}

// EtcdMember is an etcd member.
type EtcdMember struct {
	Name     string   `json:"name"`
	ID       string   `json:"id"`
	Learner  bool     `json:"is_learner"`
	PeerURLs []string `json:"peer_urls"`
}

// MembersResponse answers GET /v1/members: etcd's members with what each
// node registered about itself.
type MembersResponse struct {
	Members []ClusterMember `json:"members"`
}

// ClusterMember is one member of the cluster.
type ClusterMember struct {
	Name     string   `json:"name"`
	ID       string   `json:"id"`
	PeerURLs []string `json:"peer_urls"`
	APIURL   string   `json:"api_url,omitempty"`
	ReplAddr string   `json:"repl_addr,omitempty"`
	Started  bool     `json:"started"` // false until the new member's etcd has joined
}

// AddMemberRequest is the body of POST /v1/members.
type AddMemberRequest struct {
	Name    string `json:"name"`
	PeerURL string `json:"peer_url"`
}

// AddMemberResponse tells the operator how to start the new node.
type AddMemberResponse struct {
	Member         ClusterMember `json:"member"`
	InitialCluster string        `json:"initial_cluster"` // pass as --initial-cluster with --initial-cluster-state existing
}
