// Package settings is the schema of the cluster's live settings: the keys an
// operator may store in etcd under /autonomy/<cluster>/config/ (PUT
// /v1/config/<key>, `autonomyctl settings set`), their types and bounds, and
// how a node resolves the values it applies.
//
// Invariants:
//
//   - Only a key of the schema, with a value within its bounds, is ever
//     written through the API: Validate refuses everything else and the
//     caller writes nothing.
//   - A node applies, for every key, either the value stored in etcd (source
//     "etcd") or its own default (source "default": its serve flag, or the
//     built-in default when the key has no flag). A stored value the schema
//     refuses (written around the API, or by an older version) is not
//     applied: the node applies its default and reports why.
//   - Resolve is a pure function of the stored keys and the defaults; Live
//     holds the last resolution and is safe for concurrent readers. The
//     etcd watch that feeds it lives in package node.
package settings
