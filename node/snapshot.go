package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/autonomyops/orchestrator/api"
	"github.com/autonomyops/orchestrator/cluster"
	"github.com/autonomyops/orchestrator/node/snapshot"
	"github.com/autonomyops/orchestrator/walrepl"
	"github.com/sirupsen/logrus"
)

var _ api.Snapshotter = (*Node)(nil)

// errSnapshotHoldsTrim defers a trim while a snapshot is being streamed.
var errSnapshotHoldsTrim = errors.New("node: a snapshot is being streamed; retention waits for it to end")

// trimGate keeps retention from trimming frames a snapshot still has to
// read. Retention checks it and trims under its lock (trim), so once hold
// has returned no trim is running and none starts until release.
type trimGate struct {
	mu    sync.Mutex
	holds int
}

// hold stops trims until the returned release is called (once).
func (g *trimGate) hold() (release func()) {
	g.mu.Lock()
	g.holds++
	g.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			g.holds--
			g.mu.Unlock()
		})
	}
}

// beforeTrim is the WAL's Retention.BeforeTrim: unless a snapshot holds the
// gate, it checkpoints and then trims, both under the gate's lock. The
// retention loop's own TrimTo that follows finds nothing left to trim below
// newBase and does nothing. Trimming here, not there, is what closes the
// window between a check and a trim in which a snapshot could start. (If
// TrimTo here was clamped below newBase by safe_seq, the loop's call may
// still trim a little more, outside the lock: a snapshot that starts in that
// instant then meets ErrBelowBase and its stream is cut; the client refuses
// it and writes no file. Never a wrong snapshot, at worst a retry.)
func (n *Node) beforeTrim(newBase uint64) error {
	g := &n.trims
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.holds > 0 {
		return errSnapshotHoldsTrim
	}
	if err := n.writeCheckpoint(newBase); err != nil {
		return err
	}
	if _, err := n.wal.TrimTo(newBase); err != nil {
		return fmt.Errorf("node: trimming to %d: %w", newBase, err)
	}
	return nil
}

// snapshotReadBytes bounds one read of frames while streaming a snapshot.
const snapshotReadBytes = 4 << 20

// Snapshot implements api.Snapshotter: it streams a snapshot of the
// committed telemetry up to the safe_seq it reads, with the etcd state and
// the fleet/idempotency checkpoint (package node/snapshot).
//
// Order, and why it is consistent: retention is held first, so the frames
// from the base on stay readable to the end. The checkpoint is built next
// (the fleet summary covers up to the safe_seq it read then); safe_seq is
// read after it, so the checkpoint never claims a frame the snapshot lacks.
// Frames at or below safe_seq are committed and never change, whoever leads
// while they are read. The etcd keys are read at one revision; they are not
// atomic with the frames (two systems), only close to them in time.
func (n *Node) Snapshot(ctx context.Context, who string, start func() io.Writer) error {
	if !n.Serving() {
		return fmt.Errorf("%w: a snapshot is streamed by the leader that can commit", walrepl.ErrNotLeader)
	}
	release := n.trims.hold()
	defer release()
	cp, err := n.buildCheckpoint()
	if err != nil {
		return fmt.Errorf("node: building the checkpoint: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	img, err := n.member.ReadImage(rctx)
	cancel()
	if err != nil {
		return err
	}
	rs := n.replica.Status()
	base, prevEpoch := n.wal.Base()
	safe := n.wal.SafeSeq()
	if safe+1 < base {
		return fmt.Errorf("node: the WAL's base %d is above safe_seq %d", base, safe)
	}
	cpb, err := cp.upToSeq(safe).encode()
	if err != nil {
		return err
	}
	h := snapshot.Header{ClusterName: n.cfg.ClusterName, Node: n.cfg.Name, NodeVersion: Version, TakenAt: time.Now().UTC(),
		SafeSeq: safe, FirstSeq: base, PrevEpoch: prevEpoch, LeaderEpoch: rs.Epoch, WALID: walrepl.IDString(n.wal.ID())}
	if base > 1 && prevEpoch == 0 {
		return fmt.Errorf("node: the WAL's base is %d but the epoch before it is unknown", base)
	}
	// Read the first frames before answering, so that a read error is still
	// an error answer rather than a cut stream.
	var first []walrepl.Frame
	if base <= safe {
		if first, err = n.readCommitted(ctx, base, safe); err != nil {
			return err
		}
	}
	sw, err := snapshot.NewWriter(start(), h, etcdState(img), cpb)
	if err != nil {
		return err
	}
	log := n.log.WithFields(logrus.Fields{"who": who, "safe_seq": safe, "first_seq": base, "etcd_revision": img.Revision})
	log.Info("SNAPSHOT_STARTED")
	began := time.Now()
	next := base
	for batch := first; ; {
		if err := sw.WriteFrames(batch); err != nil {
			log.WithError(err).Warn("SNAPSHOT_FAILED")
			return err
		}
		if len(batch) > 0 {
			next = batch[len(batch)-1].Seq + 1
		}
		if next > safe {
			break
		}
		if err := ctx.Err(); err != nil {
			log.WithError(err).Warn("SNAPSHOT_FAILED: the client went away")
			return err
		}
		if batch, err = n.readCommitted(ctx, next, safe); err != nil {
			log.WithError(err).Warn("SNAPSHOT_FAILED")
			return err
		}
	}
	if err := sw.Close(); err != nil {
		log.WithError(err).Warn("SNAPSHOT_FAILED")
		return err
	}
	log.WithFields(logrus.Fields{"frames": safe + 1 - base, "duration_ms": time.Since(began).Milliseconds()}).Info("SNAPSHOT_STREAMED")
	actx, acancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	n.audit(actx, "snapshot_save", who, map[string]any{"safe_seq": safe, "first_seq": base, "etcd_revision": img.Revision})
	acancel()
	return nil
}

// readCommitted reads frames from Seq from, at most up to safe (committed).
// A committed frame may not be written on the leader yet (two followers
// fsynced it first): then it waits for this WAL to write it.
func (n *Node) readCommitted(ctx context.Context, from, safe uint64) ([]walrepl.Frame, error) {
	frames, err := n.wal.ReadFrames(from, safe, 4096, snapshotReadBytes)
	if err != nil || len(frames) > 0 {
		return frames, err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = n.wal.WaitDurable(wctx, from)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("node: committed frame Seq=%d is not in this WAL: %w", from, err)
	}
	frames, err = n.wal.ReadFrames(from, safe, 4096, snapshotReadBytes)
	if err == nil && len(frames) == 0 {
		err = fmt.Errorf("node: committed frame Seq=%d cannot be read", from)
	}
	return frames, err
}

func etcdState(img cluster.Image) snapshot.EtcdState {
	conv := func(in []cluster.KV) []snapshot.KV {
		out := make([]snapshot.KV, 0, len(in))
		for _, kv := range in {
			out = append(out, snapshot.KV{Key: kv.Key, Value: kv.Value})
		}
		return out
	}
	return snapshot.EtcdState{Revision: img.Revision, Settings: conv(img.Settings), Audit: conv(img.Audit),
		Members: conv(img.Members), WALPos: conv(img.WALPos)}
}
