package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/autonomyops/orchestrator/api"
	"github.com/autonomyops/orchestrator/cluster"
	"github.com/autonomyops/orchestrator/node/snapshot"
	"github.com/autonomyops/orchestrator/walrepl"
	"github.com/sirupsen/logrus"
)

// restoreMarker is the cluster's record that it was seeded from a snapshot
// (cluster.RestoreImage.Marker).
type restoreMarker struct {
	SHA256     string    `json:"sha256"`
	From       string    `json:"from_cluster"`
	TakenAt    time.Time `json:"taken_at"`
	SafeSeq    uint64    `json:"safe_seq"`
	EpochBase  uint64    `json:"epoch_base"`
	AppliedBy  string    `json:"applied_by"`
	AppliedAt  time.Time `json:"applied_at"`
	RestoredAt time.Time `json:"restored_at"`
}

// applyRestoreSeed runs at every start, once etcd is up and before the node
// reads any epoch. When `autonomyctl snapshot restore` left a seed in the
// data dir, it loads the seed's settings and audit trail into etcd (once for
// the whole cluster: every restored node holds the same seed, the first to
// get there writes it) and the epoch base, then deletes the seed. In every
// case it loads the cluster's epoch base into the member.
func (n *Node) applyRestoreSeed(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	seed, ok, err := snapshot.ReadSeed(n.cfg.DataDir)
	if err != nil {
		return err
	}
	if ok {
		conv := func(in []snapshot.KV) []cluster.KV {
			out := make([]cluster.KV, 0, len(in))
			for _, kv := range in {
				out = append(out, cluster.KV{Key: kv.Key, Value: kv.Value})
			}
			return out
		}
		now := time.Now().UTC()
		h := seed.Snapshot
		marker, _ := json.Marshal(restoreMarker{SHA256: seed.SHA256, From: h.ClusterName, TakenAt: h.TakenAt, SafeSeq: h.SafeSeq,
			EpochBase: seed.EpochBase, AppliedBy: n.cfg.Name, AppliedAt: now, RestoredAt: seed.RestoredAt})
		rec, _ := json.Marshal(api.AuditRecord{At: now, Who: "operator", Action: "snapshot_restore", Node: n.cfg.Name,
			Details: map[string]any{"sha256": seed.SHA256, "from_cluster": h.ClusterName, "taken_at": h.TakenAt,
				"safe_seq": h.SafeSeq, "first_seq": h.FirstSeq, "settings": len(seed.Settings), "audit_records": len(seed.Audit)}})
		img := cluster.RestoreImage{Settings: conv(seed.Settings), Audit: conv(seed.Audit), EpochBase: seed.EpochBase, Marker: marker,
			Record: &cluster.KV{Key: fmt.Sprintf("audit/%020d-%s", now.UnixNano(), n.cfg.Name), Value: rec}}
		var applied bool
		err := retryEtcd(ctx, func() (err error) { applied, err = n.member.ApplyRestore(ctx, img); return err })
		if err != nil {
			return fmt.Errorf("node: loading the snapshot's etcd state from %s: %w", snapshot.SeedFile, err)
		}
		f := n.log.WithFields(logrus.Fields{"sha256": seed.SHA256, "safe_seq": h.SafeSeq, "settings": len(seed.Settings),
			"audit_records": len(seed.Audit), "epoch_base": seed.EpochBase})
		if applied {
			f.Warn("SNAPSHOT_RESTORE_APPLIED: this cluster's settings and audit trail were loaded from a snapshot")
		} else {
			f.Info("SNAPSHOT_RESTORE_ALREADY_APPLIED: another node loaded the snapshot's etcd state")
		}
	}
	var base uint64
	if err := retryEtcd(ctx, func() (err error) { base, err = n.member.LoadEpochBase(ctx); return err }); err != nil {
		return err
	}
	if ok {
		if last, lastEpoch, _, _ := n.wal.Positions(); base < lastEpoch {
			// The seed's base is the snapshot's leader epoch, which no restored
			// frame exceeds; a lower base means this etcd holds another
			// restore's marker (a data dir restored into the wrong cluster).
			return fmt.Errorf("node: this cluster's epoch base %d is below the epoch %d of this node's frame Seq=%d: "+
				"the cluster was restored from another snapshot; restore every node's data dir from the same file", base, lastEpoch, last)
		}
		path := filepath.Join(n.cfg.DataDir, snapshot.SeedFile)
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("node: removing %s after loading it: %w", path, err)
		}
		walrepl.SyncDir(n.cfg.DataDir)
	}
	return nil
}

// lacksRestoredFrames reports whether this cluster was seeded from a
// snapshot whose committed frames this node's WAL does not reach: a node
// started with an empty data directory in a restored cluster, instead of a
// restored one. Such a WAL must join as a learner (DESIGN §6 rule 7): as a
// voter, it and another could form a majority that lacks the restored
// history. When the cluster is restored it also reloads the epoch base: the
// marker and the base are written in one transaction, so a node without a
// seed that read the base before a restored node wrote it (they started
// together) gets it now.
func (n *Node) lacksRestoredFrames(ctx context.Context) (bool, uint64, error) {
	var raw []byte
	var ok bool
	err := retryEtcd(ctx, func() (err error) { raw, ok, err = n.member.RestoreMarker(ctx); return err })
	if err != nil || !ok {
		return false, 0, err
	}
	if err := retryEtcd(ctx, func() error { _, err := n.member.LoadEpochBase(ctx); return err }); err != nil {
		return false, 0, err
	}
	var m restoreMarker
	if err := json.Unmarshal(raw, &m); err != nil {
		return false, 0, fmt.Errorf("node: the cluster's restore marker is not valid JSON: %v", err)
	}
	last, _, _, _ := n.wal.Positions()
	return last < m.SafeSeq, m.SafeSeq, nil
}

// retryEtcd calls fn until it succeeds or ctx ends: right after a start,
// etcd may answer "leader changed" while its members settle. fn must be
// idempotent.
func retryEtcd(ctx context.Context, fn func() error) error {
	for {
		err := fn()
		if err == nil || errors.Is(err, cluster.ErrRestoreKey) {
			return err
		}
		if ctx.Err() != nil {
			return err
		}
		walrepl.Sleep(ctx, 200*time.Millisecond)
	}
}

// peersRegisteredWait bounds how long a node with an empty WAL waits at
// start for the other members to register (waitPeersRegistered).
const peersRegisteredWait = 5 * time.Second

// waitPeersRegistered waits, for at most d, until every other etcd member has
// registered under members/. A node restored from a snapshot seeds the
// cluster's restore marker before it registers, so a node with an empty WAL
// started at the same moment sees the marker once its peers are registered
// and joins as a learner (WAL_BELOW_RESTORED_SNAPSHOT) instead of a voter that
// lacks the restored history. In a new cluster whose members all start empty
// this costs nothing when all start, and d when one does not.
func (n *Node) waitPeersRegistered(ctx context.Context, d time.Duration) {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for wctx.Err() == nil {
		ms, err := n.member.Members(wctx)
		infos, ierr := n.member.NodeInfos(wctx)
		if err == nil && ierr == nil {
			all := true
			for _, m := range ms {
				if m.Name == n.cfg.Name {
					continue
				}
				if _, ok := infos[m.Name]; !ok || m.Name == "" {
					all = false
				}
			}
			if all {
				return
			}
		}
		walrepl.Sleep(wctx, 100*time.Millisecond)
	}
	n.log.Info("PEERS_NOT_REGISTERED: not every member registered within the start-up wait; going on")
}
