package walrepl

import (
	"errors"
	"fmt"
	"path/filepath"
)

// Environment variables an operator sets to accept a recovery path. Their
// names are public interface (runbook section 3).
const (
	EnvLegacyUpgrade = "AUTONOMYOPS_WAL_LEGACY_UPGRADE"
	EnvOperatorReset = "AUTONOMYOPS_WAL_OPERATOR_RESET"
)

// File names inside the telemetry directory. Public interface.
const (
	WALFile     = "telemetry.wal"
	SafeSeqFile = "telemetry.safe_seq"
	// ResetMarkerFile is the one-shot marker `autonomyctl wal reset` writes:
	// the next start begins with an empty WAL and removes it.
	ResetMarkerFile = "telemetry.reset"
	// StateFile holds the replication promise (highest accepted epoch).
	StateFile = "telemetry.state"
)

// ExitFailHard is the process exit status after a WAL fail-hard. The systemd
// unit lists it in RestartPreventExitStatus= so a damaged WAL does not
// restart-loop. 65 is EX_DATAERR from sysexits.h.
const ExitFailHard = 65

// Cause is a stable code naming the invariant a WAL violates.
type Cause string

// The causes of DESIGN §4's table, then the ones this implementation adds for
// damage the table does not name (docs/decisions.md says why).
const (
	CauseBadFirstSeq           Cause = "BAD_FIRST_SEQ"
	CauseSeqGap                Cause = "SEQ_GAP"
	CauseSafeSeqGTMaxSeq       Cause = "SAFESEQ_GT_MAXSEQ"
	CauseCommittedFrameCorrupt Cause = "COMMITTED_FRAME_CORRUPT"
	CauseInvalidJSON           Cause = "WAL_CORRUPT_INVALID_JSON"

	CauseSafeSeqMissing  Cause = "SAFESEQ_MISSING"
	CauseWALMissing      Cause = "WAL_MISSING"
	CauseSafeSeqCorrupt  Cause = "SAFESEQ_CORRUPT"
	CauseBadHeader       Cause = "BAD_HEADER"
	CauseFrameCorrupt    Cause = "FRAME_CORRUPT"
	CauseEpochRegression Cause = "EPOCH_REGRESSION"
	CauseBadFrameType    Cause = "BAD_FRAME_TYPE"
	CauseStateCorrupt    Cause = "STATE_CORRUPT"
	CauseBaseCorrupt     Cause = "BASE_CORRUPT"
	// CauseSegmentMissing: frames of the log are in no segment file — a
	// segment was deleted or cut short (a gap between segments, or none
	// where the base says the log begins).
	CauseSegmentMissing Cause = "SEGMENT_MISSING"
	// CauseSegmentChain: a segment's header does not continue the segment
	// before it (another WAL's id, another predecessor epoch or CRC,
	// overlapping sealed segments) or a truncation would drop committed
	// frames.
	CauseSegmentChain Cause = "SEGMENT_CHAIN"
)

// RecoveryError is a WAL invariant violation found while opening or verifying
// a WAL. It is never repairable automatically: the node must not start.
type RecoveryError struct {
	Cause  Cause
	Dir    string // the telemetry directory
	Seq    uint64 // the frame concerned, when there is one
	Offset int64  // byte offset of that frame in its segment file, or -1
	// File is the segment file the frame or header concerned is in
	// (telemetry.wal or a sealed telemetry-<Seq>.seg), "" when none.
	File string
	msg  string
}

func (e *RecoveryError) Error() string { return e.msg }

// Is lets errors.Is(err, ErrRecovery) match any RecoveryError.
func (e *RecoveryError) Is(target error) bool { return target == ErrRecovery }

// ErrRecovery matches every *RecoveryError with errors.Is.
var ErrRecovery = errors.New("walrepl: WAL recovery failed")

func recErr(c Cause, dir string, seq uint64, off int64, format string, args ...any) *RecoveryError {
	return &RecoveryError{
		Cause:  c,
		Dir:    dir,
		Seq:    seq,
		Offset: off,
		msg:    fmt.Sprintf("telemetry/wal: %s — ", c) + fmt.Sprintf(format, args...),
	}
}

func errBadFirstSeq(dir string, off int64, got, want uint64) error {
	return recErr(CauseBadFirstSeq, dir, got, off, "first frame Seq=%d (expected %d)", got, want)
}

func errSeqGap(dir string, off int64, got, prev uint64) error {
	return recErr(CauseSeqGap, dir, got, off, "frame Seq=%d follows Seq=%d (expected %d)", got, prev, prev+1)
}

func errSafeSeqGTMaxSeq(dir string, safe, max uint64) error {
	return recErr(CauseSafeSeqGTMaxSeq, dir, safe, -1, "safe_seq=%d but maxSeq=%d", safe, max)
}

func errCommittedCorrupt(dir string, seq uint64, off int64, torn bool, have int64) error {
	if torn {
		return recErr(CauseCommittedFrameCorrupt, dir, seq, off,
			"frame at Seq=%d (offset %d) is torn: the file ends %d bytes into it", seq, off, have)
	}
	return recErr(CauseCommittedFrameCorrupt, dir, seq, off, "frame at Seq=%d (offset %d) fails its checksum", seq, off)
}

func errInvalidJSON(dir string, seq uint64, off int64) error {
	return recErr(CauseInvalidJSON, dir, seq, off, "frame at Seq=%d contains invalid JSON", seq)
}

// errSafeSeqMissing is the runbook's message, byte for byte.
func errSafeSeqMissing(dir string) error {
	e := &RecoveryError{Cause: CauseSafeSeqMissing, Dir: dir, Offset: -1}
	e.msg = fmt.Sprintf("telemetry/wal: safe_seq missing in steady-state at %q;\n"+
		"to upgrade from a pre-Phase-1 WAL set %s=1;\n"+
		"to accept telemetry loss after deleting telemetry.wal set %s=1",
		filepath.Join(dir, SafeSeqFile), EnvLegacyUpgrade, EnvOperatorReset)
	return e
}

func errWALMissing(dir, why string) error {
	e := &RecoveryError{Cause: CauseWALMissing, Dir: dir, Offset: -1}
	e.msg = fmt.Sprintf("telemetry/wal: WAL missing in steady-state at %q (%s);\n"+
		"restore it from backup, or to accept telemetry loss set %s=1 "+
		"(in a cluster the node then re-replicates the committed history from the leader)",
		filepath.Join(dir, WALFile), why, EnvOperatorReset)
	return e
}

// Errors of a running WAL.
var (
	// ErrFailed: a write or fsync failed; the WAL acknowledges nothing more
	// until the process restarts and recovers (DESIGN §6 rule 8).
	ErrFailed = errors.New("walrepl: WAL failed after a write or fsync error; restart the node to recover")
	// ErrClosed: the WAL was closed.
	ErrClosed = errors.New("walrepl: WAL is closed")
	// ErrNotContiguous: appended frames do not continue the log.
	ErrNotContiguous = errors.New("walrepl: frames do not continue the log")
	// ErrTruncateCommitted: a truncation would remove a frame at or below
	// safe_seq. Impossible by construction; a node asked to do it fail-hards.
	ErrTruncateCommitted = errors.New("walrepl: refusing to truncate at or below safe_seq")
	// ErrInvalidPayload: a payload is not valid JSON.
	ErrInvalidPayload = errors.New("walrepl: payload is not valid JSON")
	// ErrTooLarge: a payload exceeds the frame bound.
	ErrTooLarge = errors.New("walrepl: payload exceeds the frame size bound")
	// ErrOutOfRange: a read asked for frames the WAL does not hold.
	ErrOutOfRange = errors.New("walrepl: requested Seq is outside the WAL")
)
