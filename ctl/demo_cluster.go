package ctl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/autonomyops/orchestrator/walrepl"
	"github.com/sirupsen/logrus"
)

// demoCluster is the in-process cluster of `demo --local`: one replicated
// WAL per node, in a directory of its own, over walrepl's in-memory network.
// The demo plays etcd: it decides who leads and hands out strictly
// increasing epochs, as the leader key's CreateRevision would.
type demoCluster struct {
	root  string
	names []string
	net   *walrepl.InmemNetwork
	log   logrus.FieldLogger

	mu    sync.Mutex
	epoch uint64
	nodes map[string]*demoNode
}

// demoNode is one node. Lead runs in a goroutine the cluster owns:
// leadCancel ends it, leadDone says it has returned.
type demoNode struct {
	name string
	dir  string // <root>/<name>/telemetry
	wal  *walrepl.WAL
	rep  *walrepl.Replica

	leadCancel context.CancelFunc
	leadDone   chan error
	epoch      uint64
}

func newDemoCluster(root string, names []string, log logrus.FieldLogger) *demoCluster {
	return &demoCluster{root: root, names: names, net: walrepl.NewInmemNetwork(), log: log, nodes: map[string]*demoNode{}}
}

// replicaConfig is the timing of a demo node: a LAN's, with a quorum
// timeout short enough for the demo to stay brisk.
func (c *demoCluster) replicaConfig(name string, w *walrepl.WAL) walrepl.ReplicaConfig {
	rc := walrepl.DefaultReplicaConfig(name, w, c.net.Transport(name))
	rc.Logger = c.log
	rc.QuorumTimeout = time.Second
	rc.PromiseTimeout = 2 * time.Second
	return rc
}

// start opens name's WAL (creating it on the first start) and connects its
// replica. With reset, the telemetry directory must be gone: the WAL starts
// empty as after `wal reset` (Options.OperatorReset) and the node rejoins as
// a learner (DESIGN §6 rule 7).
func (c *demoCluster) start(name string, reset bool) (*walrepl.Report, error) {
	n := &demoNode{name: name, dir: filepath.Join(c.root, name, "telemetry")}
	_, err := os.Stat(filepath.Join(n.dir, walrepl.WALFile))
	o := walrepl.DefaultOptions(n.dir)
	o.Logger = c.log
	o.Initialized = err == nil || reset
	o.OperatorReset = reset
	o.SafeSeqPersistInterval = 20 * time.Millisecond
	w, rep, err := walrepl.Open(o)
	if err != nil {
		return nil, fmt.Errorf("opening %s's WAL: %w", name, err)
	}
	rc := c.replicaConfig(name, w)
	rc.JoinAsLearner = reset && rep.Reset
	r, err := walrepl.NewReplica(rc)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("starting %s's replica: %w", name, err)
	}
	n.wal, n.rep = w, r
	c.mu.Lock()
	c.nodes[name] = n
	c.mu.Unlock()
	c.net.Register(name, r)
	return rep, nil
}

func (c *demoCluster) node(name string) *demoNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[name]
}

// running lists the nodes that are up, in name order.
func (c *demoCluster) running() []string {
	var out []string
	for _, name := range c.names {
		if n := c.node(name); n != nil && n.wal != nil {
			out = append(out, name)
		}
	}
	return out
}

// crash stops name the way a killed process stops: its links drop at once,
// its leadership ends, its WAL is closed. Idempotent.
func (c *demoCluster) crash(name string) {
	n := c.node(name)
	if n == nil || n.wal == nil {
		return
	}
	c.net.Unregister(name)
	c.endLead(n)
	n.rep.Close()
	n.wal.Close()
	c.mu.Lock()
	n.wal = nil
	c.mu.Unlock()
}

// endLead ends n's Lead, if any, and waits for it: a leader that resigns.
func (c *demoCluster) endLead(n *demoNode) {
	if n.leadCancel == nil {
		return
	}
	n.leadCancel()
	<-n.leadDone
	n.leadCancel, n.leadDone = nil, nil
}

// elect makes name the leader of a new epoch and waits until that epoch has
// started (its barrier committed by a majority), at most within d.
func (c *demoCluster) elect(ctx context.Context, name string, d time.Duration) (uint64, error) {
	n := c.node(name)
	if n == nil || n.wal == nil {
		return 0, fmt.Errorf("%s is not running", name)
	}
	c.endLead(n)
	c.mu.Lock()
	c.epoch++
	epoch := c.epoch
	c.mu.Unlock()
	var peers []walrepl.Peer
	for _, p := range c.names {
		if p != name {
			peers = append(peers, walrepl.Peer{Name: p, Addr: p})
		}
	}
	lctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	n.leadCancel, n.leadDone, n.epoch = cancel, done, epoch
	go func() { done <- n.rep.Lead(lctx, epoch, c.names, peers) }()

	deadline := time.Now().Add(d)
	for {
		if st := n.rep.Status(); st.Role == walrepl.RoleLeader && st.Epoch == epoch && st.EpochStarted {
			return epoch, nil
		}
		select {
		case err := <-done:
			n.leadCancel, n.leadDone = nil, nil
			cancel()
			return epoch, fmt.Errorf("%s could not lead epoch %d: %w", name, epoch, err)
		default:
		}
		if time.Now().After(deadline) {
			c.endLead(n)
			return epoch, fmt.Errorf("%s did not start epoch %d within %s", name, epoch, d)
		}
		if err := walrepl.Sleep(ctx, 2*time.Millisecond); err != nil {
			c.endLead(n)
			return epoch, err
		}
	}
}

// close stops every node. Idempotent.
func (c *demoCluster) close() {
	for _, name := range c.names {
		c.crash(name)
	}
}

// waitFor polls cond every few milliseconds until it holds, d passes or ctx
// ends.
func waitFor(ctx context.Context, d time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", d, what)
		}
		if err := walrepl.Sleep(ctx, 3*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// ackLog is every acknowledged event: Seq → payload, as its client saw it.
type ackLog struct {
	mu    sync.Mutex
	acked map[uint64][]byte
	max   uint64
}

func newAckLog() *ackLog { return &ackLog{acked: map[uint64][]byte{}} }

func (a *ackLog) add(first uint64, ps [][]byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, p := range ps {
		s := first + uint64(i)
		a.acked[s] = p
		a.max = max(a.max, s)
	}
}

func (a *ackLog) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.acked)
}

// verify checks that name's log holds every acknowledged event at its Seq.
// It first waits (within d) until name knows those Seqs are committed.
func (c *demoCluster) verify(ctx context.Context, a *ackLog, name string, d time.Duration) error {
	a.mu.Lock()
	top := a.max
	want := make(map[uint64][]byte, len(a.acked))
	for s, p := range a.acked {
		want[s] = p
	}
	a.mu.Unlock()
	n := c.node(name)
	if n == nil || n.wal == nil {
		return fmt.Errorf("%s is not running", name)
	}
	w := n.wal
	if err := waitFor(ctx, d, fmt.Sprintf("%s to hold Seq %d as committed", name, top), func() bool {
		// Committed as this node knows it, and on its disk: a follower may
		// learn a safe_seq before its own write of those frames completes.
		_, _, durable, safe := w.Positions()
		return safe >= top && durable >= top
	}); err != nil {
		return err
	}
	got := 0
	for from := uint64(1); from <= top; {
		frames, err := w.ReadFrames(from, top, 4096, 4<<20)
		if err != nil {
			return fmt.Errorf("reading %s's WAL: %w", name, err)
		}
		if len(frames) == 0 {
			break
		}
		for _, f := range frames {
			if p, ok := want[f.Seq]; ok {
				if f.Type != walrepl.FrameEvent || string(f.Payload) != string(p) {
					return fmt.Errorf("LOSS on %s: acknowledged Seq=%d holds %q, not %q", name, f.Seq, f.Payload, p)
				}
				got++
			}
		}
		from = frames[len(frames)-1].Seq + 1
	}
	if got != len(want) {
		return fmt.Errorf("LOSS on %s: %d of %d acknowledged events found", name, got, len(want))
	}
	return nil
}

// ingestResult is what one ingest run achieved.
type ingestResult struct {
	acked    int           // events acknowledged
	failed   int           // events whose Propose failed (outcome unknown, never acknowledged)
	took     time.Duration // until the last writer stopped
	firstErr error
}

// ingest proposes n events on leader from `writers` concurrent clients, in
// batches of batch, and records every acknowledged one in a. With stop set,
// writers keep going until it is closed or their leader fails (n bounds
// nothing then); otherwise they stop after n events or at the first error.
func (c *demoCluster) ingest(ctx context.Context, leader string, a *ackLog, tag string, n, batch, writers int, stop <-chan struct{}) ingestResult {
	node := c.node(leader)
	var (
		mu   sync.Mutex
		res  ingestResult
		next int
		wg   sync.WaitGroup
	)
	take := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		if stop == nil && next >= n {
			return 0, 0
		}
		k := batch
		if stop == nil {
			k = min(batch, n-next)
		}
		first := next
		next += k
		return first, k
	}
	t0 := time.Now()
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if stop != nil {
					select {
					case <-stop:
						return
					default:
					}
				}
				first, k := take()
				if k == 0 || ctx.Err() != nil {
					return
				}
				ps := make([][]byte, k)
				for i := range ps {
					kind := "telemetry"
					if (first+i)%17 == 0 {
						kind = "error"
					}
					ps[i] = fmt.Appendf(nil, `{"agent":"robot-%d","kind":%q,"n":%d,"tag":%q}`, (first+i)%7+1, kind, first+i, tag)
				}
				pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				s, _, err := node.rep.Propose(pctx, time.Now().UnixNano(), ps)
				cancel()
				mu.Lock()
				if err != nil {
					res.failed += k
					if res.firstErr == nil {
						res.firstErr = err
					}
					mu.Unlock()
					return
				}
				res.acked += k
				mu.Unlock()
				a.add(s, ps)
			}
		}()
	}
	wg.Wait()
	res.took = time.Since(t0)
	return res
}

// resetNode does what `autonomyctl wal reset` and the next start do to a
// node whose WAL is lost: stop it, move its telemetry directory aside, and
// start it with an empty WAL, as a learner.
func (c *demoCluster) resetNode(name string, now time.Time) (backup string, rep *walrepl.Report, err error) {
	c.crash(name)
	n := c.node(name)
	backup = filepath.Join(filepath.Dir(n.dir), "telemetry.corrupt-"+now.UTC().Format("20060102-150405"))
	if err := os.Rename(n.dir, backup); err != nil {
		return "", nil, fmt.Errorf("moving %s's telemetry directory aside: %w", name, err)
	}
	rep, err = c.start(name, true)
	if err != nil {
		return backup, nil, err
	}
	if !rep.Reset {
		return backup, rep, errors.New("the reopened WAL does not report an operator reset")
	}
	return backup, rep, nil
}
