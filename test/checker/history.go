package checker

import "time"

// Outcome is what a client knows about one event.
type Outcome int

const (
	Pending Outcome = iota
	// OK: acknowledged (200 with its Seq). It must be on every node, once.
	OK
	// Failed: every attempt was refused before a leader could write it
	// (dial refused, no_leader from a follower, 4xx). It must be nowhere.
	Failed
	// Unknown: some attempt may have been written (timeout, reset, 5xx
	// after the leader took it). It may be anywhere, at most once.
	Unknown
)

func (o Outcome) String() string {
	return [...]string{"pending", "ok", "failed", "unknown"}[o]
}

// Event is the history of one event id.
type Event struct {
	ID        string
	Outcome   Outcome
	Seq       uint64    // acknowledged Seq
	AckedBy   string    // the node that answered 200
	FirstTry  bool      // acknowledged on the first request sent to a node
	FirstSent time.Time // first request
	AckSent   time.Time // the request that was acknowledged
	AckAt     time.Time
	Attempts  int
	Pinned    string
}
