// Package walrepl is the telemetry write-ahead log and its replication.
//
// # The local WAL
//
// The WAL is a chain of bounded segment files: sealed telemetry-<Seq>.seg
// files, never appended to again, and the active telemetry.wal. Each is a
// 64-byte segment header (the WAL id, its first Seq, the epoch and CRC of
// the frame before it) followed by frames; docs/wal-format.md is the
// byte-level specification, segment.go the roll, chain.go the checks across
// segments, segfs.go the only file-system calls of the segment layer. Every frame carries a contiguous Seq, the
// leader epoch that created it, a timestamp, a type and a JSON payload, and is
// protected by a CRC-32C. Appends are queued and written by one flusher
// goroutine that issues a single fdatasync for everything queued since its last
// round (group commit). Nothing is reported durable before its fdatasync has
// returned; a failed write or fdatasync fails the WAL for good (it is never
// retried: after a failed fsync the kernel may have dropped the dirty pages).
//
// telemetry.safe_seq holds the watermark. Invariants:
//
//   - safe_seq never decreases, in memory or on disk;
//   - the persisted safe_seq is never above this node's fsynced Seq, so after
//     any crash safe_seq ≤ the last whole frame (R3);
//   - frames at or below safe_seq are never truncated or rewritten.
//
// # Recovery
//
// Open checks every invariant of DESIGN §4 before the node may start and
// returns a *RecoveryError carrying a stable Cause code when one is violated.
// The only damage repaired automatically is a torn tail: an incomplete or
// checksum-failing frame above safe_seq after which no whole frame exists,
// which is the unfinished end of a write that was never fsynced and therefore
// never acknowledged. Verify runs the same checks without changing anything.
//
// # Replication
//
// walrepl knows nothing of etcd or HTTP. Its caller supplies the leader epoch
// and the peer set and a Transport to reach peers; see replica.go.
package walrepl
