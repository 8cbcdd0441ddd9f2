package walrepl

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
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

	// tune, if set, adjusts each node's ReplicaConfig at every start (a
	// test's timing, batching or clock).
	tune func(name string, rc *ReplicaConfig)

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
	// injectFn is the race-free fault seam: set it with testCluster.setInject
	// while the node runs. It takes precedence over inject.
	injectFn atomic.Pointer[func(string) error]

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
	// Small segments, so that the replication tests also run through
	// rolls, multi-segment reads and truncations into sealed segments.
	o.SegmentBytes = testSegmentBytes
	o.Inject = func(p string) error {
		if f := tn.injectFn.Load(); f != nil {
			return (*f)(p)
		}
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
	rc.NewLog = rep.Created
	if rc.JoinAsLearner {
		// What node/ does: the promise lost with the WAL is restored from
		// etcd's current leader epoch (here: the harness's last election).
		c.mu.Lock()
		rc.MinEpoch = c.epoch
		c.mu.Unlock()
	}
	if c.tune != nil {
		c.tune(name, &rc)
	}
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
	tn.rep.Close()
	c.mu.Lock()
	tn.wal = nil
	c.mu.Unlock()
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
	base, _ := w.Base()
	for from := max(base, 1); ; {
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

// makeClusterWith starts n nodes whose ReplicaConfig tune adjusts at every
// start.
func makeClusterWith(t *testing.T, n int, tune func(name string, rc *ReplicaConfig)) *testCluster {
	t.Helper()
	c := &testCluster{t: t, net: NewInmemNetwork(), root: t.TempDir(), nodes: map[string]*testNode{}, tune: tune}
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

// setInject installs f as name's WAL fault seam (nil removes it). Safe while
// the node runs.
func (c *testCluster) setInject(name string, f func(point string) error) {
	tn := c.node(name)
	if f == nil {
		tn.injectFn.Store(nil)
		return
	}
	tn.injectFn.Store(&f)
}

// walOf returns name's open WAL, or nil while it is crashed. Safe from any
// goroutine.
func (c *testCluster) walOf(name string) *WAL {
	c.mu.Lock()
	defer c.mu.Unlock()
	if tn := c.nodes[name]; tn != nil {
		return tn.wal
	}
	return nil
}

// running reports whether name is up.
func (c *testCluster) running(name string) bool { return c.walOf(name) != nil }

// leadEnded waits up to d for name's current Lead call to return and returns
// its error; ok is false if it is still running. Once it has returned, crash
// and elect no longer wait for it.
func (c *testCluster) leadEnded(name string, d time.Duration) (err error, ok bool) {
	c.t.Helper()
	tn := c.node(name)
	if tn.leadDone == nil {
		c.t.Fatalf("%s was never elected", name)
	}
	select {
	case err = <-tn.leadDone:
		tn.leadCancel, tn.leadDone = nil, nil
		return err, true
	case <-time.After(d):
		return nil, false
	}
}

// stepDown ends name's leadership (if any) as losing the etcd election
// would, and waits for Lead to return.
func (c *testCluster) stepDown(name string) {
	tn := c.node(name)
	if tn == nil || tn.leadCancel == nil {
		return
	}
	tn.leadCancel()
	<-tn.leadDone
	tn.leadCancel, tn.leadDone = nil, nil
}

// reset wipes name's telemetry directory (a new disk) and starts it again
// as a learner, as the node does after an operator reset.
func (c *testCluster) reset(name string) {
	c.t.Helper()
	c.crash(name)
	dir := c.node(name).dir
	if err := os.RemoveAll(dir); err != nil {
		c.t.Fatal(err)
	}
	c.start(name, true)
}

// payloads returns k distinct event payloads tagged tag.
func payloads(tag string, k int) [][]byte {
	ps := make([][]byte, k)
	for i := range ps {
		ps[i] = []byte(fmt.Sprintf(`{"n":%d,"tag":%q}`, i, tag))
	}
	return ps
}

// ackLog records every acknowledged frame: Seq → payload.
type ackLog struct {
	mu        sync.Mutex
	acked     map[uint64][]byte
	conflicts []string // two different frames acknowledged at one Seq
}

func newAckLog() *ackLog { return &ackLog{acked: map[uint64][]byte{}} }

func (a *ackLog) add(first uint64, ps [][]byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, p := range ps {
		seq := first + uint64(i)
		if old, ok := a.acked[seq]; ok && !bytes.Equal(old, p) {
			a.conflicts = append(a.conflicts, fmt.Sprintf("Seq=%d acknowledged twice: %s, then %s", seq, old, p))
			continue // keep the first: the later one is the violation
		}
		a.acked[seq] = p
	}
}

func (a *ackLog) len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.acked)
}

// proposeAck proposes ps on name within d and records them if acknowledged.
func (c *testCluster) proposeAck(a *ackLog, name string, ps [][]byte, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	tn := c.node(name)
	first, _, err := tn.rep.Propose(ctx, time.Now().UnixNano(), ps)
	if err == nil {
		a.add(first, ps)
	}
	return err
}

// checkAcked asserts that name's log holds every acknowledged payload at its
// Seq.
func (c *testCluster) checkAcked(a *ackLog, name string) {
	c.t.Helper()
	// A node may know a frame is committed (a majority fsynced it) before its
	// own write of it completes: give its writes a moment before reading.
	a.mu.Lock()
	var top uint64
	for s := range a.acked {
		top = max(top, s)
	}
	a.mu.Unlock()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if w := c.walOf(name); w == nil || w.WrittenSeq() >= top || w.Err() != nil {
			break
		}
	}
	got := c.frames(name)
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, cf := range a.conflicts {
		c.t.Errorf("two different frames acknowledged at one Seq: %s", cf)
	}
	a.conflicts = nil
	seqs := make([]uint64, 0, len(a.acked))
	for s := range a.acked {
		seqs = append(seqs, s)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	bad := 0
	for _, s := range seqs {
		if s > uint64(len(got)) || !bytes.Equal(got[s-1].Payload, a.acked[s]) {
			if bad < 5 {
				have := "<missing>"
				if s <= uint64(len(got)) {
					have = fmt.Sprintf("epoch %d %s", got[s-1].Epoch, got[s-1].Payload)
				}
				c.t.Errorf("%s: acknowledged Seq=%d %s is lost: log has %s", name, s, a.acked[s], have)
			}
			bad++
		}
	}
	if bad > 5 {
		c.t.Errorf("%s: %d acknowledged frames lost in all", name, bad)
	}
}

// waitConverged waits until every running node holds the same frames as
// ref's log up to ref's last frame and has safe_seq at least that far.
func (c *testCluster) waitConverged(ref string, d time.Duration) {
	c.t.Helper()
	waitFor(c.t, d, "every node to converge on "+ref+"'s log", func() bool {
		w := c.walOf(ref)
		if w == nil {
			return false
		}
		last, _, _, safe := w.Positions()
		if safe < last {
			return false
		}
		for _, n := range c.names {
			if w := c.walOf(n); w != nil && (w.SafeSeq() < last || w.WrittenSeq() < last) {
				return false
			}
		}
		return true
	})
	want := c.frames(ref)
	for _, n := range c.names {
		if !c.running(n) {
			continue
		}
		got := c.frames(n)
		for i := range want {
			if i >= len(got) || !sameFrame(got[i], want[i]) {
				c.t.Errorf("%s differs from %s at Seq=%d", n, ref, i+1)
				break
			}
		}
	}
}

// history samples every node's safe_seq and the frames up to it while a
// test runs, and checks what the cluster reported committed: a node's
// safe_seq never goes down while its WAL is open, its persisted safe_seq
// never goes down across restarts, and a frame any node held at or below
// its safe_seq is never seen different anywhere later.
type history struct {
	c *testCluster

	mu        sync.Mutex
	committed map[uint64]Frame
	readTo    map[*WAL]uint64 // frames already checked, per WAL instance
	safe      map[*WAL]uint64
	persisted map[string]uint64
	errs      []string
	samples   int

	stop chan struct{}
	done chan struct{}
}

func newHistory(c *testCluster) *history {
	return &history{c: c, committed: map[uint64]Frame{}, readTo: map[*WAL]uint64{}, safe: map[*WAL]uint64{}, persisted: map[string]uint64{}}
}

func (h *history) fail(format string, args ...any) {
	if len(h.errs) < 20 {
		h.errs = append(h.errs, fmt.Sprintf(format, args...))
	}
}

// forget drops name's persisted watermark: its disk was replaced.
func (h *history) forget(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.persisted, name)
}

// reset replaces name's disk (testCluster.reset) with no sample in between,
// so its persisted watermark may start again from 0.
func (h *history) reset(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.c.reset(name)
	delete(h.persisted, name)
}

// sample takes one sample of every running node.
func (h *history) sample() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.samples++
	for _, name := range h.c.names {
		w := h.c.walOf(name)
		if w == nil {
			continue
		}
		st := w.Status()
		if st.Failed != "" {
			continue
		}
		if prev := h.safe[w]; st.SafeSeq < prev {
			h.fail("%s: safe_seq went down %d → %d", name, prev, st.SafeSeq)
		}
		h.safe[w] = max(h.safe[w], st.SafeSeq)
		if prev := h.persisted[name]; st.PersistedSafeSeq < prev {
			h.fail("%s: persisted safe_seq went down %d → %d", name, prev, st.PersistedSafeSeq)
		}
		h.persisted[name] = max(h.persisted[name], st.PersistedSafeSeq)
		limit := min(st.SafeSeq, w.WrittenSeq())
		for from := h.readTo[w] + 1; from <= limit; {
			fs, err := w.ReadFrames(from, limit, 4096, 4<<20)
			if err != nil || len(fs) == 0 {
				break // crashed meanwhile
			}
			for _, f := range fs {
				if old, ok := h.committed[f.Seq]; ok && !sameFrame(old, f) {
					h.fail("%s: committed frame Seq=%d changed: was epoch %d %s, now epoch %d %s (safe_seq %d)",
						name, f.Seq, old.Epoch, old.Payload, f.Epoch, f.Payload, st.SafeSeq)
				} else if !ok {
					f.Payload = append([]byte(nil), f.Payload...)
					h.committed[f.Seq] = f
				}
			}
			from = fs[len(fs)-1].Seq + 1
			h.readTo[w] = fs[len(fs)-1].Seq
		}
	}
}

// start samples every d in the background until stopSampling.
func (h *history) start(d time.Duration) {
	h.stop, h.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(h.done)
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-t.C:
				h.sample()
			}
		}
	}()
}

func (h *history) stopSampling() {
	if h.stop != nil {
		close(h.stop)
		<-h.done
		h.stop = nil
	}
}

// check reports every violation seen, and then checks that every running
// node's log holds every frame ever reported committed.
func (h *history) check(t *testing.T) bool {
	t.Helper()
	h.stopSampling()
	h.sample()
	h.mu.Lock()
	defer h.mu.Unlock()
	ok := len(h.errs) == 0
	for _, e := range h.errs {
		t.Error(e)
	}
	for _, name := range h.c.names {
		if !h.c.running(name) {
			continue
		}
		got := h.c.frames(name)
		bad := 0
		for seq, f := range h.committed {
			if seq > uint64(len(got)) || !sameFrame(got[seq-1], f) {
				if bad == 0 {
					t.Errorf("%s: frame Seq=%d (epoch %d %s) was reported committed and is now lost", name, seq, f.Epoch, f.Payload)
				}
				bad++
				ok = false
			}
		}
		if bad > 1 {
			t.Errorf("%s: %d committed frames lost in all", name, bad)
		}
	}
	return ok
}

// waitConfirmed waits until a leader has confirmed name's log since it
// started (DESIGN §6 rule 13).
func waitConfirmed(t *testing.T, c *testCluster, name string) {
	t.Helper()
	waitFor(t, 5*time.Second, name+"'s log to be confirmed by a leader", func() bool {
		return !c.node(name).rep.Status().Unconfirmed
	})
}
