package node_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/node"
	"github.com/autonomyops/orchestrator/node/proctest"
)

// TestCluster_cleanStopCheckpointsTheIDIndex: a node stopped cleanly leaves
// its id index in telemetry.checkpoint, covering every frame it holds, so its
// next start reads the ids instead of scanning the whole WAL (which held the
// first write after restarting a 1 GiB WAL for 16-66 s).
func TestCluster_cleanStopCheckpointsTheIDIndex(t *testing.T) {
	c := proctest.NewCluster(t, 3)
	c.Start()
	leader := c.WaitLeader(60 * time.Second)
	w := proctest.NewWriter(c)
	stop := startLoad(w, 2, "cp")
	time.Sleep(time.Second)
	stop()
	waitConverged(t, c, 30*time.Second)
	var f *proctest.Node
	for _, n := range c.Nodes {
		if n != leader {
			f = n
		}
	}
	ws, _ := walStatus(f)
	if code := f.Stop(); code != 0 {
		t.Fatalf("stop: exit %d", code)
	}
	b, err := os.ReadFile(filepath.Join(f.DataDir, "telemetry", node.CheckpointFile))
	if err != nil {
		t.Fatalf("no checkpoint after a clean stop: %v\n%s", err, tailLines(f.Logs(), 20))
	}
	var cp struct {
		IDsUpTo uint64            `json:"ids_up_to"`
		IDs     []json.RawMessage `json:"ids"`
	}
	if err := json.Unmarshal(b, &cp); err != nil {
		t.Fatal(err)
	}
	acked := w.Snapshot()
	if cp.IDsUpTo != ws.LastSeq || len(cp.IDs) < len(acked) {
		t.Fatalf("checkpoint covers Seq≤%d with %d ids; the node held Seq≤%d and %d events were acknowledged",
			cp.IDsUpTo, len(cp.IDs), ws.LastSeq, len(acked))
	}
	f.Start()
	c.WaitLeader(30 * time.Second)
	waitConverged(t, c, 30*time.Second)
	if strings.Contains(f.Logs(), "CHECKPOINT_") {
		t.Fatalf("the checkpoint was not taken at the restart:\n%s", tailLines(f.Logs(), 20))
	}
	c.CheckAllNodes(acked)
}
