//go:build integration

package integration

// Scenarios is the catalogue of issue 5, in its order.
func Scenarios() []*Scenario {
	tmpfs := ClusterOptions{TmpfsNodes: []string{"n1", "n2", "n3"}, TmpfsSize: "16m"}
	return []*Scenario{
		{Num: 1, Name: "kill-leader", Desc: "kill -9 the leader under load (twice)", Run: scKillLeader},
		{Num: 2, Name: "kill-follower", Desc: "kill -9 a follower, restart, catch-up", Run: scKillFollower},
		{Num: 3, Name: "kill-all", Desc: "kill -9 all three at once, restart in random order with the shortest log first", Run: scKillAll},
		{Num: 4, Name: "leader-isolated", Desc: "leader isolated from both followers while clients keep writing to it", Run: scLeaderIsolated},
		{Num: 5, Name: "follower-isolated", Desc: "one follower isolated: no failover, catch-up after heal", Run: scFollowerIsolated},
		{Num: 6, Name: "acks-dropped", Desc: "one-way cut: the followers' acks to the leader dropped", Run: scAcksDropped},
		{Num: 7, Name: "leader-muted", Desc: "one-way cut the other way: the leader's packets to the followers dropped", Run: scLeaderMuted},
		{Num: 8, Name: "leader-etcd-cut", Desc: "leader cut from the etcd peers only, still reaching followers on replication", Run: scLeaderEtcdCut},
		{Num: 9, Name: "bridge", Desc: "bridge: A (leader) and C cannot talk, B sees both", Run: scBridge},
		{Num: 10, Name: "flapping", Desc: "flapping partitions every 1-5 s for a minute under writes", Run: scFlapping},
		{Num: 11, Name: "leader-paused", Desc: "leader paused beyond its lease TTL, a new leader writes, unpause", Run: scLeaderPaused},
		{Num: 12, Name: "follower-paused", Desc: "a follower paused during a burst", Run: scFollowerPaused},
		{Num: 13, Name: "double-leader-kill", Desc: "two leader kills within a second", Run: scDoubleLeaderKill},
		{Num: 14, Name: "empty-follower", Desc: "a follower restarted with an empty data dir, then the leader is killed", Run: scEmptyFollower},
		{Num: 15, Name: "disk-full-leader", Desc: "disk full on the leader", Opts: tmpfs, Run: scDiskFullLeader},
		{Num: 16, Name: "disk-full-follower", Desc: "disk full on a follower", Opts: tmpfs, Run: scDiskFullFollower},
		{Num: 17, Name: "netem", Desc: "75±50 ms delay and 5% loss on every link under load", Run: scNetem},
		{Num: 18, Name: "slow-fsync", Desc: "slow fsync on the leader (failpoint)", Run: scSlowFsync},
		{Num: 19, Name: "crash-failpoints", Desc: "crash at each failpoint of the write path, on a follower and on a new leader", Run: scCrashFailpoints},
		{Num: 20, Name: "bit-flip", Desc: "a bit flipped in a committed frame of a stopped follower; operator reset", Run: scBitFlip},
		{Num: 21, Name: "torn-tail", Desc: "a torn tail on a stopped node (follower, then leader)", Run: scTornTail},
		{Num: 22, Name: "stale-copy", Desc: "an old copy of a follower's WAL restored: never trusted for quorum", Run: scStaleCopy},
		{Num: 23, Name: "rolling-restart", Desc: "rolling restart of all three under load", Run: scRollingRestart},
		{Num: 24, Name: "two-stopped", Desc: "two nodes stopped: the third answers 503, acknowledges nothing, recovers", Run: scTwoStopped},
		{Num: 25, Name: "stale-copy-undetected", Desc: "scenario 22 with the etcd position record off: only the confirmation rule protects",
			Run: scStaleCopyUndetected, Opts: ClusterOptions{Env: map[string]string{"AUTONOMY_FAILPOINTS": "walpos-record=error"}}},
	}
}
