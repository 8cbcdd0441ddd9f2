package walrepl

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// testCluster is an in-process cluster of Replicas over an InmemNetwork, each
// with a real WAL on disk. Elections are the test's to call (elect), standing
// in for etcd: every call takes a new, larger epoch, and nothing stops two
// nodes from believing they lead at once — the protocol must make that safe.
type testCluster struct {
	t     *testing.T
	net   *InmemNetwork
	names []string
	root  string

	mu    sync.Mutex
	epoch uint64
	nodes map[string]*testNode
}

type testNode struct {
	name   string
	dir    string
	wal    *WAL
	rep    *Replica
	inject func(string) error // settable fault seam for the WAL (may be nil)

	leadCancel context.CancelFunc
	leadDone   chan error
	leadEpoch  uint64
}

func testLogger(t *testing.T) logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(testWriter{t})
	l.SetLevel(logrus.WarnLevel)
	return l
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// makeCluster starts n nodes named n1..nN.
func makeCluster(t *testing.T, n int) *testCluster {
	t.Helper()
	c := &testCluster{t: t, net: NewInmemNetwork(), root: t.TempDir(), nodes: map[string]*testNode{}}
	for i := 1; i <= n; i++ {
		c.names = append(c.names, fmt.Sprintf("n%d", i))
	}
	for _, name := range c.names {
		c.start(name, false)
	}
	t.Cleanup(func() {
		for _, name := range c.names {
			c.crash(name)
		}
	})
	return c
}

func (c *testCluster) node(name string) *testNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[name]
}

// start opens (or reopens) name's WAL and replica and connects it.
func (c *testCluster) start(name string, joinAsLearner bool) {
	c.t.Helper()
	tn := &testNode{name: name, dir: filepath.Join(c.root, name, "telemetry")}
	o := DefaultOptions(tn.dir)
	o.Logger = testLogger(c.t)
	o.Initialized = false
	o.SafeSeqPersistInterval = 10 * time.Millisecond
	o.Inject = func(p string) error {
		if f := tn.inject; f != nil {
			return f(p)
		}
		return nil
	}
	w, rep, err := Open(o)
	if err != nil {
		c.t.Fatalf("open %s: %v", name, err)
	}
	rc := DefaultReplicaConfig(name, w, c.net.Transport(name))
	rc.Logger = o.Logger
	rc.QuorumTimeout = 600 * time.Millisecond
	rc.PromiseTimeout = 2 * time.Second
	rc.JoinAsLearner = joinAsLearner && (rep.Created || rep.Reset)
	r, err := NewReplica(rc)
	if err != nil {
		c.t.Fatalf("replica %s: %v", name, err)
	}
	tn.wal, tn.rep = w, r
	c.mu.Lock()
	c.nodes[name] = tn
	c.mu.Unlock()
	c.net.Register(name, r)
}

// crash stops name abruptly: leadership ends, links drop, queued writes and
// the safe_seq not yet persisted are lost.
func (c *testCluster) crash(name string) {
	tn := c.node(name)
	if tn == nil || tn.wal == nil {
		return
	}
	c.net.Unregister(name)
	if tn.leadCancel != nil {
		tn.leadCancel()
		<-tn.leadDone
		tn.leadCancel = nil
	}
	tn.wal.crash()
	tn.wal = nil
}

// restart crashes (if running) and starts name again on the same disk.
func (c *testCluster) restart(name string) {
	c.crash(name)
	c.start(name, false)
}

// elect makes name leader of a fresh epoch (in the background) and returns
// the epoch. It does not wait for the epoch to start.
func (c *testCluster) elect(name string) uint64 {
	c.t.Helper()
	tn := c.node(name)
	if tn.leadCancel != nil {
		tn.leadCancel()
		<-tn.leadDone
	}
	c.mu.Lock()
	c.epoch += 10
	epoch := c.epoch
	c.mu.Unlock()
	var peers []Peer
	for _, n := range c.names {
		if n != name {
			peers = append(peers, Peer{Name: n, Addr: n})
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	tn.leadCancel, tn.leadDone, tn.leadEpoch = cancel, done, epoch
	go func() { done <- tn.rep.Lead(ctx, epoch, c.names, peers) }()
	return epoch
}

// waitStarted waits until name leads a started epoch.
func (c *testCluster) waitStarted(name string, d time.Duration) {
	c.t.Helper()
	waitFor(c.t, d, fmt.Sprintf("%s to start its epoch", name), func() bool {
		return c.node(name).rep.Status().EpochStarted
	})
}

// propose proposes k events on name, each {"n":i,"tag":tag}, within d.
func (c *testCluster) propose(name, tag string, k int, d time.Duration) (uint64, uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var ps [][]byte
	for i := 0; i < k; i++ {
		ps = append(ps, []byte(fmt.Sprintf(`{"n":%d,"tag":%q}`, i, tag)))
	}
	return c.node(name).rep.Propose(ctx, time.Now().UnixNano(), ps)
}

// mustPropose proposes and fails the test unless committed.
func (c *testCluster) mustPropose(name, tag string, k int) (uint64, uint64) {
	c.t.Helper()
	f, l, err := c.propose(name, tag, k, 5*time.Second)
	if err != nil {
		c.t.Fatalf("propose on %s: %v", name, err)
	}
	return f, l
}

// frames returns every frame of name's log (up to its last written frame).
func (c *testCluster) frames(name string) []Frame {
	c.t.Helper()
	w := c.node(name).wal
	var out []Frame
	for from := uint64(1); ; {
		fs, err := w.ReadFrames(from, w.WrittenSeq(), 4096, 4<<20)
		if err != nil {
			c.t.Fatalf("read %s: %v", name, err)
		}
		if len(fs) == 0 {
			return out
		}
		for _, f := range fs {
			f.Payload = append([]byte(nil), f.Payload...)
			out = append(out, f)
		}
		from = fs[len(fs)-1].Seq + 1
	}
}

// checkCommitted asserts that every running node holds exactly the frames of
// want (the reference log) up to its own safe_seq, and that want holds every
// acknowledged Seq in acked.
func (c *testCluster) checkCommitted(want []Frame, acked map[uint64]string) {
	c.t.Helper()
	for seq, tag := range acked {
		if seq > uint64(len(want)) || !bytes.Contains(want[seq-1].Payload, []byte(tag)) {
			c.t.Errorf("acknowledged Seq=%d (%s) is not in the reference log", seq, tag)
		}
	}
	names := append([]string(nil), c.names...)
	sort.Strings(names)
	for _, name := range names {
		tn := c.node(name)
		if tn == nil || tn.wal == nil {
			continue
		}
		safe := tn.wal.SafeSeq()
		got := c.frames(name)
		if uint64(len(got)) < safe {
			c.t.Errorf("%s: safe_seq=%d but only %d frames", name, safe, len(got))
			continue
		}
		for i := uint64(0); i < safe; i++ {
			if i >= uint64(len(want)) || !sameFrame(got[i], want[i]) {
				c.t.Errorf("%s: frame Seq=%d differs from the reference log (safe_seq=%d)", name, i+1, safe)
				break
			}
		}
	}
}

func sameFrame(a, b Frame) bool {
	return a.Seq == b.Seq && a.Epoch == b.Epoch && a.Time == b.Time && a.Type == b.Type && bytes.Equal(a.Payload, b.Payload)
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
