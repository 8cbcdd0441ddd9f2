package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/autonomyops/orchestrator/api"
	"github.com/autonomyops/orchestrator/node/datadir"
	"github.com/autonomyops/orchestrator/walrepl"
)

// CheckpointFile keeps what must outlive frames that retention trims: the
// fleet summary's aggregates and the idempotency window's ids (issue 8).
// Written atomically (tmp + fsync + rename + dir fsync) before every trim.
const CheckpointFile = datadir.CheckpointFile

type checkpoint struct {
	Fleet api.FleetState `json:"fleet"`
	IDs   []checkpointID `json:"ids"`
	// IDsUpTo: frames at or below it are in IDs (within the window).
	IDsUpTo uint64 `json:"ids_up_to"`
}

type checkpointID struct {
	ID    string `json:"id"`
	Seq   uint64 `json:"seq"`
	Epoch uint64 `json:"epoch"`
}

// writeCheckpoint brings the fleet aggregator and the id index up to date
// (both cover at least newBase-1: trimmed frames are committed) and persists
// them.
func (n *Node) writeCheckpoint(newBase uint64) error {
	cp, err := n.buildCheckpoint()
	if err != nil {
		return err
	}
	if cp.Fleet.UpTo+1 < newBase {
		return fmt.Errorf("fleet summary covers Seq≤%d, below the trim point %d", cp.Fleet.UpTo, newBase-1)
	}
	b, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	return walrepl.WriteFileAtomic(filepath.Join(n.wal.Dir(), CheckpointFile), b, 0o600)
}

// buildCheckpoint brings the fleet aggregator (up to safe_seq) and the id
// index (up to the last written frame) up to date and returns their state.
func (n *Node) buildCheckpoint() (checkpoint, error) {
	fs, err := n.fleet.CatchUp(n.wal)
	if err != nil {
		return checkpoint{}, err
	}
	x := n.ids
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := x.catchUpLocked(n.wal); err != nil {
		return checkpoint{}, err
	}
	cp := checkpoint{Fleet: fs, IDsUpTo: x.upTo}
	if n := x.set.len(); n > 0 {
		cp.IDs = make([]checkpointID, 0, n)
	}
	for k := 0; k < x.set.len(); k++ {
		e := x.set.at(k)
		cp.IDs = append(cp.IDs, checkpointID{ID: string(x.set.idOf(e)), Seq: e.seq, Epoch: e.epoch})
	}
	return cp, nil
}

// upTo limits cp to frames at or below seq: the id index also covers
// frames written but not yet committed, which a snapshot must not claim.
func (cp checkpoint) upTo(seq uint64) checkpoint {
	out := checkpoint{Fleet: cp.Fleet, IDsUpTo: min(cp.IDsUpTo, seq)}
	for _, e := range cp.IDs {
		if e.Seq <= seq {
			out.IDs = append(out.IDs, e)
		}
	}
	return out
}

// loadCheckpoint restores the fleet aggregator and the id index.
func (n *Node) loadCheckpoint() error {
	b, err := os.ReadFile(filepath.Join(n.wal.Dir(), CheckpointFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var cp checkpoint
	if err := json.Unmarshal(b, &cp); err != nil {
		return fmt.Errorf("node: %s is not valid JSON (%v); delete it to rebuild the fleet summary from the retained WAL", CheckpointFile, err)
	}
	// A checkpoint from before an operator reset belongs to another log.
	if base, _ := n.wal.Base(); cp.Fleet.UpTo+1 < base {
		n.log.WithField("checkpoint_up_to", cp.Fleet.UpTo).Warn("CHECKPOINT_STALE: older than the WAL's base; ignored")
		return nil
	}
	if last, _, _, _ := n.wal.Positions(); cp.Fleet.UpTo > last || cp.IDsUpTo > last {
		n.log.Warn("CHECKPOINT_AHEAD: the checkpoint covers frames this WAL does not hold; ignored")
		return nil
	}
	n.fleet.Restore(cp.Fleet)
	x := n.ids
	x.mu.Lock()
	for _, e := range cp.IDs {
		x.addLocked(e.ID, e.Seq, e.Epoch)
	}
	x.upTo = cp.IDsUpTo
	x.mu.Unlock()
	return nil
}
