//go:build integration

// Package integration is the Docker fault suite of DESIGN §10 (issue 5): three
// containers of the real autonomy-orchestrator (image autonomy-orchestrator:dev,
// built FROM scratch by build-image.sh with the test-only failpoints) on a
// labelled private Docker network, driven only through the public API, while
// faults behind one Failpoint interface (Name, Inject, Heal) kill, pause,
// partition, delay, fill and corrupt them.
//
// A Workload posts events with unique ids through any node (following
// redirects) and records each as ok, failed or unknown. A Monitor samples
// every node's safe_seq and health during the run. After healing, the checker
// reads every node's committed frames (GET /v1/wal/inspect) and verifies:
//
//   - every ok event is present exactly once on every node, at its Seq;
//   - every unknown event at most once; a failed event (refused before any
//     leader could write it) never;
//   - all nodes hold identical frames up to safe_seq, with contiguous Seqs
//     and non-decreasing epochs that each begin with their epoch-start frame;
//   - safe_seq never decreased within one process's life (sampled);
//   - never two nodes committed in one epoch: one epoch-start frame (one
//     leader) per epoch across all nodes, and every first-attempt ack was
//     written in an epoch led by the node that answered it;
//   - and it measures failover time for every leader loss: from the fault to
//     the first acknowledgement of a request sent after it, by writers with a
//     1 s request timeout that then try the other nodes (and do not follow a
//     redirect back to a node they could not reach within the last second).
//     The summary line reports it per kind of fault (faultKinds).
//
// Run everything with `make test-integration`; one scenario with
//
//	AUTONOMY_SCENARIOS=leader-isolated go test -tags integration -count=1 -v ./test/integration/
//
// Environment: AUTONOMY_SCENARIOS (comma list of names or numbers),
// AUTONOMY_SCENARIO_REPEAT (default 1), AUTONOMY_IT_IMAGE
// (default autonomy-orchestrator:dev), AUTONOMY_IT_SUBNET (default
// 172.28.61.0/24), AUTONOMY_IT_ARTIFACTS (where logs of failed scenarios go,
// default $TMPDIR/autonomy-it-artifacts), AUTONOMY_IT_KEEP=1 (leave the
// containers of a failed scenario running for inspection), AUTONOMY_IT_SAVE_LOGS=1
// (save the node logs of passed scenarios too, e.g. to read how a failover went),
// AUTONOMY_FLAP_SECONDS (length of the flapping scenario, default 60).
//
// Planted bugs (mutants.go): `make test-mutants` builds an image from a copy
// of the tree with one bug planted (exact-text edits) per mutant and runs the
// scenarios that must catch it (AUTONOMY_MUTANTS=all or names,
// AUTONOMY_MUTANT_ATTEMPTS, default 3). Every scenario is named by at least
// one mutant; TestMutantsApply checks the edits still apply.
//
// The host needs root, Docker, nsenter, iptables and tc; tc netem is used
// when the kernel has sch_netem, else an NFQUEUE delayer (nfqueue.go).
package integration
