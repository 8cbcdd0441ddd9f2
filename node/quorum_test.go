package node

import (
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/cluster"
	"github.com/autonomyops/orchestrator/walrepl"
)

// TestServesAsSeen: how a node judges that another node, which holds the
// leader key for epoch 9, serves: gossip says so for that epoch while it sees
// the holder alive, or the replication stream shows it (this node follows
// epoch 9, heard the holder within a second, and the holder's safe_seq covers
// epoch 9's start frame).
func TestServesAsSeen(t *testing.T) {
	li := &cluster.LeaderInfo{NodeInfo: cluster.NodeInfo{Name: "a"}, Epoch: 9}
	epochs := []walrepl.EpochStart{{Epoch: 4, FirstSeq: 1}, {Epoch: 9, FirstSeq: 120}}
	gossip := func(state string, epoch uint64, s cluster.Serving) *cluster.PeerHealth {
		return &cluster.PeerHealth{Health: cluster.Health{Name: "a", Epoch: epoch, Serving: s}, State: state}
	}
	started := walrepl.ReplicaStatus{Role: walrepl.RoleFollower, Epoch: 9, Leader: "a", LeaderSafeSeq: 130, SinceLeader: 40 * time.Millisecond}
	for _, tc := range []struct {
		name   string
		g      *cluster.PeerHealth
		rs     walrepl.ReplicaStatus
		epochs []walrepl.EpochStart
		want   bool
	}{
		{"gossip: serving", gossip("alive", 9, cluster.ServingYes), walrepl.ReplicaStatus{}, nil, true},
		{"gossip: not serving (a candidate waiting for voters)", gossip("alive", 9, cluster.ServingNo), walrepl.ReplicaStatus{}, nil, false},
		{"gossip still says not serving (it lags a new epoch), the stream shows it started", gossip("alive", 9, cluster.ServingNo), started, epochs, true},
		{"gossip says not serving, the stream shows nothing", gossip("alive", 9, cluster.ServingNo), walrepl.ReplicaStatus{Role: walrepl.RoleLearner}, epochs, false},
		{"a learner that lacks the epoch's start frame: gossip says serving", gossip("alive", 9, cluster.ServingYes), walrepl.ReplicaStatus{Role: walrepl.RoleLearner, Epoch: 9, Leader: "a", LeaderSafeSeq: 130, SinceLeader: time.Millisecond}, epochs[:1], true},
		{"gossip of an older epoch: the stream decides (started)", gossip("alive", 8, cluster.ServingYes), started, epochs, true},
		{"gossip of an older epoch: the stream decides (nothing heard)", gossip("alive", 8, cluster.ServingYes), walrepl.ReplicaStatus{}, epochs, false},
		{"gossip sees it dead: the stream decides", gossip("dead", 9, cluster.ServingYes), walrepl.ReplicaStatus{}, epochs, false},
		{"an older version says nothing: the stream decides", gossip("alive", 9, cluster.ServingUnknown), started, epochs, true},
		{"never in gossip, heard within the current tick", nil, walrepl.ReplicaStatus{Role: walrepl.RoleFollower, Epoch: 9, Leader: "a", LeaderSafeSeq: 120}, epochs, true},
		{"never in gossip, epoch start not committed yet", nil, walrepl.ReplicaStatus{Role: walrepl.RoleFollower, Epoch: 9, Leader: "a", LeaderSafeSeq: 119, SinceLeader: time.Millisecond}, epochs, false},
		{"never in gossip, epoch start not in this log yet (catching up)", nil, started, epochs[:1], false},
		{"never in gossip, silent for a second", nil, walrepl.ReplicaStatus{Role: walrepl.RoleFollower, Epoch: 9, Leader: "a", LeaderSafeSeq: 130, SinceLeader: peerAliveWindow}, epochs, false},
		{"never in gossip, following another leader", nil, walrepl.ReplicaStatus{Role: walrepl.RoleFollower, Epoch: 9, Leader: "b", LeaderSafeSeq: 130, SinceLeader: time.Millisecond}, epochs, false},
		{"never in gossip, following an older epoch", nil, walrepl.ReplicaStatus{Role: walrepl.RoleFollower, Epoch: 4, Leader: "a", LeaderSafeSeq: 130, SinceLeader: time.Millisecond}, epochs, false},
	} {
		if got := servesAsSeen(li, tc.g, tc.rs, tc.epochs); got != tc.want {
			t.Errorf("%s: serves %v, want %v", tc.name, got, tc.want)
		}
	}
}
