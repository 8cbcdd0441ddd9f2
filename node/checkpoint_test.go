package node

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/autonomyops/orchestrator/api"
)

// The checkpoint is encoded by hand from the index's entries: the bytes
// must be those json.Marshal gives for the checkpoint struct (the format
// loadCheckpoint and snapshots read), whatever the ids hold.
func TestCheckpoint_encodeIsJSONMarshal(t *testing.T) {
	fleet := api.FleetState{UpTo: 41, Agents: []api.FleetAgent{{Agent: "a<1>"}}, ByKind: map[string]uint64{"k": 3, "x&y": 1}, Events: 4, Errors: 1}
	rng := rand.New(rand.NewPCG(3, 4))
	alphabet := []string{"a", "Z", "9", "-", `"`, `\`, "<", ">", "&", "\n", "\x00", "\x7f", "é", "\u2028", "😀", "\xff", " ", "/"}
	x := newIDIndex(10_000, 1<<20)
	want := checkpoint{Fleet: fleet}
	for i := 0; i < 2000; i++ {
		id := fmt.Sprint(i)
		for j := rng.IntN(6); j > 0; j-- {
			id += alphabet[rng.IntN(len(alphabet))]
		}
		x.addLocked(id, uint64(i+1), uint64(1+i/700))
		want.IDs = append(want.IDs, checkpointID{ID: id, Seq: uint64(i + 1), Epoch: uint64(1 + i/700)})
	}
	x.upTo, want.IDsUpTo = 2000, 2000
	check := func(name string, cp checkpointImage, want checkpoint) {
		t.Helper()
		got, err := cp.encode()
		if err != nil {
			t.Fatal(err)
		}
		wb, _ := json.Marshal(want)
		if string(got) != string(wb) {
			t.Fatalf("%s: encode differs from json.Marshal:\n%.400s\n%.400s", name, got, wb)
		}
		var back checkpoint
		if err := json.Unmarshal(got, &back); err != nil || len(back.IDs) != len(want.IDs) {
			t.Fatalf("%s: does not decode: %v", name, err)
		}
	}
	img := x.image(fleet)
	check("2000 ids", img, want)
	cut := want
	cut.IDs, cut.IDsUpTo = want.IDs[:1500], 1500
	check("up to 1500", img.upToSeq(1500), cut)
	check("no ids", newIDIndex(10, 1<<20).image(fleet), checkpoint{Fleet: fleet})
}
