package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The JetStream anchor (issue 15): a replicated stream with three copies on
// disk, acknowledged after fsync, which is the closest peer of this cluster
// for durable append of telemetry.
const (
	jsStream  = "BENCH"
	jsSubject = "bench.events"
	jsWindow  = 100 // async publishes in flight per worker before it waits for their acks
)

// jsCluster is three natsmember processes on loopback: one NATS cluster with
// JetStream, file store, sync_interval always.
type jsCluster struct {
	procs     []*proc
	names     []string
	clientURL []string
}

func (c *jsCluster) close() {
	for _, p := range c.procs {
		p.stop(10 * time.Second)
	}
}

func (c *jsCluster) cpu() []float64 {
	var out []float64
	for _, p := range c.procs {
		v, _ := procCPU(p.pid())
		out = append(out, v)
	}
	return out
}

func (c *jsCluster) checkAlive() error {
	for _, p := range c.procs {
		if !p.alive() {
			return fmt.Errorf("nats member %s exited:\n%s", p.name, p.logTail(20))
		}
	}
	return nil
}

func startJetStream(ctx context.Context, ws *workspace) (*jsCluster, error) {
	// natsmember is its own module (nats-server stays out of the product's
	// module graph): build it from its directory.
	logf("jetstream: building test/bench/natsmember")
	bin, err := goBuildIn(ctx, ws, filepath.Join(ws.modDir, "test", "bench", "natsmember"), ".", "natsmember")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	c := &jsCluster{}
	var routes []string
	for i := 0; i < 3; i++ {
		c.names = append(c.names, fmt.Sprintf("j%d", i+1))
		c.clientURL = append(c.clientURL, fmt.Sprintf("nats://127.0.0.1:%d", ports[2*i]))
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[2*i+1]))
	}
	for i, name := range c.names {
		args := []string{"-name", name, "-store-dir", ws.path("nats", name), "-port", fmt.Sprint(ports[2*i]),
			"-cluster-port", fmt.Sprint(ports[2*i+1]), "-routes", strings.Join(routes, ",")}
		p, err := startProc(name, bin, args, ws.path("nats-"+name+".log"))
		if err != nil {
			c.close()
			return nil, err
		}
		c.procs = append(c.procs, p)
	}
	return c, nil
}

// createStream creates the R3 file stream once JetStream's meta group has a
// leader, waits until the stream's group has a leader and both followers
// are current, and returns the leader's client URL and the server version.
func (c *jsCluster) createStream(ctx context.Context, d time.Duration) (leaderURL, version string, err error) {
	nc, err := nats.Connect(strings.Join(c.clientURL, ","), nats.Name("bench-admin"), nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true))
	if err != nil {
		return "", "", err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return "", "", err
	}
	cfg := jetstream.StreamConfig{Name: jsStream, Subjects: []string{jsSubject}, Storage: jetstream.FileStorage, Replicas: 3}
	deadline := time.Now().Add(d)
	last := errors.New("not tried")
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return "", "", err
		}
		if err := c.checkAlive(); err != nil {
			return "", "", err
		}
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		var s jetstream.Stream
		s, last = js.CreateOrUpdateStream(rctx, cfg)
		if last == nil {
			var info *jetstream.StreamInfo
			info, last = s.Info(rctx)
			if last == nil {
				last = streamReady(info)
				if last == nil {
					for i, n := range c.names {
						if n == info.Cluster.Leader {
							cancel()
							return c.clientURL[i], nc.ConnectedServerVersion(), nil
						}
					}
					last = fmt.Errorf("stream leader %q is none of %v", info.Cluster.Leader, c.names)
				}
			}
		}
		cancel()
		time.Sleep(200 * time.Millisecond)
	}
	return "", "", fmt.Errorf("stream %s not ready within %s: %w", jsStream, d, last)
}

// streamReady says why the stream is not yet an R3 file stream with a leader
// and two current followers, or nil.
func streamReady(info *jetstream.StreamInfo) error {
	if info.Config.Replicas != 3 || info.Config.Storage != jetstream.FileStorage {
		return fmt.Errorf("stream has %d replicas on %s, want 3 on file", info.Config.Replicas, info.Config.Storage)
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return errors.New("stream has no leader yet")
	}
	current := 0
	for _, r := range info.Cluster.Replicas {
		if r.Current && !r.Offline {
			current++
		}
	}
	if current != 2 {
		return fmt.Errorf("%d of 2 followers current", current)
	}
	return nil
}

// jsClients opens nconn connections to url, each with its JetStream context.
func jsClients(url string, nconn int) ([]*nats.Conn, []jetstream.JetStream, error) {
	var conns []*nats.Conn
	var jss []jetstream.JetStream
	for i := 0; i < nconn; i++ {
		nc, err := nats.Connect(url, nats.Name(fmt.Sprintf("bench-%d", i)))
		if err != nil {
			closeAll(conns)
			return nil, nil, err
		}
		conns = append(conns, nc)
		js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(64*jsWindow),
			jetstream.WithPublishAsyncTimeout(10*time.Second))
		if err != nil {
			closeAll(conns)
			return nil, nil, err
		}
		jss = append(jss, js)
	}
	return conns, jss, nil
}

func closeAll(conns []*nats.Conn) {
	for _, nc := range conns {
		nc.Close()
	}
}

// jsConns is how many connections the clients of a phase with conc workers
// share: as for etcd, 8 for 64 workers, so the client is not the limit.
func jsConns(conc int) int { return max(1, min(conc/8, 8)) }

// measureJetStream starts the anchor, measures synchronous publishes at
// concurrency 1, 16 and 64 and asynchronous publishes in windows of 100 at
// 64, and stops it. Clients talk to the stream leader's server (the best
// case for JetStream: no hop through another server, as our clients talk to
// the leader and etcd's to its leader). Each message is the same 256-byte
// event the cluster ingests, without a Nats-Msg-Id (no deduplication: again
// the best case).
func measureJetStream(ctx context.Context, ws *workspace, o *options, res *results) error {
	c, err := startJetStream(ctx, ws)
	if err != nil {
		return err
	}
	defer func() {
		logf("jetstream: stopping")
		c.close()
	}()
	leader, version, err := c.createStream(ctx, time.Minute)
	if err != nil {
		return err
	}
	res.Meta.JetStream = &jsMeta{ServerVersion: version, Stream: jsStream, Replicas: 3, Storage: "file",
		Sync: "always", ClientsTo: "stream leader"}
	logf("jetstream: 3 members up (nats-server %s), stream %s R3 file, leader at %s", version, jsStream, leader)

	for _, conc := range []int{1, 16, 64} {
		nconn := jsConns(conc)
		conns, jss, err := jsClients(leader, nconn)
		if err != nil {
			return err
		}
		logf("jetstream: sync publish c%d (%d connections) for %s after %s warm-up", conc, nconn, o.measure, o.warmup)
		lr, err := runLoad(ctx, conc, o.warmup, o.measure, c.cpu, func(ctx context.Context, w, i int) error {
			var buf bytes.Buffer
			buf.Grow(recordSize)
			event(&buf, fmt.Sprintf("js%d-%d-%d", conc, w, i))
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			_, err := jss[w%nconn].Publish(rctx, jsSubject, buf.Bytes())
			return err
		})
		closeAll(conns)
		if err != nil {
			return fmt.Errorf("sync publish c%d: %w", conc, err)
		}
		key := fmt.Sprintf("c%d", conc)
		res.JetStream.Sync[key] = latencyOf(lr)
		res.record("jetstream sync "+key, lr)
		logf("jetstream: %s", lr.summary("msgs", 1))
	}

	nconn := jsConns(64)
	conns, jss, err := jsClients(leader, nconn)
	if err != nil {
		return err
	}
	defer closeAll(conns)
	logf("jetstream: async publish, windows of %d, c64 (%d connections) for %s after %s warm-up", jsWindow, nconn, o.measure, o.warmup)
	lr, err := runLoad(ctx, 64, o.warmup, o.measure, c.cpu, asyncWindowOp(jss, jsWindow))
	if err != nil {
		return fmt.Errorf("async publish c64: %w", err)
	}
	res.JetStream.Async100["c64"] = &batchLat{EventsPerS: round(lr.perSecond(jsWindow), 1),
		P50Ms: ms(percentile(lr.lat, 0.5)), P99Ms: ms(percentile(lr.lat, 0.99))}
	res.record("jetstream async100 c64", lr)
	logf("jetstream: %s", lr.summary("msgs", jsWindow))
	return nil
}

// asyncWindowOp publishes window messages without waiting, then waits for
// all their acks: one op is one window, as one op of the cluster's batch
// phase is one request of 100 events.
func asyncWindowOp(jss []jetstream.JetStream, window int) opFunc {
	return func(ctx context.Context, w, i int) error {
		js := jss[w%len(jss)]
		var buf bytes.Buffer
		buf.Grow(window * recordSize)
		futures := make([]jetstream.PubAckFuture, 0, window)
		for j := 0; j < window; j++ {
			start := buf.Len()
			event(&buf, fmt.Sprintf("ja-%d-%d-%d", w, i, j))
			// Each message keeps its own bytes, a part of buf that is never
			// written again: the client holds them until the ack.
			f, err := js.PublishAsync(jsSubject, buf.Bytes()[start:buf.Len():buf.Len()])
			if err != nil {
				return err
			}
			futures = append(futures, f)
		}
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
}
