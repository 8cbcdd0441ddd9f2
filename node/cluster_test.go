package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/autonomyops/orchestrator/node/proctest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// startLoad runs k writers until the returned stop is called.
func startLoad(w *proctest.Writer, k int, prefix string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var next atomic.Int64
	for i := 0; i < k; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				w.Write(ctx, fmt.Sprintf("%s-%d", prefix, next.Add(1)))
			}
		}()
	}
	return func() { cancel(); wg.Wait() }
}

func walStatus(n *proctest.Node) (wire.WALStatus, bool) {
	var ws wire.WALStatus
	resp, err := proctest.Client.Get(n.URL() + "/v1/wal/status")
	if err != nil {
		return ws, false
	}
	defer resp.Body.Close()
	return ws, json.NewDecoder(resp.Body).Decode(&ws) == nil
}

// waitConverged waits until every running node's safe_seq equals the
// leader's and the leader's covers everything it wrote.
func waitConverged(t *testing.T, c *proctest.Cluster, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		var safes []uint64
		ok := true
		for _, n := range c.Nodes {
			if !n.Running() {
				continue
			}
			ws, good := walStatus(n)
			ok = ok && good
			safes = append(safes, ws.SafeSeq)
		}
		if ok && len(safes) > 0 && slices.Min(safes) == slices.Max(safes) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("nodes did not converge within %s", d)
}

// TestCluster_KillLeaderUnderLoad: three processes, one healthy leader;
// under continuous writes the leader is kill -9'd five times; each time a new
// leader commits within 5 s, the old one restarts and catches up (a leader
// confirms its log) before the next kill, and in the
// end every acknowledged event is on every node exactly once with identical
// frames.
func TestCluster_KillLeaderUnderLoad(t *testing.T) {
	c := proctest.NewCluster(t, 3)
	c.Start()
	c.WaitLeader(60 * time.Second)
	w := proctest.NewWriter(c)
	stop := startLoad(w, 4, "kill")
	var failovers []time.Duration
	for round := 0; round < 5; round++ {
		time.Sleep(800 * time.Millisecond)
		leader := c.WaitLeader(30 * time.Second)
		t0 := time.Now()
		leader.Kill()
		var okAt time.Time
		deadline := t0.Add(15 * time.Second)
		for time.Now().Before(deadline) {
			if at, ok := w.FirstOKAfter(t0); ok {
				okAt = at
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if okAt.IsZero() {
			t.Fatalf("round %d: no write committed within 15 s of killing %s", round, leader.Name)
		}
		d := okAt.Sub(t0)
		failovers = append(failovers, d)
		t.Logf("round %d: killed leader %s; next write committed after %s", round, leader.Name, d.Round(time.Millisecond))
		if d > 5*time.Second {
			t.Errorf("round %d: failover took %s, more than 5 s", round, d)
		}
		leader.Start() // the old leader rejoins and catches up
		// Before the next kill, a leader must have confirmed the restarted
		// node's log (DESIGN §6 rule 13): killing the leader earlier is a
		// double fault, and writes rightly stall until the killed node is
		// back (docs/operations.md, "Upgrades"; under load the restart can
		// take longer than the 800 ms between rounds).
		waitCaughtUp(t, c, leader, 30*time.Second)
	}
	stop()
	c.WaitLeader(30 * time.Second)
	waitConverged(t, c, 30*time.Second)
	acked := w.Snapshot()
	if len(acked) < 100 {
		t.Fatalf("only %d events acknowledged", len(acked))
	}
	c.CheckAllNodes(acked)
	for _, n := range c.Nodes {
		t.Logf("%s: %d lease revocations", n.Name, strings.Count(n.Logs(), "LEADER_LEASE_REVOKED"))
	}
	slices.Sort(failovers)
	t.Logf("acknowledged %d events; failover median %s, max %s", len(acked), failovers[len(failovers)/2].Round(time.Millisecond),
		failovers[len(failovers)-1].Round(time.Millisecond))
	if path := os.Getenv("AUTONOMY_FAILOVER_REPORT"); path != "" {
		b, _ := json.Marshal(failovers)
		os.WriteFile(path, b, 0o644)
	}
}

// TestCluster_PausedLeaderIsFenced: the leader is frozen (SIGSTOP) beyond its
// lease TTL, a new leader takes writes, and when the old one is thawed it
// never commits again in its old epoch: writes sent to it are not
// acknowledged there, its health turns 503, and the final log has no frame of
// the old epoch after the new epoch's barrier.
func TestCluster_PausedLeaderIsFenced(t *testing.T) {
	c := proctest.NewCluster(t, 3)
	c.Start()
	old := c.WaitLeader(60 * time.Second)
	_, oh := old.Health()
	w := proctest.NewWriter(c)
	stop := startLoad(w, 2, "pre")
	time.Sleep(500 * time.Millisecond)
	old.Signal(syscall.SIGSTOP)
	var newLeader *proctest.Node
	deadline := time.Now().Add(20 * time.Second)
	for newLeader == nil && time.Now().Before(deadline) {
		for _, n := range c.Nodes {
			if n == old {
				continue
			}
			if code, h := n.Health(); code == http.StatusOK && h.Epoch > oh.Epoch {
				newLeader = n
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if newLeader == nil {
		t.Fatal("no new leader while the old one was paused")
	}
	time.Sleep(500 * time.Millisecond) // the new leader takes writes
	stop()
	// A write aimed at the thawing old leader: it must not be acknowledged
	// by the old epoch.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var code int
	var body []byte
	done := make(chan struct{})
	go func() {
		defer close(done)
		code, body, _ = proctest.Post(ctx, old.URL()+"/v1/telemetry/events", `{"id":"to-old","kind":"fence"}`)
	}()
	time.Sleep(100 * time.Millisecond)
	old.Signal(syscall.SIGCONT)
	<-done
	if code == http.StatusOK {
		var ir wire.IngestResponse
		json.Unmarshal(body, &ir)
		t.Logf("thawed old leader answered 200 %s", body)
	}
	waitFor := time.Now().Add(10 * time.Second)
	for time.Now().Before(waitFor) {
		if code, _ := old.Health(); code != http.StatusOK {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, h := old.Health(); code == http.StatusOK && h.Epoch == oh.Epoch {
		t.Fatalf("the thawed old leader still reports healthy in its old epoch %d", oh.Epoch)
	}
	c.WaitLeader(30 * time.Second)
	waitConverged(t, c, 30*time.Second)
	acked := w.Snapshot()
	c.CheckAllNodes(acked)
	// No frame of the old epoch after the first frame of a newer epoch.
	frames := proctest.AllFrames(t, newLeader.URL())
	newer := false
	for _, f := range frames {
		if f.Epoch > oh.Epoch {
			newer = true
		}
		if newer && f.Epoch == oh.Epoch {
			t.Fatalf("frame Seq=%d of the old epoch %d after the new epoch began", f.Seq, oh.Epoch)
		}
	}
}

// TestCluster_EmptyDataDirRejoinsAsLearner: a follower whose whole data dir
// is lost rejoins (--initial-cluster-state existing) as a learner, catches up
// and then counts again; nothing acknowledged is lost.
func TestCluster_EmptyDataDirRejoinsAsLearner(t *testing.T) {
	c := proctest.NewCluster(t, 3)
	c.Start()
	leader := c.WaitLeader(60 * time.Second)
	w := proctest.NewWriter(c)
	stop := startLoad(w, 4, "pre")
	time.Sleep(time.Second)
	var victim *proctest.Node
	for _, n := range c.Nodes {
		if n != leader {
			victim = n
			break
		}
	}
	victim.Kill()
	if err := os.RemoveAll(victim.DataDir); err != nil {
		t.Fatal(err)
	}
	// The etcd member lost its raft log too: replace it the way etcd
	// requires (remove, add back), then join with state "existing".
	replaceEtcdMember(t, leader, victim)
	victim.Extra = append(victim.Extra, "--initial-cluster-state", "existing")
	victim.Start()
	sawLearner := false
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		_, h := victim.Health()
		if h.Role == "learner" {
			sawLearner = true
		}
		if sawLearner && h.Role == "follower" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !sawLearner {
		t.Fatalf("the node with an empty data dir never reported role learner (running=%v):\n%s", victim.Running(), victim.Logs())
	}
	if _, h := victim.Health(); h.Role != "follower" {
		t.Fatalf("the learner did not become a follower after catching up (role %q)", h.Role)
	}
	stop()
	// Now the leader dies: the caught-up node must carry every acknowledged frame.
	leader = c.WaitLeader(30 * time.Second)
	leader.Kill()
	c.WaitLeader(30 * time.Second)
	waitConverged(t, c, 30*time.Second)
	c.CheckAllNodes(w.Snapshot())
}

func replaceEtcdMember(t *testing.T, via, victim *proctest.Node) {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{fmt.Sprintf("http://127.0.0.1:%d", via.Ports.EtcdClient)}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ml, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ml.Members {
		if m.Name == victim.Name {
			if _, err := cli.MemberRemove(ctx, m.ID); err != nil {
				t.Fatalf("member remove: %v", err)
			}
		}
	}
	// Right after a removal etcd may call the cluster unhealthy for a moment
	// (strict reconfiguration check); retry.
	for {
		_, err := cli.MemberAdd(ctx, []string{victim.PeerURL()})
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("member add: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestCluster_RolledBackDiskIsALearner: an old copy of a follower's
// telemetry directory is restored; the node recognises that it lacks frames
// it was seen to hold, rejoins as a learner and counts only after catching up.
func TestCluster_RolledBackDiskIsALearner(t *testing.T) {
	c := proctest.NewCluster(t, 3)
	c.Start()
	leader := c.WaitLeader(60 * time.Second)
	w := proctest.NewWriter(c)
	stop := startLoad(w, 2, "a")
	time.Sleep(500 * time.Millisecond)
	var f *proctest.Node
	for _, n := range c.Nodes {
		if n != leader {
			f = n
			break
		}
	}
	if code := f.Stop(); code != 0 {
		t.Fatalf("stop: %d", code)
	}
	tdir := filepath.Join(f.DataDir, "telemetry")
	old := t.TempDir()
	if out, err := exec.Command("cp", "-a", tdir+"/.", old).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	f.Start()
	time.Sleep(3 * time.Second) // the follower catches up and the leader records its position
	stop()
	waitConverged(t, c, 30*time.Second)
	f.Kill()
	os.RemoveAll(tdir)
	if out, err := exec.Command("cp", "-a", old+"/.", tdir).CombinedOutput(); err != nil {
		t.Fatalf("restore: %v %s", err, out)
	}
	f.Start()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(f.Logs(), "WAL_ROLLED_BACK") {
		if time.Now().After(deadline) || !f.Running() {
			t.Fatalf("the restored old copy was not recognised:\n%s", f.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for {
		if _, h := f.Health(); h.Role == "follower" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the rolled-back node never caught up to follower")
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitConverged(t, c, 30*time.Second)
	c.CheckAllNodes(w.Snapshot())
}
