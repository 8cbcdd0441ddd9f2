package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/autonomyops/orchestrator/walrepl"
)

// File names in the data directory (DESIGN §3).
const (
	LockFile     = "LOCK"
	IdentityFile = "node.json"
	TelemetryDir = "telemetry"
	EtcdDir      = "etcd"
)

// ErrLocked means another process holds the data directory.
var ErrLocked = errors.New("node: data directory is locked by another process")

// DirLock is the flock held on <data-dir>/LOCK while the node runs.
type DirLock struct{ f *os.File }

// LockDataDir takes an exclusive, non-blocking flock on <dir>/LOCK and
// writes this process's pid into it. The kernel drops the lock when the
// process dies, however it dies.
func LockDataDir(dir string) (*DirLock, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("node: opening %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		holder := strings.TrimSpace(string(b))
		if holder == "" {
			holder = "unknown"
		}
		return nil, fmt.Errorf("%w: %s is held by pid %s; stop that autonomy-orchestrator first or use another --data-dir", ErrLocked, path, holder)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &DirLock{f: f}, nil
}

// Unlock releases the lock. Safe to call once; the file stays.
func (l *DirLock) Unlock() error { return l.f.Close() }

// Identity is node.json, written once when the node is initialised.
type Identity struct {
	ClusterName string    `json:"cluster_name"`
	Name        string    `json:"name"`
	CreatedAt   time.Time `json:"created_at"`
}

func identityExists(dir string) (bool, error) {
	_, err := os.Stat(filepath.Join(dir, IdentityFile))
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, err
}

// checkIdentity refuses to run a data dir initialised for another node name
// or cluster.
func checkIdentity(dir, name, cluster string) error {
	b, err := os.ReadFile(filepath.Join(dir, IdentityFile))
	if err != nil {
		return fmt.Errorf("node: reading %s: %w", IdentityFile, err)
	}
	var id Identity
	if err := json.Unmarshal(b, &id); err != nil {
		return fmt.Errorf("node: %s is not valid JSON: %v", filepath.Join(dir, IdentityFile), err)
	}
	if id.Name != name || id.ClusterName != cluster {
		return fmt.Errorf("node: %s belongs to node %q of cluster %q, but this is --name=%q --cluster-name=%q; use that node's own --data-dir",
			dir, id.Name, id.ClusterName, name, cluster)
	}
	return nil
}

func writeIdentity(dir, name, cluster string) error {
	b, _ := json.MarshalIndent(Identity{ClusterName: cluster, Name: name, CreatedAt: time.Now().UTC()}, "", "  ")
	return walrepl.WriteFileAtomic(filepath.Join(dir, IdentityFile), append(b, '\n'), 0o600)
}
