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
