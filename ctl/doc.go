// Package ctl is autonomyctl, the operator's command-line tool (DESIGN §8).
//
// The CLI is a value: a CLI holds its writers, its environment and its HTTP
// client, and Run executes one command line and returns the process exit
// status, so tests drive every command exactly as an operator would, against
// httptest servers and temporary data directories. ctl/cmd/autonomyctl only
// calls Run and os.Exit.
//
// One file per command group: status.go, ha.go, wal*.go, config.go, logs.go,
// fleet.go, settings.go, audit.go and demo*.go (member and certs later).
// Online commands reach the nodes through api.Client (endpoint resolution in
// endpoints.go); offline WAL commands (--data-dir) use walrepl directly and
// never modify a WAL, except `wal reset`, which moves it aside first and
// refuses while a node holds the data-dir lock. `demo --local` runs walrepl
// replicas in process, in a temporary directory of its own.
//
// `logs --follow` never prints a Seq at or below the last one it printed, and
// resumes a broken stream with after_seq = that Seq, so a leader change loses
// and repeats nothing.
//
// Exit statuses are listed in exit.go and docs/autonomyctl.md; scripts depend
// on them.
package ctl
