package node

import (
	"errors"
	"fmt"
	"time"

	"github.com/autonomyops/orchestrator/node/datadir"
)

// lockDataDir takes the data directory's lock (package datadir) and writes
// this process's pid into it.
func lockDataDir(dir string) (*datadir.Lock, error) {
	l, err := datadir.TryLock(dir)
	var le *datadir.LockedError
	if errors.As(err, &le) {
		// le is errors.Is datadir.ErrLocked.
		return nil, fmt.Errorf("node: the data directory is locked by another process: %w; stop that autonomy-orchestrator first or use another --data-dir", le)
	}
	if err != nil {
		return nil, err
	}
	_ = l.WritePID() // best effort: the pid only names the holder in others' errors
	return l, nil
}

// checkIdentity refuses to run a data dir initialised for another node name
// or cluster. initialized is false when node.json does not exist yet.
func checkIdentity(dir, name, cluster string) (initialized bool, err error) {
	id, ok, err := datadir.ReadIdentity(dir)
	if err != nil || !ok {
		return ok, err
	}
	if id.Name != name || id.ClusterName != cluster {
		return true, fmt.Errorf("node: %s belongs to node %q of cluster %q, but this is --name=%q --cluster-name=%q; use that node's own --data-dir",
			dir, id.Name, id.ClusterName, name, cluster)
	}
	return true, nil
}

func writeIdentity(dir, name, cluster string) error {
	return datadir.WriteIdentity(dir, datadir.Identity{ClusterName: cluster, Name: name, CreatedAt: time.Now().UTC()})
}
