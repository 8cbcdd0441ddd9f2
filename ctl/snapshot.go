package ctl

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/autonomyops/orchestrator/node/snapshot"
	"github.com/autonomyops/orchestrator/walrepl"
	"github.com/spf13/cobra"
)

// The snapshot group: save is online (the leader streams it), status and
// restore are offline. The file format is package node/snapshot
// (docs/snapshot-format.md); restore is in snapshot_restore.go.

// snapshotIdle bounds how long `snapshot save` waits for the next byte of
// the stream once it has begun.
const snapshotIdle = time.Minute

func (in *invocation) snapshotCmd() *cobra.Command {
	cmd := groupCommand("snapshot", "Online backup: save a snapshot, verify it, restore it into a new cluster")
	cmd.AddCommand(in.snapshotSaveCmd(), in.snapshotStatusCmd(), in.snapshotRestoreCmd())
	return cmd
}

// snapshotInfo is what `snapshot status -o json` (and `save -o json`)
// prints. Every field is always present.
type snapshotInfo struct {
	OK            bool      `json:"ok"`
	File          string    `json:"file"`
	Error         string    `json:"error"` // what is wrong, "" when ok
	Kind          string    `json:"kind"`  // corrupt, truncated, version, io; "" when ok
	FormatVersion uint32    `json:"format_version"`
	ClusterName   string    `json:"cluster_name"`
	Node          string    `json:"node"` // the leader that streamed it
	NodeVersion   string    `json:"node_version"`
	TakenAt       time.Time `json:"taken_at"`
	SafeSeq       uint64    `json:"safe_seq"`
	FirstSeq      uint64    `json:"first_seq"` // 0 when it holds no frame
	LastSeq       uint64    `json:"last_seq"`
	Frames        uint64    `json:"frames"`
	Events        uint64    `json:"events"`
	LeaderEpoch   uint64    `json:"leader_epoch"`
	WALID         string    `json:"wal_id"` // the streaming leader's WAL id
	EtcdRevision  int64     `json:"etcd_revision"`
	Settings      int       `json:"settings"`
	AuditRecords  int       `json:"audit_records"`
	Members       int       `json:"members"`
	WALPositions  int       `json:"wal_positions"`
	Checkpoint    bool      `json:"checkpoint"`
	Size          int64     `json:"size"`
	SHA256        string    `json:"sha256"`
}

func infoOf(file string, s *snapshot.Summary) snapshotInfo {
	h := s.Header
	return snapshotInfo{OK: true, File: file, FormatVersion: h.FormatVersion, ClusterName: h.ClusterName, Node: h.Node,
		NodeVersion: h.NodeVersion, TakenAt: h.TakenAt, SafeSeq: h.SafeSeq, FirstSeq: s.FirstSeq, LastSeq: s.LastSeq,
		Frames: s.Frames, Events: s.Events, LeaderEpoch: h.LeaderEpoch, WALID: h.WALID, EtcdRevision: s.Etcd.Revision,
		Settings: len(s.Etcd.Settings), AuditRecords: len(s.Etcd.Audit), Members: len(s.Etcd.Members),
		WALPositions: len(s.Etcd.WALPos), Checkpoint: string(s.Checkpoint) != "null", Size: s.Size, SHA256: s.SHA256}
}

func snapshotTable(w *tabw, si snapshotInfo) {
	fmt.Fprintf(w, "FILE\t%s\n", si.File)
	fmt.Fprintf(w, "FORMAT\tversion %d\n", si.FormatVersion)
	fmt.Fprintf(w, "CLUSTER\t%s\n", si.ClusterName)
	fmt.Fprintf(w, "TAKEN\t%s\tfrom %s (%s)\n", si.TakenAt.Format(time.RFC3339), si.Node, dash(si.NodeVersion))
	fmt.Fprintf(w, "SAFE_SEQ\t%d\tleader epoch %d, WAL %s\n", si.SafeSeq, si.LeaderEpoch, dash(si.WALID))
	if si.Frames == 0 {
		fmt.Fprintf(w, "FRAMES\t0\n")
	} else {
		fmt.Fprintf(w, "FRAMES\t%d\tSeq %d..%d (%d events)\n", si.Frames, si.FirstSeq, si.LastSeq, si.Events)
	}
	fmt.Fprintf(w, "ETCD\trevision %d\t%d settings, %d audit records, %d members, %d WAL positions\n",
		si.EtcdRevision, si.Settings, si.AuditRecords, si.Members, si.WALPositions)
	fmt.Fprintf(w, "CHECKPOINT\t%v\n", si.Checkpoint)
	fmt.Fprintf(w, "SIZE\t%d bytes\n", si.Size)
	fmt.Fprintf(w, "SHA256\t%s\tverified\n", si.SHA256)
}

// badSnapshotError is a snapshot that cannot be used: what is wrong, and
// (as a hint) what to do. Its exit status is ExitBadSnapshot.
type badSnapshotError struct {
	msg  string
	todo string
	err  *snapshot.FormatError
}

func (e *badSnapshotError) Error() string { return e.msg }
func (e *badSnapshotError) Unwrap() error { return e.err }

// badSnapshot explains err, when it is a format error, as a
// badSnapshotError; after is appended to the message.
func badSnapshot(file string, err error, after string) error {
	var fe *snapshot.FormatError
	if !errors.As(err, &fe) {
		return err
	}
	todo := hintSnapshotDamaged
	switch fe.Kind {
	case snapshot.KindTruncated:
		todo = hintSnapshotIncomplete
	case snapshot.KindVersion:
		todo = hintSnapshotVersion
	}
	return &badSnapshotError{msg: fmt.Sprintf("snapshot %s is not usable: %s%s", file, strings.TrimPrefix(err.Error(), "snapshot: "), after), todo: todo, err: fe}
}

func (in *invocation) snapshotStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status FILE",
		Short: "Verify a snapshot file and describe it",
		Long: "Reads FILE whole and verifies it: the format version, every record's structure, every frame's CRC, that the\n" +
			"frames' Seqs run without a gap up to the stated safe_seq, and the SHA-256 in its trailer. Then describes it:\n" +
			"cluster, when and from which leader it was taken, safe_seq, frames, the etcd state it holds, size and checksum.\n" +
			"Exits 0 when the file is sound, 8 when it is not (corrupt, truncated or of another format version), 1 when\n" +
			"it cannot be read.",
		Example: "  autonomyctl snapshot status /backup/autonomy-2026-12-05.snap\n  autonomyctl snapshot status -o json FILE",
		Args:    usageArgs(cobra.ExactArgs(1)),
		RunE: func(_ *cobra.Command, args []string) error {
			return in.snapshotStatus(args[0])
		},
	}
}

func (in *invocation) snapshotStatus(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("snapshot status: %w", err)
	}
	defer f.Close()
	sum, err := snapshot.Scan(f, nil)
	if err != nil {
		var fe *snapshot.FormatError
		if errors.As(err, &fe) && in.jsonOutput() {
			in.printJSON(snapshotInfo{File: file, Error: err.Error(), Kind: fe.Kind})
			return &errSilent{code: ExitBadSnapshot}
		}
		return badSnapshot(file, err, "")
	}
	si := infoOf(file, sum)
	return in.emit(si, func(w *tabw) { snapshotTable(w, si) })
}

func (in *invocation) snapshotSaveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "save FILE",
		Short: "Stream a snapshot of the cluster from the leader into FILE (admin role)",
		Long: "Asks the leader (GET /v1/snapshot; needs the admin role) for a consistent image of the committed telemetry up\n" +
			"to the safe_seq it reads when the request arrives, the etcd state the cluster needs (settings, audit trail,\n" +
			"member registry, WAL position records, read at one etcd revision) and the fleet/idempotency checkpoint. The\n" +
			"cluster keeps serving; retention waits while the snapshot streams. The stream is verified as it arrives\n" +
			"(structure, every frame's CRC, Seq contiguity, the trailer's SHA-256) and written to FILE.tmp, fsynced, and\n" +
			"renamed to FILE only when whole: a failed save leaves no FILE (and an existing FILE as it was).",
		Example: "  autonomyctl snapshot save /backup/autonomy-$(date +%Y%m%d).snap\n  AUTONOMY_TOKEN=... autonomyctl --endpoints http://n1:8888,http://n2:8888 snapshot save FILE",
		Args:    usageArgs(cobra.ExactArgs(1)),
		RunE: func(_ *cobra.Command, args []string) error {
			return in.snapshotSave(args[0])
		},
	}
}

func (in *invocation) snapshotSave(file string) (err error) {
	if st, serr := os.Stat(file); serr == nil && st.IsDir() {
		return usagef("%s is a directory; give the snapshot's file name", file)
	}
	c, err := in.apiClient()
	if err != nil {
		return err
	}
	stream, err := c.Snapshot(in.ctx, snapshotIdle)
	if err != nil {
		return err
	}
	defer stream.Close()
	tmp := file + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("snapshot save: %w", err)
	}
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()
	sum, err := snapshot.Scan(io.TeeReader(stream, f), nil)
	if err != nil {
		var fe *snapshot.FormatError
		if errors.As(err, &fe) {
			return fmt.Errorf("snapshot save: the stream from %s is not a whole snapshot (%v); nothing was saved: retry", stream.URL, err)
		}
		return fmt.Errorf("snapshot save: reading the stream from %s: %w; nothing was saved: retry", stream.URL, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("snapshot save: fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("snapshot save: %w", err)
	}
	if err := os.Rename(tmp, file); err != nil {
		os.Remove(tmp)
		done = true
		return fmt.Errorf("snapshot save: %w", err)
	}
	done = true
	if err := walrepl.SyncDir(filepath.Dir(file)); err != nil {
		return fmt.Errorf("snapshot save: fsync the directory of %s: %w", file, err)
	}
	si := infoOf(file, sum)
	return in.emit(si, func(w *tabw) {
		fmt.Fprintf(w, "Snapshot saved to %s from %s.\n", file, baseURL(stream.URL))
		snapshotTable(w, si)
	})
}
