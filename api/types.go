package api

import (
	"encoding/json"
	"time"
)

// The JSON shapes of the REST API. autonomyctl and the integration suite
// decode answers into these types; changing a field name is a breaking change.

// ErrorResponse is every error answer: {"error":"<code>","message":"<text>"}.
type ErrorResponse struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// Health is the body of GET /v1/health (200 only on the leader that can
// commit) and GET /v1/health/live.
type Health struct {
	Status    string   `json:"status"` // "ok" or "unavailable"
	Role      string   `json:"role"`   // "leader", "follower", "learner", "candidate"
	Node      string   `json:"node"`
	Leader    string   `json:"leader,omitempty"`
	LeaderURL string   `json:"leader_url,omitempty"`
	Epoch     uint64   `json:"epoch"`
	SafeSeq   uint64   `json:"safe_seq"`
	LastSeq   uint64   `json:"last_seq"`
	WAL       string   `json:"wal"`               // "ok" or "failed"
	Reasons   []string `json:"reasons,omitempty"` // why not 200: not_leader, no_quorum, epoch_not_started, wal_fail_hard
	Version   string   `json:"version,omitempty"`
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
	Node    string     `json:"node"`
	Role    string     `json:"role"`
	Leader  *LeaderRef `json:"leader,omitempty"`
	Members []Member   `json:"members"`
	SafeSeq uint64     `json:"safe_seq"`
	Quorum  Quorum     `json:"quorum"`
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
	Name        string `json:"name"`
	APIURL      string `json:"api_url"`
	Role        string `json:"role"`
	GossipState string `json:"gossip_state"` // alive, suspect, dead, unknown
	LastSeq     uint64 `json:"last_seq"`
	FsyncedSeq  uint64 `json:"fsynced_seq"`
	Lag         uint64 `json:"lag"`
	Learner     bool   `json:"learner"`
	FailHard    string `json:"fail_hard,omitempty"`
}

// Quorum summarises whether the cluster can commit.
type Quorum struct {
	Size    int `json:"size"`
	Healthy int `json:"healthy"`
}
