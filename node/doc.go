// Package node is the composition root of autonomy-orchestrator: it reads
// the configuration (flags, or a YAML file keyed by flag name), takes the
// data directory's lock (package node/datadir), opens and recovers the WAL,
// starts the etcd member, gossip, replication and the API, wires them
// together and runs them until asked to stop; node/cmd/autonomy-orchestrator
// is its main.
//
// Invariants:
//
//   - One process a data directory: the flock on LOCK is held from before
//     the WAL is opened until after everything has stopped.
//   - Every goroutine the node starts is owned by a group (goFunc) whose
//     owner cancels its context and joins it: Run returns only after all of
//     them have ended (TestRun_joinsItsGoroutines, and the goroutine-leak
//     check of TestMain).
//   - A failed WAL is fatal on every role; a WAL that fails recovery exits
//     with walrepl.ExitFailHard so that systemd does not restart it.
//   - The node leads only while it holds etcd's leader key: losing the
//     session ends its leadership at once (self-fencing).
//   - A snapshot (snapshot.go) holds retention for as long as it streams,
//     and claims nothing above the safe_seq it states. A restored node
//     (restore.go) loads its seed into etcd, and every node the cluster's
//     epoch base, before anything reads an epoch.
package node
