//go:build integration

package integration

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Monitor samples every node's safe_seq (GET /v1/wal/status) and health
// during a scenario, and records what must never happen: safe_seq going
// down within one process's life, or two nodes serving as leader of the
// same epoch.
type Monitor struct {
	c      *Cluster
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	last       map[string]sample // node → last sample of its current process
	leaders    map[uint64]string // epoch → node seen answering /v1/health 200 in it
	changes    []leaderChange
	violations []string
	samples    int
}

type sample struct {
	gen     int
	walID   string
	safeSeq uint64
	at      time.Time
}

type leaderChange struct {
	at    time.Time
	node  string
	epoch uint64
}

// StartMonitor starts sampling every interval.
func StartMonitor(c *Cluster, interval time.Duration) *Monitor {
	ctx, cancel := context.WithCancel(context.Background())
	m := &Monitor{c: c, cancel: cancel, last: map[string]sample{}, leaders: map[uint64]string{}}
	for _, n := range c.Nodes {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				m.sample(ctx, n)
				select {
				case <-t.C:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	return m
}

func (m *Monitor) sample(ctx context.Context, n *Node) {
	gen := n.Gen()
	ws, err := n.WALStatus(ctx)
	if err == nil && n.Gen() == gen {
		m.mu.Lock()
		m.samples++
		prev, ok := m.last[n.Name]
		if ok && prev.gen == gen && prev.walID == ws.WALID && ws.SafeSeq < prev.safeSeq {
			m.violations = append(m.violations, fmt.Sprintf("%s: safe_seq went down from %d (at %s) to %d (at %s) in one process",
				n.Name, prev.safeSeq, prev.at.Format("15:04:05.000"), ws.SafeSeq, time.Now().Format("15:04:05.000")))
		}
		m.last[n.Name] = sample{gen: gen, walID: ws.WALID, safeSeq: ws.SafeSeq, at: time.Now()}
		m.mu.Unlock()
	}
	code, h, err := n.Health(ctx)
	if err != nil || code != http.StatusOK {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if other, ok := m.leaders[h.Epoch]; ok && other != n.Name {
		m.violations = append(m.violations, fmt.Sprintf("two leaders in epoch %d: %s and %s both answered /v1/health 200", h.Epoch, other, n.Name))
	}
	if _, ok := m.leaders[h.Epoch]; !ok {
		m.leaders[h.Epoch] = n.Name
		m.changes = append(m.changes, leaderChange{at: time.Now(), node: n.Name, epoch: h.Epoch})
	}
}

// Stop stops sampling.
func (m *Monitor) Stop() {
	m.cancel()
	m.wg.Wait()
}

// Violations returns what the sampling saw going wrong.
func (m *Monitor) Violations() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.violations...)
}

// Samples is how many safe_seq samples were taken.
func (m *Monitor) Samples() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.samples
}

// LeaderEpochs returns how many distinct leader epochs were seen serving.
func (m *Monitor) LeaderEpochs() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.changes)
}

// LeaderSince returns the first serving leader seen after t (and when).
func (m *Monitor) LeaderSince(t time.Time) (string, uint64, time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.changes {
		if !c.at.Before(t) {
			return c.node, c.epoch, c.at, true
		}
	}
	return "", 0, time.Time{}, false
}

// SafeSeq returns the last sampled safe_seq of a node.
func (m *Monitor) SafeSeq(n *Node) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last[n.Name].safeSeq
}
