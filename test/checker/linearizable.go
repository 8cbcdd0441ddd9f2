package checker

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/autonomyops/orchestrator/api/wire"
)

// The ingest history as porcupine sees it (issue 12): every event id is one
// operation, from its first request to the answer that settled it, retries
// included (they carry the same id: DESIGN §6 rule 10). The sequential
// specification is an append-only log: an event takes effect when its frame
// is appended, and Seqs grow in the order of taking effect. So the history
// is linearizable if and only if some order that respects real time (an
// event acknowledged before another was first sent comes first) appends
// every event at the Seq the cluster's log holds it at, and every
// acknowledged event at the Seq it was acknowledged with.
//
// A false acknowledgement of the kind hole 1 made (a retry answered with a
// Seq whose frame a takeover then replaced) and a write acknowledged before
// another was sent but appended after it are both violations here.

// linOp is one event's operation: its input is the event id.
type linOp struct {
	id      string
	outcome Outcome
	acked   uint64 // the Seq the client was told (OK only)
}

// linOut is where the log holds the event after healing (0: nowhere).
type linOut struct{ logSeq uint64 }

// ingestModel returns the specification: its state is the Seq of the last
// event appended, and the next event to take effect must be the one the log
// holds next (prev maps each event's Seq to the Seq of the event before it;
// epoch-start frames are not client events). Being exact, rather than
// "any higher Seq", keeps porcupine's search linear.
func ingestModel(prev map[uint64]uint64) porcupine.Model {
	return porcupine.Model{
		Init: func() any { return uint64(0) },
		Step: func(state, input, output any) (bool, any) {
			last, op, out := state.(uint64), input.(linOp), output.(linOut)
			switch {
			case op.outcome == OK && out.logSeq != op.acked:
				return false, state // acknowledged at one Seq, held at another (or lost)
			case op.outcome == Failed && out.logSeq != 0:
				return false, state // refused, yet written
			case out.logSeq == 0:
				return true, state // never took effect
			case prev[out.logSeq] != last:
				return false, state // not the next event of the log
			}
			return true, out.logSeq
		},
		DescribeOperation: describeOp,
	}
}

func describeOp(input, output any) string {
	op, out := input.(linOp), output.(linOut)
	return fmt.Sprintf("ingest(%s) %s acked=%d log=%d", op.id, op.outcome, op.acked, out.logSeq)
}

// CheckLinearizable checks the clients' events against ref, the cluster's
// committed log after healing, within timeout. It returns porcupine's verdict
// and, for Illegal, the operations around the longest linearizable prefix.
func CheckLinearizable(events []Event, ref []wire.Frame, timeout time.Duration) (porcupine.CheckResult, string) {
	at := map[string]uint64{}
	for _, f := range ref {
		if f.Type != "event" {
			continue
		}
		if id := EventID(f.Event); id != "" {
			if _, dup := at[id]; !dup {
				at[id] = f.Seq // a duplicate is Check's finding
			}
		}
	}
	var end int64
	for _, e := range events {
		end = max(end, e.FirstSent.UnixNano(), e.AckAt.UnixNano())
	}
	end++
	ops := make([]porcupine.Operation, 0, len(events))
	for _, e := range events {
		if e.Outcome == Pending || e.FirstSent.IsZero() {
			continue
		}
		if e.Outcome != OK && at[e.ID] == 0 {
			// It never took effect, as allowed: an operation that changes
			// nothing fits anywhere, and left in (open until the end) it
			// would only multiply porcupine's search.
			continue
		}
		ret := int64(math.MaxInt64)
		if e.Outcome == OK {
			ret = e.AckAt.UnixNano()
		}
		if e.Outcome != OK {
			ret = end // it may have taken effect at any time after it was sent
		}
		ops = append(ops, porcupine.Operation{
			Input:  linOp{id: e.ID, outcome: e.Outcome, acked: e.Seq},
			Call:   e.FirstSent.UnixNano(),
			Output: linOut{logSeq: at[e.ID]},
			Return: ret,
		})
	}
	// The order the log took effect in, over the events in the history.
	var seqs []uint64
	for _, op := range ops {
		if s := op.Output.(linOut).logSeq; s != 0 {
			seqs = append(seqs, s)
		}
	}
	slices.Sort(seqs)
	prev := make(map[uint64]uint64, len(seqs))
	for i, s := range seqs {
		if i > 0 {
			prev[s] = seqs[i-1]
		} else {
			prev[s] = 0
		}
	}
	res, info := porcupine.CheckOperationsVerbose(ingestModel(prev), ops, timeout)
	if res != porcupine.Illegal {
		return res, ""
	}
	return res, describeIllegal(info, ops)
}

// describeIllegal names the operations that could not be placed after the
// longest linearizable prefix porcupine found.
func describeIllegal(info porcupine.LinearizationInfo, ops []porcupine.Operation) string {
	partials := info.PartialLinearizations()
	longest := []int{}
	for _, part := range partials {
		for _, p := range part {
			if len(p) > len(longest) {
				longest = p
			}
		}
	}
	placed := make(map[int]bool, len(longest))
	var last uint64
	for _, i := range longest {
		placed[i] = true
		if s := ops[i].Output.(linOut).logSeq; s > last {
			last = s
		}
	}
	msg := fmt.Sprintf("%d of %d operations linearize (log up to Seq=%d); cannot place next:", len(longest), len(ops), last)
	n := 0
	for i, op := range ops {
		if placed[i] {
			continue
		}
		msg += fmt.Sprintf(" %s [sent %s, returned %s];", describeOp(op.Input, op.Output),
			time.Unix(0, op.Call).Format("15:04:05.000"), returnTime(op.Return))
		if n++; n == 5 {
			break
		}
	}
	return msg
}

func returnTime(ns int64) string {
	if ns == math.MaxInt64 {
		return "never"
	}
	return time.Unix(0, ns).Format("15:04:05.000")
}
