package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

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
	if cp.fleet.UpTo+1 < newBase {
		return fmt.Errorf("fleet summary covers Seq≤%d, below the trim point %d", cp.fleet.UpTo, newBase-1)
	}
	b, err := cp.encode()
	if err != nil {
		return err
	}
	return walrepl.WriteFileAtomic(filepath.Join(n.wal.Dir(), CheckpointFile), b, 0o600)
}

// checkpointImage is a checkpoint as built for writing: the index's entries
// copied under its lock (24 bytes each, and the ids' bytes once) and encoded
// straight to JSON by encode. It is written before every trim, so at the
// retention bound every few seconds: json.Marshal of a checkpoint with
// 200 000 ids allocated 52 MB (the ids as strings, the structs, the encoder's
// doubling buffer and its copy).
type checkpointImage struct {
	fleet api.FleetState
	ents  []idEnt // oldest first; off and size index buf
	buf   []byte
	upTo  uint64 // IDsUpTo
}

// buildCheckpoint brings the fleet aggregator (up to safe_seq) and the id
// index (up to the last written frame) up to date and returns their state.
func (n *Node) buildCheckpoint() (checkpointImage, error) {
	fs, err := n.fleet.CatchUp(n.wal)
	if err != nil {
		return checkpointImage{}, err
	}
	return n.indexImage(fs)
}

// writeStopCheckpoint persists the id index at a clean stop, with the fleet
// aggregate as it stands: catching the fleet up could mean scanning the
// whole WAL on a follower that never served a summary (a 1 GiB WAL held the
// stop past systemd's timeout), and the next start catches it up from its
// UpTo anyway. The index follows the WAL in the background, so it is nearly
// caught up already.
func (n *Node) writeStopCheckpoint() error {
	fs := n.fleet.State()
	if base, _ := n.wal.Base(); fs.UpTo+1 < base {
		return fmt.Errorf("the fleet summary covers Seq≤%d, below the WAL's base %d", fs.UpTo, base)
	}
	cp, err := n.indexImage(fs)
	if err != nil {
		return err
	}
	b, err := cp.encode()
	if err != nil {
		return err
	}
	return walrepl.WriteFileAtomic(filepath.Join(n.wal.Dir(), CheckpointFile), b, 0o600)
}

// indexImage catches the id index up and copies it with fs.
func (n *Node) indexImage(fs api.FleetState) (checkpointImage, error) {
	x := n.ids
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := x.catchUpLocked(n.wal); err != nil {
		return checkpointImage{}, err
	}
	return x.image(fs), nil
}

// image copies the index's entries for a checkpoint. The caller holds x.mu.
func (x *idIndex) image(fleet api.FleetState) checkpointImage {
	cp := checkpointImage{fleet: fleet, upTo: x.upTo, ents: make([]idEnt, x.set.len()), buf: make([]byte, 0, x.set.keyBytes)}
	for k := range cp.ents {
		e := *x.set.at(k)
		id := x.set.idOf(&e)
		e.off = uint32(len(cp.buf))
		cp.buf = append(cp.buf, id...)
		cp.ents[k] = e
	}
	return cp
}

// upToSeq limits cp to frames at or below seq: the id index also covers
// frames written but not yet committed, which a snapshot must not claim.
func (cp checkpointImage) upToSeq(seq uint64) checkpointImage {
	out := cp
	out.upTo = min(cp.upTo, seq)
	out.ents = nil
	for _, e := range cp.ents {
		if e.seq <= seq {
			out.ents = append(out.ents, e)
		}
	}
	return out
}

// encode returns the JSON of the checkpoint: the bytes json.Marshal gives
// for the checkpoint struct with the same content (loadCheckpoint reads
// them with json.Unmarshal), written into one buffer of about the right
// size.
func (cp checkpointImage) encode() ([]byte, error) {
	fleet, err := json.Marshal(cp.fleet)
	if err != nil {
		return nil, err
	}
	// Seqs and epochs grow: the newest entry's have the most digits.
	perID := len(`{"id":"","seq":,"epoch":},`)
	if n := len(cp.ents); n > 0 {
		perID += len(strconv.FormatUint(cp.ents[n-1].seq, 10)) + len(strconv.FormatUint(cp.ents[n-1].epoch, 10))
	}
	b := make([]byte, 0, len(fleet)+len(cp.buf)+len(cp.ents)*perID+64)
	b = append(b, `{"fleet":`...)
	b = append(b, fleet...)
	b = append(b, `,"ids":`...)
	if len(cp.ents) == 0 {
		b = append(b, "null"...) // as a nil slice marshals
	} else {
		b = append(b, '[')
		for i, e := range cp.ents {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"id":`...)
			if b, err = appendJSONString(b, cp.buf[e.off:e.off+e.size]); err != nil {
				return nil, err
			}
			b = append(b, `,"seq":`...)
			b = strconv.AppendUint(b, e.seq, 10)
			b = append(b, `,"epoch":`...)
			b = strconv.AppendUint(b, e.epoch, 10)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"ids_up_to":`...)
	b = strconv.AppendUint(b, cp.upTo, 10)
	return append(b, '}'), nil
}

// appendJSONString appends s as encoding/json writes a string: printable
// ASCII as it is, and anything it escapes (quotes, backslashes, <, >, &,
// control characters) or checks (non-ASCII) through json.Marshal itself.
func appendJSONString(b, s []byte) ([]byte, error) {
	for _, c := range s {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, err := json.Marshal(string(s))
			return append(b, q...), err
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"'), nil
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
