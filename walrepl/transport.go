package walrepl

import (
	"context"
	"errors"
)

// Peer is another node of the cluster as replication sees it.
type Peer struct {
	Name string
	Addr string // replication address, meaning defined by the Transport
}

// EpochStart is one entry of a log's epoch history: the first Seq an epoch's
// frames occupy in that log.
type EpochStart = epochStart

// PromiseRequest asks a node to accept epoch and report its log tail
// (DESIGN §6 rules 2 and 3).
type PromiseRequest struct {
	Epoch  uint64
	Leader string
	Proto  uint32 // the sender's replication protocol version (0: version 1)
}

// PromiseResponse is a node's answer. OK is false when the node has already
// promised a higher epoch (Promised says which).
type PromiseResponse struct {
	Proto uint32 // the answering node's protocol version (0: version 1)
	// Refused: the node does not speak the request's protocol version, and
	// says why. Nothing else in the answer counts.
	Refused  string
	OK       bool
	Node     string
	Promised uint64
	WALID    [16]byte
	Learner  bool
	// Unconfirmed: this node restarted and no leader has confirmed its log
	// since (DESIGN §6 rule 13). Its disk may be an old copy of itself, so
	// its tail may lack frames it acknowledged: a candidate counts it only
	// together with every voter, or beside a majority of confirmed ones.
	Unconfirmed bool
	LastSeq     uint64 // fsynced: the tail is durable before it is reported
	LastEpoch   uint64
	SafeSeq     uint64
	Epochs      []EpochStart
	Base        uint64 // first retained Seq: everything below is committed and trimmed
	BaseEpoch   uint64 // epoch of frame Base-1
}

// FetchRequest asks a node for frames of its log from From on; a new leader
// uses it to adopt the most up-to-date tail.
type FetchRequest struct {
	Proto    uint32 // as in PromiseRequest
	Epoch    uint64
	From     uint64
	MaxBytes int
}

// FetchResponse carries the frames (possibly none at the end of the log).
type FetchResponse struct {
	Proto    uint32 // as in PromiseResponse
	Refused  string // as in PromiseResponse
	OK       bool
	Promised uint64
	Frames   []Frame
}

// AppendRequest is one message of the leader's stream to a follower: frames
// that continue the follower's log after (PrevSeq, PrevEpoch), and the
// leader's safe_seq. With no frames it is a heartbeat that still checks Prev.
type AppendRequest struct {
	Epoch     uint64
	Leader    string
	Gen       uint64 // the leader's resynchronisation generation, echoed back
	PrevSeq   uint64
	PrevEpoch uint64
	SafeSeq   uint64
	Frames    []Frame
	// Rebase: the leader's WAL was trimmed past what this follower lacks.
	// If Prev does not match, the follower restarts its log at PrevSeq+1.
	Rebase bool
	// EpochStarted: the leader's epoch-start frame is committed, so SafeSeq
	// covers everything committed before this epoch. Only such a SafeSeq may
	// set a learner's target (DESIGN §6 rule 7).
	EpochStarted bool
}

// AppendResponse is a follower's answer on the stream. Acks are cumulative:
// DurableSeq is the highest Seq fsynced and known to match the leader's log.
type AppendResponse struct {
	Epoch      uint64
	Gen        uint64
	OK         bool
	Promised   uint64 // when !OK because of a higher epoch
	Mismatch   bool   // Prev did not match: Epochs and LastSeq let the leader find where
	LastSeq    uint64
	Epochs     []EpochStart
	Base       uint64 // with Mismatch: the follower's first retained Seq
	BaseEpoch  uint64 // and the epoch of the frame before it
	DurableSeq uint64
	Learner    bool
	WALID      [16]byte
	Error      string // a fatal error on the follower (its WAL failed)
}

// Transport carries replication messages. Implementations: TCPTransport
// (production) and InmemNetwork (tests, with fault injection).
type Transport interface {
	Promise(ctx context.Context, addr string, req *PromiseRequest) (*PromiseResponse, error)
	Fetch(ctx context.Context, addr string, req *FetchRequest) (*FetchResponse, error)
	// OpenStream opens the leader→follower append stream. Messages are
	// delivered in order; responses come back on the same stream.
	OpenStream(ctx context.Context, addr string) (Stream, error)
}

// Stream is the leader's end of an append stream.
type Stream interface {
	Send(*AppendRequest) error
	Recv() (*AppendResponse, error)
	Close() error
}

// ServerStream is the follower's end of an append stream.
type ServerStream interface {
	Recv() (*AppendRequest, error)
	Send(*AppendResponse) error
}

// Handler serves incoming replication messages; Replica implements it.
type Handler interface {
	HandlePromise(ctx context.Context, req *PromiseRequest) *PromiseResponse
	HandleFetch(ctx context.Context, req *FetchRequest) *FetchResponse
	// HandleStream serves one append stream until it fails or ctx ends.
	HandleStream(ctx context.Context, s ServerStream) error
}

// ErrUnreachable is returned by transports when a peer cannot be reached.
var ErrUnreachable = errors.New("walrepl: peer unreachable")
