package node

import (
	"math"
	"runtime/debug"

	"github.com/sirupsen/logrus"
)

// The Go runtime's soft memory limit (docs/decisions.md, "Memory: a soft
// limit of 100 MiB").
//
// With GOGC alone the heap may grow to twice what is live before a
// collection, and the runtime keeps freed pages for a while, so the peak RSS
// follows the busiest moment's garbage rather than what the node holds. A
// soft limit makes the collector run sooner, and return freed pages to the
// OS, as the runtime's memory nears it; it never fails an allocation. If
// what is live exceeds it (a much larger idempotency window, say), the
// runtime caps the collector at about half the CPU and lets the heap grow.
const (
	// DefaultMemoryLimit is --memory-limit-bytes's default: what the node
	// needs at the default idempotency bounds with room for collection, and
	// under the appliance's 150 MiB RSS target with the binary's own pages
	// (about 32 MiB, which the runtime does not count).
	DefaultMemoryLimit = 100 << 20
	// MinMemoryLimit is the smallest limit accepted: below it the collector
	// would run all the time for what etcd and the WAL hold at rest.
	MinMemoryLimit = 32 << 20
	// EnvGoMemLimit is Go's own variable; the runtime applies it at start.
	EnvGoMemLimit = "GOMEMLIMIT"
	// nodeBaseBytes is what a node holds besides the idempotency index at
	// its busiest, with room for the collector: etcd, the WAL's queues, the
	// HTTP and replication buffers (heap profiles: 25-40 MB live).
	nodeBaseBytes = 64 << 20
)

// applyMemoryLimit sets the runtime's soft memory limit from
// --memory-limit-bytes (0: none), unless GOMEMLIMIT is set: then the value
// the runtime took from it stays. It returns the limit in effect and where
// it comes from.
func applyMemoryLimit(cfg Config, getenv func(string) string) (limit int64, source string) {
	if getenv(EnvGoMemLimit) != "" {
		return debug.SetMemoryLimit(-1), EnvGoMemLimit
	}
	limit = cfg.MemoryLimitBytes
	if limit == 0 {
		limit = math.MaxInt64
	}
	debug.SetMemoryLimit(limit)
	return limit, "--memory-limit-bytes"
}

// memoryTight reports whether an idempotency index at its byte bound would
// leave the node too little room under the soft limit: the collector would
// then run most of the time.
func memoryTight(limit, idemBytes int64) bool {
	return limit != math.MaxInt64 && idemBytes > limit-nodeBaseBytes
}

// warnMemoryTight logs MEMORY_LIMIT_TIGHT when the idempotency index's byte
// bound does not fit under the soft memory limit with the node's other
// needs, once per (limit, bound) pair.
func (n *Node) warnMemoryTight(idemBytes int64) {
	limit := debug.SetMemoryLimit(-1)
	if !memoryTight(limit, idemBytes) || n.memWarned == [2]int64{limit, idemBytes} {
		return
	}
	n.memWarned = [2]int64{limit, idemBytes}
	n.log.WithFields(logrus.Fields{"limit_bytes": limit, "idempotency_window_bytes": idemBytes, "room_bytes": limit - idemBytes}).
		Warn("MEMORY_LIMIT_TIGHT: the idempotency index may fill most of the soft memory limit; raise --memory-limit-bytes (or GOMEMLIMIT) or lower ingest/idempotency_window_bytes")
}
