package snapshot

import (
	"errors"
	"fmt"
	"time"
)

// Format constants (docs/snapshot-format.md).
const (
	// Magic opens every snapshot file.
	Magic = "AOSNAPSH"
	// Version is the format version this package writes and reads.
	Version uint32 = 1
	// MaxRecord bounds one record's body: a frames record holds at least one
	// frame, and a frame's payload is at most walrepl.DefaultMaxPayload.
	// A length above it is damage, not an allocation request.
	MaxRecord = 64 << 20
	// TrailerSize is the trailer record's body length.
	TrailerSize = 8 + 8 + 32

	prefixSize = 8 + 4 // magic, version
	recordHead = 1 + 4 // type, length
)

// Record types.
const (
	RecHeader     byte = 'H'
	RecEtcd       byte = 'K'
	RecCheckpoint byte = 'C'
	RecFrames     byte = 'F'
	RecTrailer    byte = 'T'
)

// Header describes a snapshot: what it holds and where it came from.
type Header struct {
	FormatVersion uint32 `json:"format_version"`
	// ClusterName is the --cluster-name of the cluster it was taken from.
	ClusterName string `json:"cluster_name"`
	// Node is the leader that streamed it; NodeVersion that node's build.
	Node        string `json:"node"`
	NodeVersion string `json:"node_version,omitempty"`
	// TakenAt is when the leader fixed SafeSeq (UTC).
	TakenAt time.Time `json:"taken_at"`
	// SafeSeq is the committed watermark the snapshot is consistent at: it
	// holds every frame from FirstSeq to SafeSeq, and nothing above.
	SafeSeq uint64 `json:"safe_seq"`
	// FirstSeq is the first frame held: the leader's WAL base (1 unless
	// retention trimmed it). SafeSeq+1 when no frame is held.
	FirstSeq uint64 `json:"first_seq"`
	// PrevEpoch is the epoch of frame FirstSeq-1 (0 when FirstSeq is 1): a
	// restored WAL starts at FirstSeq with it, as a rebased WAL does.
	PrevEpoch uint64 `json:"prev_epoch"`
	// LeaderEpoch is the serving leader's epoch: no frame's epoch exceeds it.
	// A restored cluster numbers its epochs above it (docs/decisions.md).
	LeaderEpoch uint64 `json:"leader_epoch"`
	// WALID is the leader's WAL id, for the record.
	WALID string `json:"wal_id,omitempty"`
}

// KV is one etcd key, relative to the cluster's prefix /autonomy/<cluster>/
// (e.g. "config/ingest/max_batch"), and its value as stored.
type KV struct {
	Key   string `json:"key"`
	Value []byte `json:"value"`
}

// EtcdState is the part of etcd a cluster needs, read at one revision.
type EtcdState struct {
	// Revision is the etcd revision every key was read at.
	Revision int64 `json:"revision"`
	// Settings are the config/ keys (cluster settings).
	Settings []KV `json:"settings"`
	// Audit are the audit/ keys (the operator audit trail), oldest first.
	Audit []KV `json:"audit"`
	// Members are the members/ keys (the node registry: API and
	// replication addresses). Kept for the record; restore does not load
	// them (docs/decisions.md).
	Members []KV `json:"members"`
	// WALPos are the walpos/ keys (the highest Seq each node was seen to
	// hold). Kept for the record; restore does not load them.
	WALPos []KV `json:"walpos"`
}

// Errors of a snapshot that cannot be used. Every *FormatError is
// errors.Is ErrCorrupt; a truncated file also ErrTruncated, an unknown
// version also ErrVersion.
var (
	ErrCorrupt   = errors.New("snapshot: the file is not a valid snapshot")
	ErrTruncated = errors.New("snapshot: the file is truncated")
	ErrVersion   = errors.New("snapshot: unsupported format version")
)

// Kinds of FormatError.
const (
	KindCorrupt   = "corrupt"
	KindTruncated = "truncated"
	KindVersion   = "version"
)

// FormatError says what is wrong with a snapshot file and where.
type FormatError struct {
	Kind   string // KindCorrupt, KindTruncated or KindVersion
	Offset int64  // the byte where the problem was found
	Reason string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("snapshot: %s at byte %d: %s", e.Kind, e.Offset, e.Reason)
}

// Is makes a FormatError match ErrCorrupt, and ErrTruncated or ErrVersion by
// its kind.
func (e *FormatError) Is(target error) bool {
	switch target {
	case ErrCorrupt:
		return true
	case ErrTruncated:
		return e.Kind == KindTruncated
	case ErrVersion:
		return e.Kind == KindVersion
	}
	return false
}

func corrupt(off int64, format string, args ...any) *FormatError {
	return &FormatError{Kind: KindCorrupt, Offset: off, Reason: fmt.Sprintf(format, args...)}
}

func truncated(off int64, format string, args ...any) *FormatError {
	return &FormatError{Kind: KindTruncated, Offset: off, Reason: fmt.Sprintf(format, args...)}
}

func recName(t byte) string {
	switch t {
	case RecHeader:
		return "header"
	case RecEtcd:
		return "etcd state"
	case RecCheckpoint:
		return "checkpoint"
	case RecFrames:
		return "frames"
	case RecTrailer:
		return "trailer"
	}
	return fmt.Sprintf("unknown (0x%02x)", t)
}
