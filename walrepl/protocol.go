package walrepl

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// Replication protocol versions. A node speaks every version from
// MinProtocol to Protocol and says which one it speaks in every promise and
// fetch exchange, the two that open each epoch with each peer. Version 1 is
// the protocol of v0.2.0, which sent no version: a message without one
// (Proto 0) is version 1. The append stream's format is named by its
// connection byte ('S' is version 1's); a later format takes a new byte, so
// an older node never misreads one.
//
// Supported skew: N-1 and N (docs/operations.md, "Upgrades"). A version
// that changes the protocol raises Protocol and keeps MinProtocol at the
// version before it, so a rolling upgrade always has both sides speaking.
const (
	Protocol    = 1
	MinProtocol = 1
)

// ErrProtocolUnsupported: a peer speaks a replication protocol version this
// node does not (or refused this node's).
var ErrProtocolUnsupported = errors.New("walrepl: replication protocol version not supported")

// protoOf reads a message's version: 0 is version 1 (sent by v0.2.0).
func protoOf(v uint32) uint32 {
	if v == 0 {
		return 1
	}
	return v
}

// checkProto says whether this node speaks version v, and if not, what is
// wrong and what to do.
func checkProto(v uint32) error {
	v = protoOf(v)
	if v >= MinProtocol && v <= Protocol {
		return nil
	}
	return fmt.Errorf("%w: the peer speaks version %d, this node speaks %d to %d; "+
		"upgrade (or roll back) one node at a time so that versions differ by at most one: docs/operations.md \"Upgrades\"",
		ErrProtocolUnsupported, v, MinProtocol, Protocol)
}

// Refusal is the last time this node could not speak to a peer.
type Refusal struct {
	Peer    string // the peer's address
	Version uint32 // the version the peer spoke (0 if it refused ours)
	At      time.Time
	Err     string
}

// refusals remembers the last protocol refusal, for the health reason.
type refusals struct {
	mu   sync.Mutex
	last Refusal
}

func (r *refusals) note(peer string, version uint32, err error) {
	r.mu.Lock()
	r.last = Refusal{Peer: peer, Version: version, At: time.Now(), Err: err.Error()}
	r.mu.Unlock()
}

func (r *refusals) get() Refusal {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}
