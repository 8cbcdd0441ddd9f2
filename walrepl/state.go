package walrepl

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// promiseState is this node's durable replication promise (telemetry.state).
type promiseState struct {
	// PromisedEpoch is the highest leader epoch this node accepted. Messages
	// of a smaller epoch are rejected (DESIGN §6 rule 2).
	PromisedEpoch uint64 `json:"promised_epoch"`
	// Learner is set while this node's WAL does not yet hold the committed
	// history it lost (DESIGN §6 rule 7): it then counts toward no majority.
	Learner bool `json:"learner,omitempty"`
	// LearnerUntil is the leader's safe_seq given when the learner rejoined;
	// 0 until a leader has told it.
	LearnerUntil uint64 `json:"learner_until,omitempty"`
}

func loadState(dir string) (promiseState, error) {
	var st promiseState
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("walrepl: reading %s: %w", StateFile, err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, recErr(CauseStateCorrupt, dir, 0, -1, "%s is not valid JSON (%v); restore it or reset this node's WAL",
			filepath.Join(dir, StateFile), err)
	}
	return st, nil
}

func saveState(dir string, st promiseState) error {
	b, _ := json.Marshal(st)
	return writeFileAtomic(filepath.Join(dir, StateFile), append(b, '\n'), 0o600)
}

// BaseFile records where the retained WAL begins after retention trimmed its
// oldest segments (issues 8, 14): frames below Base were committed and are
// gone; a segment begins at Base. Offset is only written by format version 1
// (one file, frame Base at that offset) and only read while that file is the
// first, sealed segment. Absent means Base 1.
const BaseFile = "telemetry.base"

// baseState is telemetry.base.
type baseState struct {
	Base      uint64 `json:"base"`
	Offset    int64  `json:"offset,omitempty"`
	PrevEpoch uint64 `json:"prev_epoch"` // epoch of frame Base-1 (for log matching)
}

func defaultBase() baseState { return baseState{Base: 1} }

func loadBase(dir string) (baseState, bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, BaseFile))
	if errors.Is(err, fs.ErrNotExist) {
		return defaultBase(), false, nil
	}
	if err != nil {
		return baseState{}, false, fmt.Errorf("walrepl: reading %s: %w", BaseFile, err)
	}
	var st baseState
	if err := json.Unmarshal(b, &st); err != nil || st.Base < 1 || (st.Offset != 0 && st.Offset < FileHeaderSize) {
		return baseState{}, false, recErr(CauseBaseCorrupt, dir, 0, -1,
			"%s holds %q, not {\"base\":N,\"prev_epoch\":N}; restore it or follow the operator reset path",
			filepath.Join(dir, BaseFile), truncateForMsg(string(b)))
	}
	return st, true, nil
}

func saveBase(dir string, st baseState) error {
	b, _ := json.Marshal(st)
	return writeFileAtomic(filepath.Join(dir, BaseFile), append(b, '\n'), 0o600)
}
