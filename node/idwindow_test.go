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
