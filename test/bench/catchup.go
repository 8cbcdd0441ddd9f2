package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
)

// Issue 15 §4, catch-up of an empty follower: while a paced load keeps the
// leader committing at half the cluster's batched rate, one follower is
// replaced by a node with an empty data directory, as docs/operations.md
// "Replacing a dead appliance" does it (member remove, member add with the
// same name and peer URL, start with --initial-cluster-state existing). The
// new node joins as a learner and copies the whole WAL from the leader.
// Measured: the bytes it copied ÷ the time from its first frame until its
// last Seq reaches the leader's, and the leader's commit rate over that
// time against the same load before the replacement.

const (
	// catchUpShare of the cluster's batched ingest rate (the fill's) is the
	// paced load.
	catchUpShare = 0.5
	// catchUpConc bounds the paced load's requests in flight.
	catchUpConc = 64
	// catchUpTimeout bounds the catch-up; one that takes longer is recorded
	// with the bytes copied so far.
	catchUpTimeout = 4 * time.Minute
)

// pacedLoad posts batches of fillBatch events at a fixed rate to whichever
// node serves as leader, from at most catchUpConc requests in flight. A
// batch whose turn comes while all are busy is counted as missed, not sent
// later: the offered rate stays fixed.
type pacedLoad struct {
	c      *orchCluster
	cli    *http.Client
	phase  string // the events' id prefix
	target atomic.Pointer[string]

	mu       sync.Mutex
	acks     []pacedAck
	errs     int
	firstErr error
	missed   int
}

type pacedAck struct {
	at  time.Time
	lat time.Duration
}

func (p *pacedLoad) run(ctx context.Context, eventsPerS float64) {
	interval := time.Duration(float64(time.Second) * fillBatch / eventsPerS)
	tokens := make(chan int, catchUpConc)
	var wg sync.WaitGroup
	for w := 0; w < catchUpConc; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := range tokens {
				p.post(ctx, w, i)
			}
		}(w)
	}
	// Batches are due by the clock, not by ticks: a ticker drops ticks when
	// this goroutine waits for a CPU, which would lower the offered rate.
	t := time.NewTicker(min(interval, 5*time.Millisecond))
	defer t.Stop()
	start, sent := time.Now(), 0
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			close(tokens)
			wg.Wait()
			return
		}
		for due := int(time.Since(start) / interval); sent < due; sent++ {
			select {
			case tokens <- sent:
			default:
				p.mu.Lock()
				p.missed++
				p.mu.Unlock()
			}
		}
	}
}

// post sends one batch; on any failure it looks for the serving leader.
func (p *pacedLoad) post(ctx context.Context, w, i int) {
	url := p.target.Load()
	if url == nil {
		p.refresh(ctx)
		if url = p.target.Load(); url == nil {
			p.fail(fmt.Errorf("no serving leader"))
			return
		}
	}
	s := time.Now()
	err := ingestOp(p.cli, *url, p.phase, fillBatch)(ctx, w, i)
	if err != nil {
		if ctx.Err() == nil {
			p.fail(err)
			p.refresh(ctx)
		}
		return
	}
	e := time.Now()
	p.mu.Lock()
	p.acks = append(p.acks, pacedAck{at: e, lat: e.Sub(s)})
	p.mu.Unlock()
}

func (p *pacedLoad) fail(err error) {
	p.mu.Lock()
	p.errs++
	if p.firstErr == nil {
		p.firstErr = err
	}
	p.mu.Unlock()
}

func (p *pacedLoad) refresh(ctx context.Context) {
	if l := p.c.leader(ctx); l != nil {
		u := l.api + "/v1/telemetry/events"
		p.target.Store(&u)
		return
	}
	p.target.Store(nil)
	sleepCtx(ctx, 20*time.Millisecond)
}

func (p *pacedLoad) acked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acks)
}

// window returns the events/s acknowledged in [a, b] and the p50 and p99
// latency of those requests.
func (p *pacedLoad) window(a, b time.Time) (float64, float64, float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var lat []time.Duration
	for _, x := range p.acks {
		if !x.at.Before(a) && !x.at.After(b) {
			lat = append(lat, x.lat)
		}
	}
	slices.Sort(lat)
	d := b.Sub(a).Seconds()
	if d <= 0 {
		return 0, 0, 0
	}
	return round(float64(len(lat)*fillBatch)/d, 0), ms(percentile(lat, 0.5)), ms(percentile(lat, 0.99))
}

// measureCatchUp runs the paced load, measures it for o.measure, replaces a
// follower with an empty one and measures its catch-up under the same load.
func measureCatchUp(ctx context.Context, c *orchCluster, o *options, res *results) error {
	cr := &catchUpRes{}
	res.CatchUp = cr
	l, err := c.waitSteady(ctx, 2*time.Minute, 0)
	if err != nil {
		return err
	}
	fill := res.Startup
	if fill == nil {
		// Without the startup phase: the WAL is filled here, so that the new
		// node has the same history to copy.
		fill = &startupRes{}
		if err := fillWAL(ctx, c, int64(o.walGiB*(1<<30)), fill); err != nil {
			return fmt.Errorf("fill: %w", err)
		}
		if l, err = c.waitSteady(ctx, 2*time.Minute, 0); err != nil {
			return err
		}
	}
	maxRate := 0.0
	if fill.FillEventsPerS > 0 {
		maxRate, cr.MaxFrom = fill.FillEventsPerS, "the fill (batches of 100, c64)"
	} else if b := res.IngestBatch100["c64"]; b != nil {
		maxRate, cr.MaxFrom = b.EventsPerS, "ingest_batch100 c64"
	} else {
		logf("catchup: measuring the batched rate (batches of 100, c64) for %s", o.measure)
		cli := httpClient(64, 30*time.Second)
		lr, err := runLoad(ctx, 64, o.warmup, o.measure, c.cpu, ingestOp(cli, l.api+"/v1/telemetry/events", "cmax", 100))
		cli.CloseIdleConnections()
		if err != nil {
			return fmt.Errorf("batched rate: %w", err)
		}
		maxRate, cr.MaxFrom = lr.perSecond(100), "a closed-loop batch100 c64 run"
	}
	cr.MaxEventsPerS = round(maxRate, 0)
	cr.LoadEventsPerS = round(catchUpShare*maxRate, 0)

	lctx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	p := &pacedLoad{c: c, cli: httpClient(catchUpConc, 30*time.Second), phase: "catchup"}
	defer p.cli.CloseIdleConnections()
	u := l.api + "/v1/telemetry/events"
	p.target.Store(&u)
	var lg sync.WaitGroup
	lg.Add(1)
	go func() {
		defer lg.Done()
		p.run(lctx, cr.LoadEventsPerS)
	}()
	defer lg.Wait()
	logf("catchup: paced load of %.0f events/s (%.0f%% of %.0f, from %s); baseline for %s after %s",
		cr.LoadEventsPerS, 100*catchUpShare, maxRate, cr.MaxFrom, o.measure, o.warmup)
	if err := sleepCtx(ctx, o.warmup); err != nil {
		return err
	}
	b0, cpu0 := time.Now(), c.cpu()
	if err := sleepCtx(ctx, o.measure); err != nil {
		return err
	}
	b1, cpu1 := time.Now(), c.cpu()
	cr.BaseEventsPerS, cr.BaseP50Ms, cr.BaseP99Ms = p.window(b0, b1)
	cr.BaseLeaderCPUPct = cpuPct(c, l, cpu0, cpu1, b1.Sub(b0))
	logf("catchup: without catch-up: %.0f events/s committed (p50 %.1f ms, p99 %.1f ms)", cr.BaseEventsPerS, cr.BaseP50Ms, cr.BaseP99Ms)

	// Replace a follower (docs/operations.md "Replacing a dead appliance").
	var f *node
	for _, n := range c.nodes {
		if n != l {
			f = n
			break
		}
	}
	cr.Node, cr.Leader = f.name, l.name
	logf("catchup: replacing %s with an empty data dir (kill, member remove, member add, start with --initial-cluster-state existing)", f.name)
	f.p.kill()
	if err := memberCall(ctx, c, http.MethodDelete, "/v1/members/"+f.name, nil, nil); err != nil {
		return fmt.Errorf("member remove %s: %w", f.name, err)
	}
	if err := os.RemoveAll(f.dataDir); err != nil {
		return err
	}
	var ar wire.AddMemberResponse
	if err := memberCall(ctx, c, http.MethodPost, "/v1/members",
		wire.AddMemberRequest{Name: f.name, PeerURL: peerURLOf(f)}, &ar); err != nil {
		return fmt.Errorf("member add %s: %w", f.name, err)
	}
	f.args = withInitialCluster(f.args, ar.InitialCluster, "existing")
	startAt := time.Now()
	if err := c.start(f); err != nil {
		return err
	}

	// Poll the leader, then the new node: caught up once the new node's
	// last Seq reaches what the leader held just before.
	var firstFrame, done time.Time
	var copied int64
	var leaderName string
	deadline := startAt.Add(catchUpTimeout)
	for {
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return err
		}
		if !f.p.alive() {
			return fmt.Errorf("%s exited (%v):\n%s", f.name, f.p.err, f.p.logTail(30))
		}
		ld := c.leader(ctx)
		if ld == nil || ld == f {
			continue
		}
		var lw, fw wire.WALStatus
		if code, err := getJSON(ctx, ld.api+"/v1/wal/status", &lw); err != nil || code != http.StatusOK {
			continue
		}
		if code, err := getJSON(ctx, f.api+"/v1/wal/status", &fw); err != nil || code != http.StatusOK {
			continue
		}
		now := time.Now()
		if firstFrame.IsZero() && fw.LastSeq > 0 {
			firstFrame = now
			cr.FirstFrameMs = msSince(startAt, now)
			logf("catchup: %s holds its first frames %.0f ms after its start; the leader (%s) is at Seq %d, %.0f MB",
				f.name, cr.FirstFrameMs, ld.name, lw.LastSeq, float64(lw.Bytes)/1e6)
		}
		copied, leaderName = fw.Bytes, ld.name
		if fw.LastSeq > 0 && fw.LastSeq >= lw.LastSeq {
			done = now
			break
		}
		if now.After(deadline) {
			cr.TimedOut = true
			done = now
			logf("catchup: %s not caught up after %s: %d of the leader's %d frames", f.name, catchUpTimeout, fw.LastSeq, lw.LastSeq)
			break
		}
	}
	cpu2 := c.cpu()
	if firstFrame.IsZero() {
		return fmt.Errorf("%s received no frame within %s", f.name, catchUpTimeout)
	}
	cr.CaughtUpMs = msSince(startAt, done)
	cr.CopiedBytes = copied
	cr.Seconds = round(done.Sub(firstFrame).Seconds(), 2)
	cr.MBps = round(float64(copied)/1e6/done.Sub(firstFrame).Seconds(), 1)
	cr.DuringEventsPerS, cr.DuringP50Ms, cr.DuringP99Ms = p.window(firstFrame, done)
	cr.ReplaceEventsPerS, _, _ = p.window(b1, done)
	cr.DuringLeaderCPUPct = cpuPct(c, c.byName(leaderName), cpu1, cpu2, done.Sub(b1))
	if leaderName != l.name {
		cr.LeaderChanged = leaderName
	}
	stopLoad()
	lg.Wait()
	p.mu.Lock()
	cr.Errors, cr.Missed = p.errs, p.missed
	if p.firstErr != nil {
		cr.FirstError = p.firstErr.Error()
	}
	p.mu.Unlock()
	logf("catchup: %s copied %.0f MB in %.1f s from its first frame: %.1f MB/s (start → caught up %.0f ms); leader committed %.0f events/s during it (p50 %.1f ms, p99 %.1f ms) against %.0f without; %d failed requests, %d batches missed",
		f.name, float64(copied)/1e6, cr.Seconds, cr.MBps, cr.CaughtUpMs, cr.DuringEventsPerS, cr.DuringP50Ms, cr.DuringP99Ms,
		cr.BaseEventsPerS, cr.Errors, cr.Missed)
	if cr.TimedOut {
		return nil
	}
	if _, err := c.waitSteady(ctx, 2*time.Minute, 0); err != nil {
		return fmt.Errorf("after the catch-up: %w", err)
	}
	return nil
}

// cpuPct is node n's CPU over d in % of one core, from two c.cpu() samples.
func cpuPct(c *orchCluster, n *node, a, b []float64, d time.Duration) float64 {
	for i, x := range c.nodes {
		if x == n && i < len(a) && i < len(b) && d > 0 {
			return round(100*(b[i]-a[i])/d.Seconds(), 0)
		}
	}
	return 0
}

func (c *orchCluster) byName(name string) *node {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// memberClient carries membership changes: etcd's reconfiguration may take
// a while on a busy machine, and a POST retried after a client timeout
// would find the member already added.
var memberClient = httpClient(1, 30*time.Second)

// memberCall sends a membership change to the serving leader, as
// autonomyctl does: retried on a redirect, no leader, or a connection error.
func memberCall(ctx context.Context, c *orchCluster, method, path string, body, out any) error {
	var last error
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		l := c.leader(ctx)
		if l == nil {
			last = fmt.Errorf("no serving leader")
			if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
				return err
			}
			continue
		}
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequestWithContext(ctx, method, l.api+path, rd)
		req.Header.Set("Content-Type", "application/json")
		resp, err := memberClient.Do(req)
		if err != nil {
			last = err
			if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
				return err
			}
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusNoContent {
			if out != nil {
				return json.Unmarshal(b, out)
			}
			return nil
		}
		last = fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(b))
		if resp.StatusCode < 500 && resp.StatusCode != http.StatusTemporaryRedirect {
			return last
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	return last
}

// peerURLOf returns the node's --etcd-peer-url.
func peerURLOf(n *node) string {
	for i, a := range n.args {
		if a == "--etcd-peer-url" && i+1 < len(n.args) {
			return n.args[i+1]
		}
	}
	return ""
}

// withInitialCluster returns args with --initial-cluster set to initial and
// --initial-cluster-state to state.
func withInitialCluster(args []string, initial, state string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == "--initial-cluster" || args[i] == "--initial-cluster-state" {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return append(out, "--initial-cluster", initial, "--initial-cluster-state", state)
}
