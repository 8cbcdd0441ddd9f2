// Package datadir owns the layout of a node's data directory (DESIGN §3):
// the names inside it, the node identity file, and the flock on LOCK.
//
// Both the daemon (node) and the offline tools (autonomyctl wal reset,
// status and verify) use it, so that they agree on every name and on the
// lock. The lock is what keeps `wal reset` from moving the WAL away under a
// running node, and a second node from opening the same directory: whoever
// takes it first wins, and the kernel drops it when its holder dies however
// it dies. LOCK itself stays after a stop; it must not be deleted (a process
// that opened the old file and one that opened a new one would both "hold"
// a lock).
//
// The package imports only the standard library and walrepl (for its
// crash-safe file replace), so autonomyctl can use it without linking the
// daemon.
package datadir
