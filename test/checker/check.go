package checker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/autonomyops/orchestrator/api/wire"
)

// CheckResult is what the history checker found. Errors lists every
// violation (bounded); the counters feed the suite's summary line.
type CheckResult struct {
	Acked      int // ok events checked
	Lost       int // ok events missing from the reference log (the leader's) or not at their Seq there
	Missing    int // ok events present in the reference log but missing on another node
	Duplicated int // events present more than once on some node
	Divergent  int // Seqs at which two nodes' committed frames differ
	Phantom    int // failed (never written) or unknown-to-the-client events found in a log
	EpochDup   int // epochs with more than one leader (epoch-start frame)
	Errors     []string
}

func (r *CheckResult) errorf(format string, args ...any) {
	if len(r.Errors) < 40 {
		r.Errors = append(r.Errors, fmt.Sprintf(format, args...))
	} else if len(r.Errors) == 40 {
		r.Errors = append(r.Errors, "... (more violations not listed)")
	}
}

// OK reports whether nothing was violated.
func (r *CheckResult) OK() bool { return len(r.Errors) == 0 }

type epochStart struct {
	Leader string `json:"leader"`
	Epoch  uint64 `json:"epoch"`
}

// Options adjust Check to what a caller can know.
type Options struct {
	// Ref names the node whose log is the cluster's history (the leader
	// after healing; "" or an unknown name picks the longest): an
	// acknowledged event absent from it is lost, one absent only from
	// another node is missing there.
	Ref string
	// Partial says the history lists only some events (say, only the
	// acknowledged ones) and the logs may be cut: an id no event names is
	// not a phantom, a log may begin above Seq 1 (retention trimmed it; an
	// acknowledged event below it is not looked for), and nodes may hold
	// logs of different lengths (compared where they overlap).
	Partial bool
	// ID returns the event id of an event frame's JSON; nil reads its "id"
	// field. An empty id is not tracked.
	ID func(event []byte) string
}

// EventID reads the "id" field of an event's JSON ("" if none).
func EventID(event []byte) string {
	var id struct {
		ID string `json:"id"`
	}
	json.Unmarshal(event, &id)
	return id.ID
}

// Check verifies the committed frames of every node (read after healing and
// convergence) against the clients' history, ref naming the reference log
// (Options.Ref).
func Check(logs map[string][]wire.Frame, events []Event, ref string) CheckResult {
	return CheckWith(logs, events, Options{Ref: ref})
}

// CheckWith is Check with options.
func CheckWith(logs map[string][]wire.Frame, events []Event, opts Options) CheckResult {
	var r CheckResult
	idOf := opts.ID
	if idOf == nil {
		idOf = EventID
	}
	ref := opts.Ref
	nodes := make([]string, 0, len(logs))
	for n := range logs {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)

	if _, ok := logs[ref]; !ok {
		ref = ""
		for _, n := range nodes {
			if ref == "" || len(logs[n]) > len(logs[ref]) {
				ref = n
			}
		}
	}
	byID := map[string]*Event{}
	for i := range events {
		byID[events[i].ID] = &events[i]
	}

	// Per node: the log's shape, epoch starts, and where each id sits.
	type starts struct {
		leader, node string
		seq          uint64
	}
	epochs := map[uint64][]starts{}
	idSeqs := map[string]map[string][]uint64{} // node → id → Seqs
	frameAt := map[string]map[uint64]wire.Frame{}
	base := map[string]uint64{} // each log's first Seq
	for _, n := range nodes {
		fs := logs[n]
		idSeqs[n] = map[string][]uint64{}
		frameAt[n] = make(map[uint64]wire.Frame, len(fs))
		var prevEpoch uint64
		for i, f := range fs {
			frameAt[n][f.Seq] = f
			if i == 0 {
				base[n] = f.Seq
				if f.Seq != 1 && opts.Partial {
					prevEpoch = f.Epoch // trimmed: its epoch began before the base
				} else if f.Seq != 1 {
					r.errorf("%s: first committed frame has Seq=%d, expected 1", n, f.Seq)
				}
			}
			if i > 0 && f.Seq != fs[i-1].Seq+1 {
				r.errorf("%s: Seq=%d follows Seq=%d", n, f.Seq, fs[i-1].Seq)
			}
			if f.Epoch < prevEpoch {
				r.errorf("%s: Seq=%d has epoch %d after epoch %d (epochs must not decrease)", n, f.Seq, f.Epoch, prevEpoch)
			}
			if f.Epoch != prevEpoch && f.Type != "epoch_start" {
				r.errorf("%s: epoch %d begins at Seq=%d with a %s frame, not its epoch-start frame", n, f.Epoch, f.Seq, f.Type)
			}
			prevEpoch = max(prevEpoch, f.Epoch)
			switch f.Type {
			case "epoch_start":
				var es epochStart
				if err := json.Unmarshal(f.Event, &es); err != nil || es.Epoch != f.Epoch || es.Leader == "" {
					r.errorf("%s: epoch-start frame Seq=%d (epoch %d) has payload %s", n, f.Seq, f.Epoch, f.Event)
					continue
				}
				epochs[f.Epoch] = append(epochs[f.Epoch], starts{leader: es.Leader, node: n, seq: f.Seq})
			case "event":
				if id := idOf(f.Event); id != "" {
					idSeqs[n][id] = append(idSeqs[n][id], f.Seq)
				}
			}
		}
	}

	// Never two leaders (or two barriers) in one epoch, on any node.
	epochLeader := map[uint64]string{}
	var eps []uint64
	for e := range epochs {
		eps = append(eps, e)
	}
	sort.Slice(eps, func(i, j int) bool { return eps[i] < eps[j] })
	for _, e := range eps {
		ss := epochs[e]
		epochLeader[e] = ss[0].leader
		for _, s := range ss[1:] {
			if s.leader != ss[0].leader || s.seq != ss[0].seq {
				r.EpochDup++
				r.errorf("epoch %d has two epoch-start frames: leader %s at Seq=%d (on %s) and leader %s at Seq=%d (on %s)",
					e, ss[0].leader, ss[0].seq, ss[0].node, s.leader, s.seq, s.node)
				break
			}
		}
	}

	// Identical frames on every node, Seq by Seq where the logs overlap.
	divergent := map[uint64]bool{}
	for i := 1; i < len(nodes); i++ {
		a, b := logs[nodes[0]], logs[nodes[i]]
		first := true
		for _, fa := range a {
			fb, ok := frameAt[nodes[i]][fa.Seq]
			if !ok || sameFrame(fa, fb) {
				continue
			}
			divergent[fa.Seq] = true
			if first {
				r.errorf("%s and %s differ at Seq=%d: %s vs %s", nodes[0], nodes[i], fa.Seq, frameString(fa), frameString(fb))
				first = false
			}
		}
		if len(a) != len(b) && !opts.Partial {
			r.errorf("%s holds %d committed frames, %s holds %d", nodes[0], len(a), nodes[i], len(b))
		}
	}
	r.Divergent = len(divergent)

	// Every event against the history.
	dup := map[string]bool{}
	for _, e := range events {
		if e.Outcome == OK {
			r.Acked++
		}
		lost, missing := false, false
		for _, n := range nodes {
			seqs := idSeqs[n][e.ID]
			if len(seqs) > 1 {
				if !dup[e.ID] {
					r.errorf("%s: %s event %s is present %d times, at Seqs %v", n, e.Outcome, e.ID, len(seqs), seqs)
				}
				dup[e.ID] = true
			}
			switch e.Outcome {
			case OK:
				bad := false
				if len(seqs) == 0 && opts.Partial && e.Seq < base[n] {
					continue // trimmed by retention
				}
				if len(seqs) == 0 {
					r.errorf("%s: acknowledged event %s (Seq=%d, acked by %s at %s) is missing", n, e.ID, e.Seq, e.AckedBy, e.AckAt.Format("15:04:05.000"))
					bad = true
				} else if seqs[0] != e.Seq {
					r.errorf("%s: acknowledged event %s was answered Seq=%d by %s but sits at Seq=%d", n, e.ID, e.Seq, e.AckedBy, seqs[0])
					bad = true
				}
				if bad && n == ref {
					lost = true
				} else if bad {
					missing = true
				}
			case Failed, Pending:
				if len(seqs) > 0 {
					r.Phantom++
					r.errorf("%s: event %s whose every attempt was refused before any write is present at Seq=%d", n, e.ID, seqs[0])
				}
			}
		}
		if lost {
			r.Lost++
		} else if missing {
			r.Missing++
		}
		// The node that acknowledged on its first try wrote it as the
		// leader of the frame's epoch.
		if e.Outcome == OK && e.FirstTry && len(nodes) > 0 {
			if f, ok := frameAt[ref][e.Seq]; ok && epochLeader[f.Epoch] != "" && epochLeader[f.Epoch] != e.AckedBy {
				r.errorf("event %s was acknowledged by %s, but Seq=%d is in epoch %d led by %s", e.ID, e.AckedBy, e.Seq, f.Epoch, epochLeader[f.Epoch])
			}
		}
	}
	r.Duplicated = len(dup)
	for _, n := range nodes {
		for id, seqs := range idSeqs[n] {
			if byID[id] == nil && !opts.Partial {
				r.Phantom++
				r.errorf("%s: event %s at Seq=%v was never sent by this scenario's clients", n, id, seqs)
			}
		}
	}
	return r
}

func sameFrame(a, b wire.Frame) bool {
	return a.Seq == b.Seq && a.Epoch == b.Epoch && a.TS.Equal(b.TS) && a.Type == b.Type && bytes.Equal(a.Event, b.Event)
}

func frameString(f wire.Frame) string {
	return fmt.Sprintf("{seq %d epoch %d %s %s}", f.Seq, f.Epoch, f.Type, f.Event)
}
