// Package ctl is autonomyctl, the operator's command-line tool (DESIGN §8).
//
// The CLI is a value: a CLI holds its writers, its environment and its HTTP
// client, and Run executes one command line and returns the process exit
// status, so tests drive every command exactly as an operator would, against
// httptest servers and temporary data directories. ctl/cmd/autonomyctl only
// calls Run and os.Exit.
//
// One file per command group: status.go, ha.go, wal*.go, config.go, and later
// logs, fleet, settings, audit, member, certs and demo. Online commands reach
// the nodes through api.Client (endpoint resolution in endpoints.go); offline
// WAL commands (--data-dir) use walrepl directly and never modify a WAL, except
// `wal reset`, which moves it aside first and refuses while a node holds the
// data-dir lock.
//
// Exit statuses are listed in exit.go and docs/autonomyctl.md; scripts depend
// on them.
package ctl
