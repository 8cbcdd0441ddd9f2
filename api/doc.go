// Package api is the REST API of one node (gin): routes, RBAC tokens, the
// error table, follower redirects and the fleet aggregator.
//
// Invariants:
//
//   - Every error from the node's side goes through one table (errStatus)
//     that maps it to an HTTP status and a stable error code; its 503
//     answers carry Retry-After.
//   - A node that is not the serving leader answers leader-only routes with
//     307 to the leader (X-Autonomy-Leader) or 503 no_leader; it never
//     serves them from its own state.
//   - Only committed frames (Seq ≤ safe_seq) are ever served (DESIGN §6
//     rule 11), and an ingest is acknowledged only once committed: a POST
//     once Ingest returned, each line of a stream (stream.go) likewise.
//
// The API knows the node only through the small role interfaces of
// Backends (NodeState, Ingester, Log, ...), declared here where they are
// used; node/ implements them. The JSON shapes are package api/wire
// (aliased here), shared with the Go client in package api/client, which
// does not link this package.
package api
