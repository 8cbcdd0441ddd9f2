package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/autonomyops/orchestrator/node/datadir"
	"github.com/autonomyops/orchestrator/node/snapshot"
	"github.com/autonomyops/orchestrator/walrepl"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
)

// restoreResult is what `snapshot restore -o json` prints.
type restoreResult struct {
	DataDir     string       `json:"data_dir"`
	Name        string       `json:"name"`
	ClusterName string       `json:"cluster_name"`
	SafeSeq     uint64       `json:"safe_seq"`
	EpochBase   uint64       `json:"epoch_base"`
	Snapshot    snapshotInfo `json:"snapshot"`
}

func (in *invocation) snapshotRestoreCmd() *cobra.Command {
	var dataDir, name, clusterName string
	cmd := &cobra.Command{
		Use:   "restore FILE --data-dir DIR --name NODE [--cluster-name NAME]",
		Short: "Seed the data directory of a node of a new cluster from a snapshot (offline)",
		Long: "Seeds DIR, which must be empty or absent, for the node NODE of a new cluster, as `etcdctl snapshot restore`\n" +
			"does: run it once per node, each with its own --data-dir and --name, from the same FILE. Then start every\n" +
			"node with the usual serve flags (--initial-cluster for three nodes, none for one).\n\n" +
			"FILE is verified whole first; a corrupt, truncated or unknown-version snapshot is refused (exit 8) and\n" +
			"nothing is written. The data directory is built beside DIR and renamed into place only when complete:\n" +
			"  telemetry/   the WAL holding the snapshot's frames with their Seqs, epochs and timestamps, safe_seq =\n" +
			"               the snapshot's, and the fleet/idempotency checkpoint;\n" +
			"  node.json    the node's identity (NODE, the cluster name);\n" +
			"  restore.json the settings and audit trail; at its first start the node loads them into the new\n" +
			"               cluster's etcd (once for the cluster) and numbers epochs above the snapshot's.\n" +
			"The old cluster's member registry and WAL position records are not restored: the new nodes register\n" +
			"themselves (docs/decisions.md).",
		Example: "  sudo -u autonomy autonomyctl snapshot restore /backup/a.snap --data-dir /var/lib/autonomy --name n1\n" +
			"  # on n2 and n3 the same, with --name n2 and --name n3; then start all three",
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(_ *cobra.Command, args []string) error {
			return in.snapshotRestore(args[0], dataDir, name, clusterName)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the new node's data directory (required; empty or absent)")
	cmd.Flags().StringVar(&name, "name", "", "the new node's --name (required)")
	cmd.Flags().StringVar(&clusterName, "cluster-name", "", "the new cluster's --cluster-name (default: the snapshot's)")
	_ = cmd.MarkFlagDirname("data-dir")
	return cmd
}

// checkRestoreTarget refuses a data dir that holds anything. exists says
// whether it is there (empty).
func checkRestoreTarget(dataDir string) (exists bool, err error) {
	st, err := os.Stat(dataDir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !st.IsDir() {
		return false, fmt.Errorf("refusing to restore: %s is not a directory", dataDir)
	}
	ents, err := os.ReadDir(dataDir)
	if err != nil {
		return false, err
	}
	if len(ents) > 0 {
		var names []string
		for i, e := range ents {
			if i == 5 {
				names = append(names, "...")
				break
			}
			names = append(names, e.Name())
		}
		return true, &exitError{code: ExitError, err: fmt.Errorf("refusing to restore into %s: it is not empty (%s); "+
			"a restore seeds a new node only: give an empty or absent --data-dir (move this one aside if it is an old node's)",
			dataDir, strings.Join(names, ", "))}
	}
	return true, nil
}

func (in *invocation) snapshotRestore(file, dataDir, name, clusterName string) error {
	switch {
	case dataDir == "":
		return usagef("--data-dir is required: the new node's data directory (empty or absent)")
	case name == "":
		return usagef("--name is required: the new node's name, as it will be started (--name)")
	case strings.ContainsAny(clusterName, "/ "):
		return usagef("--cluster-name=%q must not contain '/' or spaces", clusterName)
	}
	dataDir = filepath.Clean(dataDir)
	exists, err := checkRestoreTarget(dataDir)
	if err != nil {
		return err
	}
	// Pass 1: the whole file is verified before anything is written.
	sum, err := scanFile(file, nil)
	if err != nil {
		return badSnapshot(file, err, "; nothing was written to "+dataDir)
	}
	h := sum.Header
	if clusterName == "" {
		clusterName = h.ClusterName
	}

	parent := filepath.Dir(dataDir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("snapshot restore: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dataDir)+".restore-*")
	if err != nil {
		return fmt.Errorf("snapshot restore: %w", err)
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o700); err != nil {
		return err
	}
	if err := restoreWAL(in.ctx, file, filepath.Join(tmp, datadir.TelemetryDir), sum); err != nil {
		return badSnapshot(file, err, "; nothing was written to "+dataDir)
	}
	if string(sum.Checkpoint) != "null" {
		if err := walrepl.WriteFileAtomic(filepath.Join(tmp, datadir.TelemetryDir, datadir.CheckpointFile), sum.Checkpoint, 0o600); err != nil {
			return fmt.Errorf("snapshot restore: writing the checkpoint: %w", err)
		}
	}
	seed := snapshot.Seed{Snapshot: h, SHA256: sum.SHA256, RestoredAt: in.cli.now().UTC(), EpochBase: h.LeaderEpoch,
		Settings: sum.Etcd.Settings, Audit: sum.Etcd.Audit}
	sb, err := json.MarshalIndent(seed, "", "  ")
	if err != nil {
		return err
	}
	if err := walrepl.WriteFileAtomic(filepath.Join(tmp, snapshot.SeedFile), append(sb, '\n'), 0o600); err != nil {
		return fmt.Errorf("snapshot restore: writing %s: %w", snapshot.SeedFile, err)
	}
	if err := datadir.WriteIdentity(tmp, datadir.Identity{ClusterName: clusterName, Name: name, CreatedAt: in.cli.now().UTC()}); err != nil {
		return fmt.Errorf("snapshot restore: writing %s: %w", datadir.IdentityFile, err)
	}
	// The node runs as the owner of where its data lives (e.g. autonomy).
	ref := parent
	if exists {
		ref = dataDir
	}
	if err := chownTree(tmp, ref); err != nil {
		return fmt.Errorf("snapshot restore: giving the files the owner of %s: %w", ref, err)
	}
	if exists {
		if err := os.Remove(dataDir); err != nil { // empty: checked above
			return fmt.Errorf("snapshot restore: %w", err)
		}
	}
	if err := os.Rename(tmp, dataDir); err != nil {
		return fmt.Errorf("snapshot restore: moving the restored data into %s: %w", dataDir, err)
	}
	done = true
	if err := walrepl.SyncDir(parent); err != nil {
		return fmt.Errorf("snapshot restore: fsync %s: %w", parent, err)
	}
	res := restoreResult{DataDir: dataDir, Name: name, ClusterName: clusterName, SafeSeq: h.SafeSeq, EpochBase: h.LeaderEpoch,
		Snapshot: infoOf(file, sum)}
	return in.emit(res, func(w *tabw) {
		fmt.Fprintf(w, "Restored %s into %s for node %s of cluster %s:\n", file, dataDir, name, clusterName)
		if sum.Frames > 0 {
			fmt.Fprintf(w, "  telemetry\t%d frames, Seq %d..%d, safe_seq %d\n", sum.Frames, sum.FirstSeq, sum.LastSeq, h.SafeSeq)
		} else {
			fmt.Fprintf(w, "  telemetry\tno frames, safe_seq %d\n", h.SafeSeq)
		}
		fmt.Fprintf(w, "  etcd state\t%d settings, %d audit records (loaded into etcd at the first start)\n", len(sum.Etcd.Settings), len(sum.Etcd.Audit))
		w.Flush()
		fmt.Fprintln(w, "Next: restore every other node of the new cluster from the same file (its own --data-dir and --name),")
		fmt.Fprintln(w, "then start them all with their usual serve flags. Do not start a node of the new cluster from an empty")
		fmt.Fprintln(w, "data directory: every node must hold the restored telemetry.")
	})
}

func scanFile(file string, visit snapshot.FrameFunc) (*snapshot.Summary, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("snapshot restore: %w", err)
	}
	defer f.Close()
	return snapshot.Scan(f, visit)
}

// restoreWAL creates a WAL in tdir through walrepl's own API and fills it
// with the snapshot's frames (pass 2: the file is read and verified again
// as it is written), then sets safe_seq to the snapshot's and checks the
// result with the same recovery checks a start runs.
func restoreWAL(ctx context.Context, file, tdir string, sum *snapshot.Summary) error {
	h := sum.Header
	opts := walrepl.DefaultOptions(tdir)
	log := logrus.New()
	log.SetOutput(io.Discard)
	opts.Logger = log
	w, _, err := walrepl.Open(opts)
	if err != nil {
		return fmt.Errorf("snapshot restore: creating the WAL: %w", err)
	}
	defer w.Close()
	if h.FirstSeq > 1 {
		// The snapshot's telemetry begins where the leader's retention had
		// trimmed it: the WAL starts at that base, as a rebased one does.
		if err := w.Rebase(h.FirstSeq, h.PrevEpoch); err != nil {
			return fmt.Errorf("snapshot restore: starting the WAL at Seq %d: %w", h.FirstSeq, err)
		}
	}
	again, err := scanFile(file, func(frames []walrepl.Frame) error {
		own := make([]walrepl.Frame, len(frames))
		for i, f := range frames {
			f.Payload = append([]byte(nil), f.Payload...)
			own[i] = f
		}
		if err := w.AppendFrames(own); err != nil {
			return fmt.Errorf("snapshot restore: writing frames Seq %d..%d: %w", own[0].Seq, own[len(own)-1].Seq, err)
		}
		// One fsync a record (about 1 MiB): bounded memory, bounded cost.
		return w.WaitDurable(ctx, own[len(own)-1].Seq)
	})
	if err != nil {
		return err
	}
	if again.SHA256 != sum.SHA256 {
		return fmt.Errorf("snapshot restore: %s changed while it was being restored", file)
	}
	w.SetSafeSeq(h.SafeSeq)
	if err := w.Close(); err != nil {
		return fmt.Errorf("snapshot restore: closing the WAL: %w", err)
	}
	rep, err := walrepl.Verify(tdir, true, 0)
	if err != nil {
		return fmt.Errorf("snapshot restore: the restored WAL fails its checks: %w", err)
	}
	if rep.SafeSeq != h.SafeSeq || (sum.Frames > 0 && (rep.LastSeq != h.SafeSeq || rep.FirstSeq != h.FirstSeq)) {
		return fmt.Errorf("snapshot restore: the restored WAL holds Seq %d..%d with safe_seq %d, not %d..%d with safe_seq %d",
			rep.FirstSeq, rep.LastSeq, rep.SafeSeq, h.FirstSeq, h.SafeSeq, h.SafeSeq)
	}
	return nil
}

// chownTree gives every file under root the owner of ref (when run as root).
func chownTree(root, ref string) error {
	return filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return datadir.ChownLike(p, ref)
	})
}
