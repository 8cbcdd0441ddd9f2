package datadir

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/autonomyops/orchestrator/walrepl"
)

// Names inside a data directory (DESIGN §3).
const (
	// LockFile is flocked by the running node, and by `wal reset` while it
	// works.
	LockFile = "LOCK"
	// IdentityFile is node.json, written once when the node is
	// initialised; its presence means the node was.
	IdentityFile = "node.json"
	// TelemetryDir holds the WAL and its state files.
	TelemetryDir = "telemetry"
	// EtcdDir is the embedded etcd member's data.
	EtcdDir = "etcd"
	// CheckpointFile, in the telemetry directory, keeps the fleet summary
	// and the idempotency ids that outlive frames retention trims (issue 8).
	CheckpointFile = "telemetry.checkpoint"
	// BackupPrefix names the copies `wal reset` moves the telemetry
	// directory to: telemetry.corrupt-YYYYMMDD (local date, as the
	// runbook's `date +%Y%m%d`), then .2, .3, ... the same day.
	BackupPrefix = TelemetryDir + ".corrupt-"
)

// Identity is node.json.
type Identity struct {
	ClusterName string    `json:"cluster_name"`
	Name        string    `json:"name"`
	CreatedAt   time.Time `json:"created_at"`
}

// ReadIdentity reads dir's node.json. ok is false, with no error, when the
// file does not exist (the node was never initialised).
func ReadIdentity(dir string) (id Identity, ok bool, err error) {
	path := filepath.Join(dir, IdentityFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Identity{}, false, nil
	}
	if err != nil {
		return Identity{}, false, fmt.Errorf("datadir: reading %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &id); err != nil {
		return Identity{}, true, fmt.Errorf("datadir: %s is not valid JSON: %v", path, err)
	}
	return id, true, nil
}

// WriteIdentity writes dir's node.json crash-safely (tmp, fsync, rename,
// directory fsync).
func WriteIdentity(dir string, id Identity) error {
	b, _ := json.MarshalIndent(id, "", "  ")
	return walrepl.WriteFileAtomic(filepath.Join(dir, IdentityFile), append(b, '\n'), 0o600)
}
