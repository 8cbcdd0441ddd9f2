package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// SeedFile is left by `autonomyctl snapshot restore` in a new node's data
// directory. At its first start the node loads the seed's etcd state into
// the new cluster (once for the whole cluster), numbers its epochs above
// EpochBase, and deletes the file.
const SeedFile = "restore.json"

// Seed is SeedFile: what a restored node must put into the new cluster's
// etcd before it serves.
type Seed struct {
	// Snapshot describes where the data came from; SHA256 is the snapshot
	// file's checksum. The first node to apply the seed records both in the
	// audit trail.
	Snapshot Header `json:"snapshot"`
	SHA256   string `json:"sha256"`
	// RestoredAt is when `snapshot restore` wrote this data directory.
	RestoredAt time.Time `json:"restored_at"`
	// EpochBase: the new cluster's epochs are etcd revisions plus it, so
	// that every new epoch is above every epoch in the restored WAL
	// (Snapshot.LeaderEpoch).
	EpochBase uint64 `json:"epoch_base"`
	// Settings and Audit are loaded into etcd as they were (keys relative to
	// /autonomy/<cluster>/). The member registry and position records are
	// not: the new cluster's nodes register their own (docs/decisions.md).
	Settings []KV `json:"settings"`
	Audit    []KV `json:"audit"`
}

// ReadSeed reads dir's seed file; ok is false, with no error, when there
// is none.
func ReadSeed(dir string) (s Seed, ok bool, err error) {
	path := filepath.Join(dir, SeedFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Seed{}, false, nil
	}
	if err != nil {
		return Seed{}, false, fmt.Errorf("snapshot: reading %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return Seed{}, true, fmt.Errorf("snapshot: %s is not valid JSON (%v); restore the data directory again with `autonomyctl snapshot restore`", path, err)
	}
	return s, true, nil
}
