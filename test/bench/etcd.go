package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdCluster is three etcdmember processes on loopback.
type etcdCluster struct {
	procs     []*proc
	clientURL []string
}

func (c *etcdCluster) close() {
	for _, p := range c.procs {
		p.stop(5 * time.Second)
	}
}

func (c *etcdCluster) cpu() []float64 {
	var out []float64
	for _, p := range c.procs {
		v, _ := procCPU(p.pid())
		out = append(out, v)
	}
	return out
}

func startEtcd(ctx context.Context, ws *workspace) (*etcdCluster, error) {
	logf("etcd: building test/bench/etcdmember")
	bin, err := goBuild(ctx, ws, "./test/bench/etcdmember", "etcdmember")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	c := &etcdCluster{}
	var initial []string
	for i := 0; i < 3; i++ {
		initial = append(initial, fmt.Sprintf("e%d=http://127.0.0.1:%d", i+1, ports[2*i+1]))
		c.clientURL = append(c.clientURL, fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]))
	}
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("e%d", i+1)
		args := []string{"-name", name, "-data-dir", ws.path("etcd", name), "-client-url", c.clientURL[i],
			"-peer-url", fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]), "-initial-cluster", strings.Join(initial, ",")}
		p, err := startProc(name, bin, args, ws.path("etcd-"+name+".log"))
		if err != nil {
			c.close()
			return nil, err
		}
		c.procs = append(c.procs, p)
	}
	return c, nil
}

// leader waits until every member answers and agrees on a leader, and
// returns the leader's client URL.
func (c *etcdCluster) leader(ctx context.Context, d time.Duration) (string, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.clientURL, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return "", err
	}
	defer cli.Close()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		leaderURL, ok := "", true
		for _, ep := range c.clientURL {
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			st, err := cli.Status(sctx, ep)
			cancel()
			if err != nil || st.Leader == 0 {
				ok = false
				break
			}
			if st.Header.MemberId == st.Leader {
				leaderURL = ep
			}
		}
		if ok && leaderURL != "" {
			return leaderURL, nil
		}
		for _, p := range c.procs {
			if !p.alive() {
				return "", fmt.Errorf("etcd member %s exited:\n%s", p.name, p.logTail(20))
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "", fmt.Errorf("no etcd leader within %s", d)
}

// measureEtcd starts the anchor, measures puts of 256-byte values at
// concurrency 1 and 64 against the leader's endpoint (the best case for
// etcd: no follower forwarding, as our clients also talk to the leader),
// and stops it.
func measureEtcd(ctx context.Context, ws *workspace, o *options, res *results) error {
	c, err := startEtcd(ctx, ws)
	if err != nil {
		return err
	}
	defer func() {
		logf("etcd: stopping")
		c.close()
	}()
	leader, err := c.leader(ctx, time.Minute)
	if err != nil {
		return err
	}
	logf("etcd: 3 members up, leader at %s", leader)

	value := strings.Repeat("v", recordSize)
	for _, conc := range []int{1, 64} {
		// gRPC multiplexes a client's requests on one connection; give the
		// 64 workers 8 connections, as etcd's own benchmark tool does with
		// --conns, so the client side is not what limits etcd.
		nconn := max(1, min(conc/8, 8))
		clis := make([]*clientv3.Client, nconn)
		for i := range clis {
			cli, err := clientv3.New(clientv3.Config{Endpoints: []string{leader}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
			if err != nil {
				return err
			}
			defer cli.Close()
			clis[i] = cli
		}
		logf("etcd: put c%d (%d connections) for %s after %s warm-up", conc, nconn, o.measure, o.warmup)
		lr, err := runLoad(ctx, conc, o.warmup, o.measure, c.cpu, func(ctx context.Context, w, i int) error {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			_, err := clis[w%nconn].Put(rctx, fmt.Sprintf("bench/%02d/%05d", w, i%10000), value)
			return err
		})
		if err != nil {
			return fmt.Errorf("put c%d: %w", conc, err)
		}
		key := fmt.Sprintf("c%d", conc)
		res.Etcd[key] = latencyOf(lr)
		res.record("etcd "+key, lr)
		logf("etcd: %s", lr.summary("ops", 1))
	}
	return nil
}
