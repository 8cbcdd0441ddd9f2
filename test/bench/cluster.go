package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
)

// node is one autonomy-orchestrator of the cluster under test, started like
// node/proctest does: loopback ports, its own data dir, --initial-cluster.
type node struct {
	name    string
	dataDir string
	api     string // base URL
	args    []string
	p       *proc
	starts  int
	peakKB  int64 // largest VmHWM seen over this node's processes
}

type orchCluster struct {
	ws    *workspace
	bin   string
	nodes []*node
}

func newOrchCluster(ws *workspace, bin string) (*orchCluster, error) {
	ports, err := freePorts(15)
	if err != nil {
		return nil, err
	}
	c := &orchCluster{ws: ws, bin: bin}
	var initial []string
	for i := 0; i < 3; i++ {
		p := ports[5*i : 5*i+5]
		n := &node{name: fmt.Sprintf("n%d", i+1), dataDir: ws.path("nodes", fmt.Sprintf("n%d", i+1)),
			api: fmt.Sprintf("http://127.0.0.1:%d", p[0])}
		n.args = []string{"serve", "--name", n.name, "--data-dir", n.dataDir,
			"--listen", fmt.Sprintf("127.0.0.1:%d", p[0]),
			"--etcd-client-url", fmt.Sprintf("http://127.0.0.1:%d", p[1]),
			"--etcd-peer-url", fmt.Sprintf("http://127.0.0.1:%d", p[2]),
			"--repl-addr", fmt.Sprintf("127.0.0.1:%d", p[3]),
			"--gossip-addr", fmt.Sprintf("127.0.0.1:%d", p[4])}
		initial = append(initial, fmt.Sprintf("%s=http://127.0.0.1:%d", n.name, p[2]))
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		n.args = append(n.args, "--initial-cluster", strings.Join(initial, ","))
	}
	return c, nil
}

func (c *orchCluster) start(n *node) error {
	n.starts++
	p, err := startProc(n.name, c.bin, n.args, c.ws.path(fmt.Sprintf("%s.%d.log", n.name, n.starts)))
	if err != nil {
		return err
	}
	n.p = p
	return nil
}

// sampleRSS folds the node's current VmHWM into its peak.
func (n *node) sampleRSS() {
	if n.p == nil || !n.p.alive() {
		return
	}
	if kb, err := procStatusKB(n.p.pid(), "VmHWM"); err == nil && kb > n.peakKB {
		n.peakKB = kb
	}
}

func (c *orchCluster) close() {
	for _, n := range c.nodes {
		if n.p != nil {
			n.p.stop(10 * time.Second)
		}
	}
}

func (c *orchCluster) cpu() []float64 {
	var out []float64
	for _, n := range c.nodes {
		var v float64
		if n.p != nil && n.p.alive() {
			v, _ = procCPU(n.p.pid())
		}
		out = append(out, v)
	}
	return out
}

// httpClient returns a client for conc concurrent requests: enough idle
// connections per host that none is ever re-dialled, no redirects followed
// (a 307 is the answer of a follower), no compression.
func httpClient(conc int, timeout time.Duration) *http.Client {
	tr := &http.Transport{
		MaxIdleConns:        4 * conc,
		MaxIdleConnsPerHost: 2 * conc,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &http.Client{Transport: tr, Timeout: timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var probe = httpClient(8, 2*time.Second)

func getJSON(ctx context.Context, url string, v any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := probe.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if v != nil {
		err = json.NewDecoder(resp.Body).Decode(v)
	} else {
		_, err = io.Copy(io.Discard, resp.Body)
	}
	return resp.StatusCode, err
}

// leader returns the one running node whose /v1/health answers 200, or nil.
func (c *orchCluster) leader(ctx context.Context) *node {
	var found []*node
	for _, n := range c.nodes {
		if n.p == nil || !n.p.alive() {
			continue
		}
		if code, _ := getJSON(ctx, n.api+"/v1/health", nil); code == http.StatusOK {
			found = append(found, n)
		}
	}
	if len(found) == 1 {
		return found[0]
	}
	return nil
}

// waitSteady waits until one node leads and, in its view, every voter is
// alive in gossip, none is a learner, each has fsynced within lagMax of
// safe_seq, and the leader hears all of them. It returns the leader.
func (c *orchCluster) waitSteady(ctx context.Context, d time.Duration, lagMax uint64) (*node, error) {
	deadline := time.Now().Add(d)
	last := "no leader"
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		for _, n := range c.nodes {
			if n.p != nil && !n.p.alive() {
				return nil, fmt.Errorf("%s exited (%v):\n%s", n.name, n.p.err, n.p.logTail(30))
			}
		}
		if l := c.leader(ctx); l != nil {
			var st wire.HAStatus
			if code, err := getJSON(ctx, l.api+"/v1/ha/status", &st); err == nil && code == http.StatusOK {
				ok := len(st.Members) == len(c.nodes) && st.Quorum.Healthy == len(c.nodes)
				for _, m := range st.Members {
					if m.GossipState != "alive" || m.Learner || m.Lag > lagMax {
						ok = false
					}
				}
				// A restarted node must be confirmed by the leader (DESIGN §6
				// rule 13) before the next kill: otherwise the kill is a double
				// fault and the election waits for every voter.
				for _, n := range c.nodes {
					var h wire.Health
					if _, err := getJSON(ctx, n.api+"/v1/health", &h); err != nil || slices.Contains(h.Reasons, "unconfirmed") {
						ok = false
						st.Node = n.name + " (not yet confirmed since its restart)"
					}
				}
				if ok {
					return l, nil
				}
				b, _ := json.Marshal(st)
				last = string(b)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, fmt.Errorf("cluster not steady within %s; last ha status: %s", d, last)
}

// event returns one compact JSON event of exactly recordSize bytes with a
// unique client id (so a retry is idempotent, DESIGN §6 rule 10).
func event(buf *bytes.Buffer, id string) {
	start := buf.Len()
	fmt.Fprintf(buf, `{"id":%q,"kind":"load","agent":"bench","pad":"`, id)
	pad := recordSize - (buf.Len() - start) - len(`"}`)
	for i := 0; i < pad; i++ {
		buf.WriteByte('x')
	}
	buf.WriteString(`"}`)
}

// ingestOp posts perReq events per request to the leader and checks the
// answer: 200 with one Seq per event.
func ingestOp(cli *http.Client, url, phase string, perReq int) opFunc {
	return func(ctx context.Context, w, i int) error {
		var body bytes.Buffer
		body.Grow(perReq*(recordSize+1) + 2)
		if perReq == 1 {
			event(&body, fmt.Sprintf("%s-%d-%d", phase, w, i))
		} else {
			body.WriteByte('[')
			for j := 0; j < perReq; j++ {
				if j > 0 {
					body.WriteByte(',')
				}
				event(&body, fmt.Sprintf("%s-%d-%d-%d", phase, w, i, j))
			}
			body.WriteByte(']')
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, &body)
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := cli.Do(req)
		if err != nil {
			return err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(b))
		}
		var ir wire.IngestResponse
		if err := json.Unmarshal(b, &ir); err != nil || len(ir.Seqs) != perReq {
			return fmt.Errorf("bad answer %q", b)
		}
		return nil
	}
}

// measureCluster starts the three nodes, runs the ingest phases and the
// failovers, and reads the nodes' peak RSS.
func measureCluster(ctx context.Context, ws *workspace, bin string, o *options, res *results) error {
	res.Meta.Host.Binary = bin
	if out, err := exec.CommandContext(ctx, bin, "--version").Output(); err == nil {
		res.Meta.Host.Version = strings.TrimSpace(string(out))
	}
	if out, err := exec.CommandContext(ctx, "git", "-C", ws.modDir, "describe", "--always", "--dirty").Output(); err == nil {
		res.Meta.Host.Git = strings.TrimSpace(string(out))
	}
	c, err := newOrchCluster(ws, bin)
	if err != nil {
		return err
	}
	if o.retention > 0 {
		res.Meta.Retention = o.retention
		for _, n := range c.nodes {
			n.args = append(n.args, "--wal-retention-bytes", fmt.Sprint(o.retention))
		}
	}
	defer func() {
		logf("cluster: stopping")
		c.close()
	}()
	for _, n := range c.nodes {
		if err := c.start(n); err != nil {
			return err
		}
	}
	l, err := c.waitSteady(ctx, 2*time.Minute, 0)
	if err != nil {
		return err
	}
	logf("cluster: 3 nodes up (%s %s, %s %s, %s %s), %s leads", c.nodes[0].name, c.nodes[0].api, c.nodes[1].name, c.nodes[1].api,
		c.nodes[2].name, c.nodes[2].api, l.name)

	if o.phase("ingest") {
		stopTrace := traceRSS(ctx, c, l)
		url := l.api + "/v1/telemetry/events"
		for _, conc := range []int{1, 16, 64} {
			cli := httpClient(conc, 30*time.Second)
			logf("cluster: ingest 1 event/request c%d for %s after %s warm-up", conc, o.measure, o.warmup)
			lr, err := runLoad(ctx, conc, o.warmup, o.measure, c.cpu, ingestOp(cli, url, fmt.Sprintf("s%d", conc), 1))
			cli.CloseIdleConnections()
			if err != nil {
				return fmt.Errorf("ingest c%d: %w", conc, err)
			}
			key := fmt.Sprintf("c%d", conc)
			res.IngestSingle[key] = latencyOf(lr)
			res.record("ingest_single "+key, lr)
			logf("cluster: %s", lr.summary("ops", 1))
		}
		cli := httpClient(64, 30*time.Second)
		logf("cluster: ingest 100 events/request c64 for %s after %s warm-up", o.measure, o.warmup)
		lr, err := runLoad(ctx, 64, o.warmup, o.measure, c.cpu, ingestOp(cli, url, "b64", 100))
		cli.CloseIdleConnections()
		if err != nil {
			return fmt.Errorf("ingest batch100 c64: %w", err)
		}
		res.IngestBatch100["c64"] = &batchLat{EventsPerS: round(lr.perSecond(100), 1),
			P50Ms: ms(percentile(lr.lat, 0.5)), P99Ms: ms(percentile(lr.lat, 0.99))}
		res.record("ingest_batch100 c64", lr)
		logf("cluster: %s", lr.summary("events", 100))
		tr := stopTrace()
		res.Meta.RSSTrace = tr
		logf("cluster: peak RSS of the largest node %.0f MiB at Seq %d (half of the events), %.0f MiB at Seq %d (all)",
			tr.PeakHalfMiB, tr.HalfSeq, tr.PeakEndMiB, tr.LastSeq)
	}
	if o.phase("stream") {
		if err := measureStream(ctx, c, l, o, res); err != nil {
			return err
		}
	}
	for _, n := range c.nodes {
		n.sampleRSS()
	}
	if o.phase("failover") && o.failover > 0 {
		if err := measureFailovers(ctx, c, o.failover, res); err != nil {
			return err
		}
	}

	res.Meta.RSS, res.Meta.WALBytes = map[string]rssMeta{}, map[string]int64{}
	for _, n := range c.nodes {
		n.sampleRSS()
		var end int64
		if n.p != nil && n.p.alive() {
			end, _ = procStatusKB(n.p.pid(), "VmRSS")
		}
		res.RSSMiB[n.name] = round(float64(n.peakKB)/1024, 1)
		res.Meta.RSS[n.name] = rssMeta{PeakMiB: round(float64(n.peakKB)/1024, 1), EndMiB: round(float64(end)/1024, 1)}
		var ws wire.WALStatus
		if code, err := getJSON(ctx, n.api+"/v1/wal/status", &ws); err == nil && code == http.StatusOK {
			res.Meta.WALBytes[n.name] = ws.Bytes
		}
	}
	logf("cluster: peak RSS n1 %.0f MiB, n2 %.0f MiB, n3 %.0f MiB", res.RSSMiB["n1"], res.RSSMiB["n2"], res.RSSMiB["n3"])

	// Issue 15 §4, after the RSS figures: these phases restart and replace
	// nodes on a WAL filled to -wal-gib.
	if o.phase("startup") {
		if err := measureStartup(ctx, c, o, res); err != nil {
			return fmt.Errorf("startup: %w", err)
		}
	}
	if o.phase("catchup") {
		if err := measureCatchUp(ctx, c, o, res); err != nil {
			return fmt.Errorf("catchup: %w", err)
		}
	}
	return nil
}

// ackLog records, in the order they were acknowledged, when each
// acknowledged request was sent and when its answer arrived.
type ackLog struct {
	mu   sync.Mutex
	acks [][2]time.Time
}

func (a *ackLog) add(sent, acked time.Time) {
	a.mu.Lock()
	a.acks = append(a.acks, [2]time.Time{sent, acked})
	a.mu.Unlock()
}

// firstAfter returns the earliest acknowledgement of a request sent after t.
func (a *ackLog) firstAfter(t time.Time) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var first time.Time
	for _, x := range a.acks {
		if x[0].After(t) && (first.IsZero() || x[1].Before(first)) {
			first = x[1]
		}
	}
	return first, !first.IsZero()
}
