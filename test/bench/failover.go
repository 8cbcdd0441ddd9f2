package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/autonomyops/orchestrator/walrepl"
)

// failoverWriters keep this many clients writing through the failovers, so
// the first commit after a kill is seen within a few ms of happening.
const failoverWriters = 4

// failoverTimeout bounds one failover; a kill with no commit by then is
// recorded as this long and marked timed out.
const failoverTimeout = 30 * time.Second

// measureFailovers kills the leader with SIGKILL n times while writers keep
// posting, and records, for each kill, the time from the kill to the
// earliest acknowledgement of a request sent after it. Between kills the
// killed node is restarted on its data dir and the cluster is let back to
// steady state (all three voters alive, caught up, heard by the leader).
func measureFailovers(ctx context.Context, c *orchCluster, n int, res *results) error {
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	acks := &ackLog{}
	cli := httpClient(failoverWriters, 2*time.Second)
	for w := 0; w < failoverWriters; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			failoverWriter(wctx, c, cli, w, acks)
		}(w)
	}
	defer func() {
		stop()
		wg.Wait()
	}()

	for k := 0; k < n; k++ {
		l, err := c.waitSteady(ctx, 2*time.Minute, 1000)
		if err != nil {
			return fmt.Errorf("before failover %d: %w", k+1, err)
		}
		// A second of steady writes, so gossip and the followers' view of
		// the leader are settled as they would be in service.
		if err := walrepl.Sleep(ctx, time.Second); err != nil {
			return err
		}
		l.sampleRSS()
		killAt := time.Now()
		l.p.kill()
		fm := failoverMeta{Killed: l.name}
		for {
			if at, ok := acks.firstAfter(killAt); ok {
				fm.Ms = round(float64(at.Sub(killAt))/1e6, 1)
				break
			}
			if time.Since(killAt) > failoverTimeout {
				fm.Ms, fm.TimedOut = float64(failoverTimeout.Milliseconds()), true
				break
			}
			if err := walrepl.Sleep(ctx, 5*time.Millisecond); err != nil {
				return err
			}
		}
		if nl := c.leader(ctx); nl != nil {
			fm.NewLeader = nl.name
		}
		res.FailoverMs = append(res.FailoverMs, fm.Ms)
		res.Meta.Failovers = append(res.Meta.Failovers, fm)
		logf("cluster: failover %d: killed %s, next commit after %.0f ms (new leader %s)", k+1, l.name, fm.Ms, fm.NewLeader)
		if err := c.start(l); err != nil {
			return err
		}
	}
	_, err := c.waitSteady(ctx, 2*time.Minute, 1000)
	return err
}

// failoverWriter posts one event at a time, to the node it last saw lead,
// following 307s and moving to another node on any failure.
func failoverWriter(ctx context.Context, c *orchCluster, cli *http.Client, w int, acks *ackLog) {
	target := ""
	for i := 0; ctx.Err() == nil; i++ {
		if target == "" {
			target = c.nodes[rand.IntN(len(c.nodes))].api + "/v1/telemetry/events"
		}
		var body bytes.Buffer
		event(&body, fmt.Sprintf("f-%d-%d", w, i))
		sent := time.Now()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, target, &body)
		req.Header.Set("Content-Type", "application/json")
		resp, err := cli.Do(req)
		if err != nil {
			target = ""
			walrepl.Sleep(ctx, 10*time.Millisecond)
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			acks.add(sent, time.Now())
			walrepl.Sleep(ctx, 5*time.Millisecond) // a steady trickle, not a load test
		case http.StatusTemporaryRedirect:
			if loc := resp.Header.Get("Location"); loc != "" && !strings.HasPrefix(target, strings.TrimSuffix(loc, "/v1/telemetry/events")) {
				target = loc
				continue
			}
			target = ""
			walrepl.Sleep(ctx, 10*time.Millisecond)
		default:
			target = ""
			walrepl.Sleep(ctx, 10*time.Millisecond)
		}
	}
}
