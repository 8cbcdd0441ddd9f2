// Package snapshot is the format of an online snapshot of a cluster
// (`autonomyctl snapshot save`), its verification (`snapshot status`) and the
// seed file that `snapshot restore` leaves in a new node's data directory for
// the node's first start. docs/snapshot-format.md is the byte-level spec;
// keep the two in step.
//
// A snapshot file is
//
//	magic    [8]  "AOSNAPSH"
//	version  u32  little-endian; this package writes and reads Version (1)
//	records  ...  each: type u8, length u32 (little-endian), body [length]
//
// and its records come in this order, each exactly once except frames:
//
//	'H' header      JSON Header: cluster, taken-at, safe_seq, first Seq, epochs
//	'K' etcd state  JSON EtcdState: settings, audit, member registry and WAL
//	                position records, all read at one etcd revision
//	'C' checkpoint  the fleet/idempotency checkpoint (JSON, opaque here)
//	'F' frames      zero or more: WAL frames encoded exactly as in the WAL
//	                (walrepl.AppendEncoded, CRC-32C each), Seqs contiguous
//	                from Header.FirstSeq to Header.SafeSeq across records
//	'T' trailer     48 bytes: frame count u64, last Seq u64, SHA-256 [32]
//	                over every byte of the file before the trailer record
//
// Invariants the reader checks (Scan), so that a file it accepts restores
// exactly the committed telemetry it states:
//
//   - the magic and version are known; records are whole, of a known type,
//     in the order above, and nothing follows the trailer;
//   - every frame passes its CRC, carries JSON, and Seqs run without a gap
//     from FirstSeq to SafeSeq with epochs that never decrease;
//   - the trailer's counts match the frames read and its SHA-256 matches the
//     bytes read.
//
// A writer never emits a file that breaks them: Writer refuses a frame that
// does not continue the previous one, and Close refuses to end before
// SafeSeq.
package snapshot
