// Package cluster owns this node's membership in the cluster: the embedded
// etcd member, leader election with epochs, the cluster's config KV, and (in
// gossip.go) memberlist health.
//
// Leadership is a concurrency.Election on /autonomy/<cluster>/leader held with
// a session lease. The epoch is the leader key's CreateRevision: etcd assigns
// it, it is unique, and a later leader always has a larger one. A cluster
// restored from a snapshot adds a constant epoch base to it (epoch_base,
// written once before the first election; image.go), so that its epochs stay
// above those of the frames it restored. A node whose
// session ends stops acting as leader at once (Leadership.Done closes).
//
// Nothing here decides whether a frame is committed: that is walrepl's job,
// and it is safe whatever etcd or gossip say about timing.
package cluster
