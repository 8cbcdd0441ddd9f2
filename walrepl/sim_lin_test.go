package walrepl

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/anishathalye/porcupine"
)

// The simulator's ingest history as porcupine sees it: one operation per
// event id, from its first attempt to its acknowledgement (retries carry the
// same id, DESIGN §6 rule 10). The specification is an append-only log: an
// event takes effect when its frame is appended, in the committed log's
// order; an acknowledged event must be held at the Seq it was acknowledged
// with. The same model checks the Docker suite's histories
// (test/integration/linearizable.go).

type simLinIn struct {
	id    string
	acked bool
	seq   uint64
}

type simLinOut struct{ logSeq uint64 }

func (s *sim) checkLinearizable() (string, string) {
	byPayload := map[string]*simOp{}
	for _, op := range s.ops {
		byPayload[string(op.payload)] = op
	}
	at := map[string]uint64{}
	var seqs []uint64
	for seq, f := range s.committed {
		op := byPayload[string(f.Payload)]
		if f.Type != FrameEvent || op == nil {
			continue
		}
		if prev, dup := at[op.id]; dup {
			return "duplicate", fmt.Sprintf("event %s committed twice, at Seq=%d and Seq=%d", op.id, min(prev, seq), max(prev, seq))
		}
		at[op.id] = seq
	}
	end := int64(s.step + 1)
	var ops []porcupine.Operation
	for _, op := range s.ops {
		if !op.acked && at[op.id] == 0 {
			continue // never took effect: fits anywhere
		}
		ret := int64(math.MaxInt64)
		if op.acked {
			ret = int64(op.ret)
		} else {
			ret = end
		}
		if s := at[op.id]; s != 0 {
			seqs = append(seqs, s)
		}
		ops = append(ops, porcupine.Operation{Input: simLinIn{id: op.id, acked: op.acked, seq: op.seq},
			Call: int64(op.call), Output: simLinOut{logSeq: at[op.id]}, Return: ret})
	}
	slices.Sort(seqs)
	prev := map[uint64]uint64{}
	for i, q := range seqs {
		if i > 0 {
			prev[q] = seqs[i-1]
		}
	}
	model := porcupine.Model{
		Init: func() any { return uint64(0) },
		Step: func(state, input, output any) (bool, any) {
			last, in, out := state.(uint64), input.(simLinIn), output.(simLinOut)
			switch {
			case in.acked && out.logSeq != in.seq:
				return false, state
			case out.logSeq == 0:
				return true, state
			case prev[out.logSeq] != last:
				return false, state
			}
			return true, out.logSeq
		},
		DescribeOperation: func(input, output any) string {
			in, out := input.(simLinIn), output.(simLinOut)
			return fmt.Sprintf("ingest(%s) acked=%v at %d, log %d", in.id, in.acked, in.seq, out.logSeq)
		},
	}
	switch porcupine.CheckOperationsTimeout(model, ops, 10*time.Second) {
	case porcupine.Illegal:
		return "illegal", fmt.Sprintf("(%d operations)", len(ops))
	case porcupine.Unknown:
		return "", "" // timed out: no verdict
	}
	return "", ""
}
