package node_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/autonomyops/orchestrator/node/proctest"
)

// TestMembers_ReplaceDeadNode: an appliance dies for good; the operator
// removes it and adds a fresh one, which ends up holding every committed
// frame and counting again — with no acknowledged write lost.
func TestMembers_ReplaceDeadNode(t *testing.T) {
	c := proctest.NewCluster(t, 3)
	c.Start()
	leader := c.WaitLeader(60 * time.Second)
	w := proctest.NewWriter(c)
	stop := startLoad(w, 2, "before")
	time.Sleep(time.Second)
	var dead *proctest.Node
	for _, n := range c.Nodes {
		if n != leader {
			dead = n
		}
	}
	dead.Kill()
	code, _, b := do(t, "DELETE", leader.URL()+"/v1/members/"+dead.Name, "", "", nil)
	if code != http.StatusOK {
		t.Fatalf("remove %s: %d %s", dead.Name, code, b)
	}
	time.Sleep(time.Second) // writes continue on the two remaining voters
	stop()

	fresh := proctest.NewNode(t, "n4")
	leader = c.WaitLeader(30 * time.Second) // the membership change started a new epoch
	code, _, b = do(t, "POST", leader.URL()+"/v1/members", "", fmt.Sprintf(`{"name":"n4","peer_url":%q}`, fresh.PeerURL()), nil)
	var ar wire.AddMemberResponse
	if json.Unmarshal(b, &ar); code != http.StatusOK || !strings.Contains(ar.InitialCluster, "n4="+fresh.PeerURL()) {
		t.Fatalf("add n4: %d %s", code, b)
	}
	fresh.Extra = []string{"--initial-cluster", ar.InitialCluster, "--initial-cluster-state", "existing"}
	fresh.Start()
	c.Nodes = []*proctest.Node{c.Nodes[0], c.Nodes[1], c.Nodes[2], fresh}
	stop = startLoad(w, 2, "after")
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, h := fresh.Health()
		if h.Role == "follower" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n4 never became a caught-up follower (role %q):\n%s", h.Role, fresh.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	c.WaitLeader(30 * time.Second)
	waitConverged(t, c, 30*time.Second)
	c.CheckAllNodes(w.Snapshot())
	code, _, b = do(t, "GET", fresh.URL()+"/v1/members", "", "", nil)
	if code != 200 || strings.Contains(string(b), `"name":"`+dead.Name+`"`) || !strings.Contains(string(b), `"name":"n4"`) {
		t.Fatalf("members: %d %s", code, b)
	}
}
