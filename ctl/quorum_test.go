package ctl_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/autonomyops/orchestrator/ctl"
)

// noQuorumNode makes n answer as a survivor of quorum loss: /v1/health 503
// with no_quorum and no leader; /v1/ha/status with no leader, the last one it
// saw, and every member from its local copy, two of them unreachable.
func noQuorumNode(n *fakeNode) {
	n.setOverride("/v1/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusServiceUnavailable, wire.Health{Status: "unavailable", Role: "follower", Node: n.name, Epoch: 7,
			SafeSeq: 41, LastSeq: 41, WAL: "ok", Reasons: []string{"no_quorum", "not_leader"}})
	})
	n.setOverride("/v1/ha/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, wire.HAStatus{Node: n.name, Role: "follower", SafeSeq: 41,
			LastLeader: &wire.LeaderRef{Name: "node-a", APIURL: "http://node-a:8888", Epoch: 7, Since: time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)},
			Quorum:     wire.Quorum{Size: 2, Healthy: 1},
			Members: []wire.Member{
				{Name: "node-a", APIURL: "http://node-a:8888", State: "unreachable", Role: "leader", GossipState: "suspect"},
				{Name: "node-b", APIURL: n.URL(), State: "alive", Role: "follower", GossipState: "alive", LastSeq: 41, FsyncedSeq: 41},
				{Name: "node-c", APIURL: "http://node-c:8888", State: "unreachable", Role: "follower", GossipState: "dead"},
			},
			Etcd: &wire.EtcdView{Stale: true, Members: []wire.EtcdMember{{Name: "node-a", ID: "a1"}, {Name: "node-b", ID: "b2"}, {Name: "node-c", ID: "c3"}}},
		})
	})
}

// TestStatus_noQuorumExits7: nodes answer but none can commit: `status`
// prints every row and exits ExitNoLeader, like `etcdctl endpoint health`.
func TestStatus_noQuorumExits7(t *testing.T) {
	survivor := newFakeNode(t, "node-b", nil)
	noQuorumNode(survivor)
	dead, _ := refusedURL(t)
	tc := newTestCLI(t)
	code, out, errOut := tc.run(t, "status", "--endpoints", dead+","+survivor.URL())
	if code != ctl.ExitNoLeader {
		t.Fatalf("exit %d, want %d", code, ctl.ExitNoLeader)
	}
	mustContain(t, "table", out, "node-b", "503", "no_quorum,not_leader", "unreachable", "no leader can commit right now")
	mustContain(t, "stderr", errOut, "status: no leader can commit", "connection refused")

	code, out, _ = tc.run(t, "status", "--endpoints", survivor.URL(), "-o", "json")
	if code != ctl.ExitNoLeader || !strings.Contains(out, `"can_commit": false`) {
		t.Fatalf("json: exit %d\n%s", code, out)
	}
}

// TestStatus_followerNamingALeaderExits0: the leader is not in the endpoint
// list, but a follower names a leader that can commit: exit 0.
func TestStatus_followerNamingALeaderExits0(t *testing.T) {
	follower := newFakeNode(t, "node-b", newFakeNode(t, "node-a", nil))
	tc := newTestCLI(t)
	code, out, _ := tc.run(t, "status", "--endpoints", follower.URL())
	if code != ctl.ExitOK {
		t.Fatalf("exit %d", code)
	}
	mustContain(t, "table", out, "node-b reports leader node-a", "the leader is not in the endpoint list")
}

// TestHAStatus_noQuorumShowsNoLeaderAndEveryMember: no leader is shown, the
// last one is named, every known member is listed alive or unreachable, and
// the exit status is ExitNoLeader.
func TestHAStatus_noQuorumShowsNoLeaderAndEveryMember(t *testing.T) {
	survivor := newFakeNode(t, "node-b", nil)
	noQuorumNode(survivor)
	tc := newTestCLI(t)
	code, out, errOut := tc.run(t, "ha", "status", "--endpoints", survivor.URL())
	if code != ctl.ExitNoLeader {
		t.Fatalf("exit %d, want %d", code, ctl.ExitNoLeader)
	}
	mustContain(t, "table", out, "none can commit (no quorum, as node-b can tell); last seen node-a",
		"no quorum: leader key holder unknown; 3 members", "QUORUM       size 2, healthy 1")
	mustContain(t, "stderr", errOut, "ha status: no leader can commit, as node-b can tell")
	rows := map[string][]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 3 && strings.HasPrefix(f[0], "node-") {
			rows[f[0]] = f
		}
	}
	for name, state := range map[string]string{"node-a": "unreachable", "node-b": "alive", "node-c": "unreachable"} {
		if got := rows[name]; len(got) < 2 || got[1] != state {
			t.Errorf("%s row %v, want STATE %s", name, got, state)
		}
	}
	if strings.Contains(out, "LEADER       node-a") {
		t.Errorf("a leader is shown under quorum loss:\n%s", out)
	}
}

// TestHAStatus_keyHolderThatDoesNotServe: etcd has a quorum and a leader key
// holder, but the holder does not serve (a candidate waiting for every voter
// after a restart of the whole cluster): no leader is shown, the table names
// the holder and says it does not serve, the exit status is ExitNoLeader, and
// the hints say how to get out (start the missing voter, or remove it).
func TestHAStatus_keyHolderThatDoesNotServe(t *testing.T) {
	n := newFakeNode(t, "node-b", nil)
	n.setOverride("/v1/ha/status", func(w http.ResponseWriter, r *http.Request) {
		st := n.haStatus()
		st.Role, st.Leader = "follower", nil
		st.LastLeader = &wire.LeaderRef{Name: "node-a", APIURL: "http://node-a:8888", Epoch: 9}
		st.Etcd = &wire.EtcdView{Leader: "node-a", Epoch: 9, Members: []wire.EtcdMember{{Name: "node-a"}, {Name: "node-b"}, {Name: "node-c"}}}
		writeJSON(w, http.StatusOK, st)
	})
	tc := newTestCLI(t)
	code, out, errOut := tc.run(t, "ha", "status", "--endpoints", n.URL())
	if code != ctl.ExitNoLeader {
		t.Fatalf("exit %d, want %d", code, ctl.ExitNoLeader)
	}
	mustContain(t, "table", out, "none can commit, as node-b can tell: node-a holds the leader key (epoch 9) but does not serve",
		"leader key held by node-a, epoch 9, 3 members")
	mustContain(t, "stderr", errOut, "ha status: no leader can commit, as node-b can tell",
		"LEADER_WAITING_FOR_CONFIRMED_VOTERS", "autonomyctl member remove NAME")
	if strings.Contains(out, "no quorum") {
		t.Errorf("etcd has a quorum here; the table says otherwise:\n%s", out)
	}
}
