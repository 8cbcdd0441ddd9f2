package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/autonomyops/orchestrator/ctl"
	"github.com/autonomyops/orchestrator/node/proctest"
)

// TestMembers_ReplaceDeadNode: an appliance dies for good; the operator
// removes it and adds a fresh one, which ends up holding every committed
// frame and counting again — with no acknowledged write lost.
func TestMembers_ReplaceDeadNode(t *testing.T) {
	c := proctest.NewCluster(t, 3)
	c.Start()
	leader := waitSteady(t, c)
	w := proctest.NewWriter(c)
	stop := startLoad(w, 2, "before")
	time.Sleep(time.Second)
	var dead *proctest.Node
	var survivors []string
	for _, n := range c.Nodes {
		if n != leader {
			dead = n
		}
	}
	for _, n := range c.Nodes {
		if n != dead {
			survivors = append(survivors, n.URL())
		}
	}
	dead.Kill()
	// As an operator does it: autonomyctl finds the leader among the
	// survivors (it may have moved) and follows its redirects.
	if code, out, errOut := runCTL(survivors, "member", "remove", dead.Name); code != ctl.ExitOK {
		t.Fatalf("autonomyctl member remove %s: exit %d\n%s%s", dead.Name, code, out, errOut)
	}
	time.Sleep(time.Second) // writes continue on the two remaining voters
	stop()

	fresh := proctest.NewNode(t, "n4")
	leader = c.WaitLeader(30 * time.Second) // the membership change started a new epoch
	code, _, b := do(t, "POST", leader.URL()+"/v1/members", "", fmt.Sprintf(`{"name":"n4","peer_url":%q}`, fresh.PeerURL()), nil)
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

// TestMembers_RemoveAVoterThatNeverReturns is the way out DESIGN §6 rule 13
// documents: after a restart of the whole cluster every voter must come back
// before the first epoch starts, and if one never will, `autonomyctl member
// remove` takes it out of the voters. The candidate holds the leader token
// but cannot serve while it waits, so the removal must reach it anyway; the
// two survivors then elect, and nothing acknowledged before the restart is
// lost.
func TestMembers_RemoveAVoterThatNeverReturns(t *testing.T) {
	c := proctest.NewCluster(t, 3)
	c.Start()
	c.WaitLeader(60 * time.Second)
	w := proctest.NewWriter(c)
	stop := startLoad(w, 2, "before")
	time.Sleep(time.Second)
	stop()
	for _, n := range c.Nodes {
		n.Kill()
	}
	gone := c.Nodes[2]
	survivors := []*proctest.Node{c.Nodes[0], c.Nodes[1]}
	for _, n := range survivors {
		n.Start()
	}
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(survivors[0].Logs()+survivors[1].Logs(), "LEADER_WAITING_FOR_CONFIRMED_VOTERS") {
		if time.Now().After(deadline) {
			t.Fatalf("no candidate waited for %s to come back:\n%s\n%s", gone.Name, tailLines(survivors[0].Logs(), 30), tailLines(survivors[1].Logs(), 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
	var out, errb bytes.Buffer
	cli := &ctl.CLI{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }, ConfigDir: t.TempDir()}
	args := []string{"--endpoints", survivors[0].URL() + "," + survivors[1].URL(), "member", "remove", gone.Name}
	for {
		out.Reset()
		errb.Reset()
		code := cli.Run(context.Background(), args)
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("autonomyctl member remove %s while the candidate waits for it: exit %d\n%s%s\n%s\n%s",
				gone.Name, code, out.String(), errb.String(), tailLines(survivors[0].Logs(), 30), tailLines(survivors[1].Logs(), 30))
		}
		time.Sleep(500 * time.Millisecond)
	}
	c.Nodes = survivors
	c.WaitLeader(30 * time.Second)
	stop = startLoad(w, 2, "after")
	time.Sleep(time.Second)
	stop()
	waitConverged(t, c, 30*time.Second)
	c.CheckAllNodes(w.Snapshot())
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
