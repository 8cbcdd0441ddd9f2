package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
)

// Issue 15 §4, "open a 1 GiB WAL → healthy": the cluster's WAL is filled
// through the API to -wal-gib, the three nodes are stopped cleanly, the page
// cache is dropped, and the three are started again at once. What is
// measured is the start of data directories the product wrote itself and
// recovers as it would after any restart: every frame is read and checked
// (DESIGN §4), and the first leader waits for every voter (rule 13).

const (
	// fillConc and fillBatch are the bench's fastest ingest path: batches of
	// 100 events at concurrency 64 (the ingest_batch100 c64 phase).
	fillConc  = 64
	fillBatch = 100
	// startTimeout bounds one start of the cluster or of one node.
	startTimeout = 3 * time.Minute
)

// logMilestones are the log lines whose first time each start records,
// relative to the process start: the WAL open, etcd's quorum, the API, the
// election and the confirmations of rule 13.
var logMilestones = []string{"WAL_RECOVERED", "QUORUM_REACHED", "NODE_READY", "ELECTED_LEADER",
	"LEADER_WAITING_FOR_CONFIRMED_VOTERS", "LEADER_EPOCH_STARTED", "REPL_CONFIRMED"}

// fillWAL posts batches of fillBatch events from fillConc closed-loop
// workers to the leader (following it if it changes) until the WAL holds at
// least target bytes, and records the rate it ingested at: the cluster's
// batched ingest rate on this WAL, which the catch-up phase paces its load
// by.
func fillWAL(ctx context.Context, c *orchCluster, target int64, res *startupRes) error {
	l, err := c.waitSteady(ctx, 2*time.Minute, 1000)
	if err != nil {
		return err
	}
	from := c.walBytes(ctx)
	res.FillFromBytes = from
	if from >= target {
		logf("startup: the WAL already holds %.0f MB", float64(from)/1e6)
		return nil
	}
	logf("startup: filling the WAL from %.0f MB to %.0f MB (batches of %d, c%d, %s leads)",
		float64(from)/1e6, float64(target)/1e6, fillBatch, fillConc, l.name)
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	p := &pacedLoad{c: c, cli: httpClient(fillConc, 30*time.Second), phase: "fill"}
	defer p.cli.CloseIdleConnections()
	u := l.api + "/v1/telemetry/events"
	p.target.Store(&u)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < fillConc; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; fctx.Err() == nil; i++ {
				p.post(fctx, w, i)
			}
		}(w)
	}
	bytes, progress := from, time.Now()
	lastLog := start
	for bytes < target {
		if err := sleepCtx(ctx, 250*time.Millisecond); err != nil {
			stop()
			wg.Wait()
			return err
		}
		if b := c.walBytes(ctx); b > bytes {
			bytes, progress = b, time.Now()
		}
		if time.Since(progress) > time.Minute {
			stop()
			wg.Wait()
			p.mu.Lock()
			defer p.mu.Unlock()
			return fmt.Errorf("the WAL stopped growing at %d bytes for a minute; %d requests failed, first: %v", bytes, p.errs, p.firstErr)
		}
		if time.Since(lastLog) >= 15*time.Second {
			lastLog = time.Now()
			logf("startup: fill at %.0f MB, %.0f events/s", float64(bytes)/1e6, float64(p.acked()*fillBatch)/time.Since(start).Seconds())
		}
	}
	took := time.Since(start)
	stop()
	wg.Wait()
	res.FillSeconds = round(took.Seconds(), 1)
	res.FillEventsPerS = round(float64(p.acked()*fillBatch)/took.Seconds(), 0)
	p.mu.Lock()
	res.FillErrors = p.errs
	p.mu.Unlock()
	logf("startup: filled to %.0f MB in %.1f s: %.0f events/s, %.1f MB/s of WAL, %d failed requests",
		float64(bytes)/1e6, took.Seconds(), res.FillEventsPerS, float64(bytes-from)/1e6/took.Seconds(), res.FillErrors)
	return nil
}

// walBytes returns the largest WAL any running node reports.
func (c *orchCluster) walBytes(ctx context.Context) int64 {
	var b int64
	for _, n := range c.nodes {
		var ws wire.WALStatus
		if n.p != nil && n.p.alive() {
			if code, err := getJSON(ctx, n.api+"/v1/wal/status", &ws); err == nil && code == http.StatusOK {
				b = max(b, ws.Bytes)
			}
		}
	}
	return b
}

// measureStartup fills the WAL, restarts the whole cluster on a cold page
// cache and then one follower alone, and records what each start took.
func measureStartup(ctx context.Context, c *orchCluster, o *options, res *results) error {
	sr := &startupRes{Nodes: map[string]*startupNode{}}
	res.Startup = sr
	target := int64(o.walGiB * (1 << 30))
	if err := fillWAL(ctx, c, target, sr); err != nil {
		return fmt.Errorf("fill: %w", err)
	}
	if _, err := c.waitSteady(ctx, 2*time.Minute, 0); err != nil {
		return fmt.Errorf("after the fill: %w", err)
	}
	for _, n := range c.nodes {
		n.sampleRSS()
		if n.p != nil && n.p.alive() {
			kb, _ := procStatusKB(n.p.pid(), "VmRSS")
			sr.Nodes[n.name] = &startupNode{RSSAfterFillMiB: round(float64(kb)/1024, 1)}
		}
	}

	// The whole cluster: a clean stop, the cache dropped, all three started
	// at once.
	logf("startup: stopping the three nodes (SIGTERM)")
	if err := c.stopAll(30 * time.Second); err != nil {
		return err
	}
	for _, n := range c.nodes {
		files, size, err := walFiles(n)
		if err != nil {
			return err
		}
		sn := sr.Nodes[n.name]
		if sn == nil {
			sn = &startupNode{}
			sr.Nodes[n.name] = sn
		}
		sn.WALBytes, sn.Segments = size, len(files)
		sr.WALBytes = max(sr.WALBytes, size)
	}
	if err := dropCaches(); err != nil {
		sr.CacheNote = "page cache not dropped (" + err.Error() + "): the start was measured warm"
		logf("startup: %s", sr.CacheNote)
	} else {
		sr.ColdCache = true
		measureDiskRead(c, sr)
		if err := dropCaches(); err != nil {
			return err
		}
	}
	logf("startup: starting the three nodes on %.0f MB WALs (%s cache)", float64(sr.WALBytes)/1e6, pick(sr.ColdCache, "cold", "warm"))
	starts := map[*node]time.Time{}
	for _, n := range c.nodes {
		starts[n] = time.Now()
		if err := c.start(n); err != nil {
			return err
		}
	}
	t0 := starts[c.nodes[0]]
	healthy, first, err := c.waitHealthy(ctx, startTimeout)
	if err != nil {
		return err
	}
	sr.LeaderHealthyMs = msSince(t0, healthy)
	sr.Leader = first.name
	ack := firstAck(ctx, c, first, "startup")
	if _, err := c.waitSteady(ctx, startTimeout, 0); err != nil {
		return fmt.Errorf("after the cluster start: %w", err)
	}
	sr.AllHealthyMs = msSince(t0, time.Now())
	if a := <-ack; a.err != nil {
		sr.FirstAckError = a.err.Error()
		logf("startup: no write acknowledged within %s of the start: %v", startTimeout, a.err)
	} else {
		sr.FirstAckMs = msSince(t0, a.at)
	}
	for _, n := range c.nodes {
		sn := sr.Nodes[n.name]
		sn.Log = logTimes(n, starts[n])
		if v, ok := sn.Log["WAL_RECOVERED"]; ok && v > 0 {
			sn.OpenMs = v
			sn.OpenMBps = round(float64(sn.WALBytes)/1e6/(v/1000), 1)
			if v > sr.OpenMs {
				sr.OpenMs, sr.OpenMBps = v, sn.OpenMBps
			}
		}
	}
	logf("startup: process start → WAL_RECOVERED %s; → leader %s healthy %.0f ms; → all three confirmed %.0f ms; → first write acknowledged %.0f ms",
		openSummary(sr.Nodes), sr.Leader, sr.LeaderHealthyMs, sr.AllHealthyMs, sr.FirstAckMs)

	// One follower alone, as an appliance restarts after maintenance: only
	// its own WAL is read, on a cold cache.
	var f *node
	for _, n := range c.nodes {
		if n.name != sr.Leader {
			f = n
			break
		}
	}
	f.p.stop(30 * time.Second)
	if sr.ColdCache {
		if err := dropCaches(); err != nil {
			return err
		}
	}
	fs := time.Now()
	if err := c.start(f); err != nil {
		return err
	}
	if _, err := c.waitSteady(ctx, startTimeout, 0); err != nil {
		return fmt.Errorf("after restarting %s: %w", f.name, err)
	}
	one := &startupNode{WALBytes: sr.Nodes[f.name].WALBytes, Segments: sr.Nodes[f.name].Segments, Node: f.name,
		ConfirmedMs: msSince(fs, time.Now()), Log: logTimes(f, fs)}
	if v, ok := one.Log["WAL_RECOVERED"]; ok && v > 0 {
		one.OpenMs, one.OpenMBps = v, round(float64(one.WALBytes)/1e6/(v/1000), 1)
	}
	sr.SingleNode = one
	logf("startup: %s restarted alone: WAL_RECOVERED after %.0f ms (%.0f MB/s), steady after %.0f ms",
		f.name, one.OpenMs, one.OpenMBps, one.ConfirmedMs)
	return nil
}

func msSince(t0, t time.Time) float64 { return round(float64(t.Sub(t0))/1e6, 1) }

func openSummary(nodes map[string]*startupNode) string {
	var parts []string
	for _, name := range []string{"n1", "n2", "n3"} {
		if n := nodes[name]; n != nil {
			parts = append(parts, fmt.Sprintf("%s %.0f ms (%.0f MB/s)", name, n.OpenMs, n.OpenMBps))
		}
	}
	return strings.Join(parts, ", ")
}

// stopAll sends SIGTERM to every running node at once and waits for all;
// it fails if one had to be killed or exited with an error.
func (c *orchCluster) stopAll(grace time.Duration) error {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		if n.p == nil || !n.p.alive() {
			continue
		}
		wg.Add(1)
		go func(p *proc) {
			defer wg.Done()
			p.stop(grace)
		}(n.p)
	}
	wg.Wait()
	for _, n := range c.nodes {
		if n.p != nil && n.p.err != nil {
			return fmt.Errorf("%s did not stop cleanly (%v):\n%s", n.name, n.p.err, n.p.logTail(20))
		}
	}
	return nil
}

// waitHealthy polls every node's /v1/health every 20 ms and returns when one
// answers 200, and which.
func (c *orchCluster) waitHealthy(ctx context.Context, d time.Duration) (time.Time, *node, error) {
	cli := httpClient(4, time.Second)
	defer cli.CloseIdleConnections()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for _, n := range c.nodes {
			if n.p != nil && !n.p.alive() {
				return time.Time{}, nil, fmt.Errorf("%s exited (%v):\n%s", n.name, n.p.err, n.p.logTail(30))
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.api+"/v1/health", nil)
			resp, err := cli.Do(req)
			if err != nil {
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Now(), n, nil
			}
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return time.Time{}, nil, err
		}
	}
	return time.Time{}, nil, fmt.Errorf("no node answered /v1/health 200 within %s", d)
}

type ackAt struct {
	at  time.Time
	err error
}

// firstAck posts one event with an id until it is acknowledged, in the
// background: the first write a client gets through after a start. It
// starts with l and moves to whichever node serves as leader after a
// failure, as a client that tries the other nodes would.
func firstAck(ctx context.Context, c *orchCluster, l *node, phase string) <-chan ackAt {
	ch := make(chan ackAt, 1)
	go func() {
		cli := httpClient(1, 2*time.Minute)
		defer cli.CloseIdleConnections()
		deadline := time.Now().Add(startTimeout)
		var err error
		for i := 0; time.Now().Before(deadline); i++ {
			if err = ingestOp(cli, l.api+"/v1/telemetry/events", phase+"-first", 1)(ctx, 0, i); err == nil {
				ch <- ackAt{at: time.Now()}
				return
			}
			if ctx.Err() != nil {
				break
			}
			if nl := c.leader(ctx); nl != nil {
				l = nl
			}
			time.Sleep(20 * time.Millisecond)
		}
		ch <- ackAt{err: err}
	}()
	return ch
}

// walFiles lists a stopped node's WAL segment files and their total size.
func walFiles(n *node) ([]string, int64, error) {
	dir := filepath.Join(n.dataDir, "telemetry")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, 0, err
	}
	var files []string
	var size int64
	for _, e := range ents {
		name := e.Name()
		if name != "telemetry.wal" && !(strings.HasPrefix(name, "telemetry-") && strings.HasSuffix(name, ".seg")) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return nil, 0, err
		}
		files = append(files, filepath.Join(dir, name))
		size += fi.Size()
	}
	slices.Sort(files)
	return files, size, nil
}

// dropCaches writes back dirty pages and drops the page cache (root only).
func dropCaches() error {
	syscall.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200)
}

// diskReadSample bounds what measureDiskRead reads of each node's WAL: a
// rate, not a full copy, so the phase stays short on a slow shared disk.
const diskReadSample = 256 << 20

// measureDiskRead reads the stopped nodes' WAL files as dd bs=4M would, on
// a cold cache, up to diskReadSample bytes of each node: one node's alone,
// then the three nodes' at once (what a start of the whole cluster reads
// from this one disk). It is the physical limit of the open.
func measureDiskRead(c *orchCluster, sr *startupRes) {
	readAll := func(files []string) (int64, error) {
		buf := make([]byte, 4<<20)
		var total int64
		for _, p := range files {
			f, err := os.Open(p)
			if err != nil {
				return total, err
			}
			n, err := io.CopyBuffer(io.Discard, io.LimitReader(f, diskReadSample-total), buf)
			f.Close()
			total += n
			if err != nil || total >= diskReadSample {
				return total, err
			}
		}
		return total, nil
	}
	files, _, err := walFiles(c.nodes[0])
	if err != nil {
		return
	}
	t := time.Now()
	n, err := readAll(files)
	if err != nil {
		logf("startup: reading %s's WAL: %v", c.nodes[0].name, err)
		return
	}
	sr.DiskReadMBps = round(float64(n)/1e6/time.Since(t).Seconds(), 0)
	if dropCaches() != nil {
		return
	}
	var wg sync.WaitGroup
	var total atomic.Int64
	t = time.Now()
	for _, nd := range c.nodes {
		files, _, err := walFiles(nd)
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, _ := readAll(files)
			total.Add(n)
		}()
	}
	wg.Wait()
	sr.DiskRead3MBps = round(float64(total.Load())/1e6/time.Since(t).Seconds(), 0)
	logf("startup: cold sequential read of %d MiB of the WAL files (4 MiB reads): one node %.0f MB/s, three nodes at once %.0f MB/s in all", diskReadSample>>20,
		sr.DiskReadMBps, sr.DiskRead3MBps)
}

// logTimes returns, for each of logMilestones that the node's current
// process logged, the time of its first line in ms after start.
func logTimes(n *node, start time.Time) map[string]float64 {
	out := map[string]float64{}
	f, err := os.Open(n.p.logPath)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l struct {
			Msg  string `json:"msg"`
			Time string `json:"time"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		code, _, _ := strings.Cut(l.Msg, ":")
		if !slices.Contains(logMilestones, code) {
			continue
		}
		if _, seen := out[code]; seen {
			continue
		}
		if t, err := time.Parse(time.RFC3339Nano, l.Time); err == nil {
			out[code] = msSince(start, t)
		}
	}
	return out
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
