// Package checker judges a replicated telemetry log against what its clients
// were told: the one history checker of the project, used by the Docker
// fault suite (test/integration), the multi-process tests (node/proctest)
// and the in-process walrepl harness. It has no build tag and no I/O, so
// its planted-history tests run in `make test`.
//
// The property, for the committed frames of every node read after the
// cluster healed:
//
//   - each log is Seq 1, 2, 3, ... without a gap (from the retention base
//     when Options.Partial), epochs never decrease, and every epoch begins
//     with its epoch-start frame;
//   - no epoch has two leaders (two different epoch-start frames);
//   - all nodes hold identical frames (up to the shortest log when
//     Options.Partial);
//   - an acknowledged event is in the reference log, exactly once, at the
//     Seq it was acknowledged with, and on every other node; an event whose
//     every attempt was refused is nowhere; no event is anywhere twice; no
//     event is in a log that no client sent (unless Options.Partial);
//   - the node that acknowledged an event on its first try led the epoch its
//     frame is in.
//
// CheckLinearizable adds porcupine's check of the same history against an
// append-only log specification, which also catches real-time order
// violations.
//
// Frames are wire.Frame (the API's JSON shape: package api/wire, which
// imports nothing of the server or the WAL), so that walrepl's own tests
// can use the checker without an import cycle.
package checker
