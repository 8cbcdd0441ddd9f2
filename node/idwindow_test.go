package node

import (
	"fmt"
	"testing"
)

func TestIDIndex_setWindowForgetsTheOldest(t *testing.T) {
	x := newIDIndex(200_000)
	for i := 0; i < 3000; i++ {
		x.addLocked(fmt.Sprintf("id-%d", i), uint64(i+1), 1)
	}
	if _, ok := x.seqs["id-0"]; !ok {
		t.Fatal("id-0 forgotten under the default window")
	}
	x.setWindow(1000)
	if _, ok := x.seqs["id-1999"]; ok {
		t.Fatal("id-1999 still known after the window shrank to 1000")
	}
	if _, ok := x.seqs["id-2000"]; !ok || len(x.seqs) != 1000 || len(x.order) != 1000 {
		t.Fatalf("kept %d ids (%d in order), want the newest 1000", len(x.seqs), len(x.order))
	}
}

// A leader indexes its own frames as it appends them, and later scans over
// them again: ids the window dropped must not come back.
func TestIDIndex_forgottenIdsStayForgotten(t *testing.T) {
	x := newIDIndex(1000)
	for i := 0; i < 2001; i++ {
		x.addLocked(fmt.Sprintf("id-%d", i), uint64(i+1), 1)
	}
	for i := 0; i < 2001; i++ { // the scan
		x.addLocked(fmt.Sprintf("id-%d", i), uint64(i+1), 1)
	}
	if _, ok := x.seqs["id-1"]; ok {
		t.Fatal("a scan brought back an id the window dropped")
	}
	if _, ok := x.seqs["id-2000"]; !ok {
		t.Fatal("the newest id is not known")
	}
}

// Pruning rebuilds the map: after many windows it holds exactly the ids of
// order, the newest ones, each at its own Seq.
func TestIDIndex_pruneKeepsMapAndOrderTogether(t *testing.T) {
	x := newIDIndex(1000)
	for i := 0; i < 10_500; i++ {
		x.addLocked(fmt.Sprintf("id-%d", i), uint64(i+1), 1)
	}
	if len(x.seqs) != len(x.order) || len(x.order) < 1000 || len(x.order) > 2000 {
		t.Fatalf("%d ids in the map, %d in order; want the same, between 1000 and 2000", len(x.seqs), len(x.order))
	}
	for _, e := range x.order {
		if p, ok := x.seqs[e.id]; !ok || p.seq != e.seq {
			t.Fatalf("%s: map has %+v (%v), order Seq %d", e.id, p, ok, e.seq)
		}
	}
	if x.order[len(x.order)-1].id != "id-10499" || x.forgotten != x.order[0].seq-1 {
		t.Fatalf("newest %s, forgotten %d, oldest kept Seq %d", x.order[len(x.order)-1].id, x.forgotten, x.order[0].seq)
	}
}
