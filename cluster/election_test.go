package cluster

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// loseRenewals makes the leader's renewals go unanswered until the returned
// time, as while etcd elects a new raft leader.
func loseRenewals(t *testing.T, d time.Duration) (until time.Time, calls *atomic.Int32) {
	calls = new(atomic.Int32)
	real := keepAliveOnce
	until = time.Now().Add(d)
	keepAliveOnce = func(ctx context.Context, c *clientv3.Client, id clientv3.LeaseID) (*clientv3.LeaseKeepAliveResponse, error) {
		calls.Add(1)
		if time.Now().Before(until) {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return real(ctx, c, id)
	}
	t.Cleanup(func() { keepAliveOnce = real })
	return until, calls
}

// TestLeadership_outlivesUnansweredRenewals: when renewals go unanswered for
// more than a TTL (FINDINGS F7: etcd electing a new raft leader), the
// leadership holds while etcd still holds the lease (here the session's own
// keep-alive holds it) and goes on once answers come back; once etcd has no
// lease (revoked here), Done closes.
func TestLeadership_outlivesUnansweredRenewals(t *testing.T) {
	m := startTestMember(t)
	m.cfg.LeaderTTL = time.Second
	_, calls := loseRenewals(t, 3*m.cfg.LeaderTTL/2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := m.Campaign(ctx, NodeInfo{Name: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Resign(ctx)
	select {
	case <-l.Done():
		t.Fatal("leadership lost after 1.5 TTLs without answers although etcd still held its lease")
	case <-time.After(3 * m.cfg.LeaderTTL):
	}
	if calls.Load() < 10 {
		t.Fatalf("%d renewals in 3 TTLs, want one every quarter TTL", calls.Load())
	}
	if _, err := m.client.Revoke(ctx, l.sess.Lease()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Done():
	case <-time.After(2 * m.cfg.LeaderTTL):
		t.Fatal("leadership still held 2 TTLs after etcd revoked its lease")
	}
}

// TestLeadership_lostAfterTwoTTLsUnanswered: a leader whose renewals go
// unanswered (cut off from etcd's majority) stops within two TTLs and a
// quarter, whatever etcd might still hold.
func TestLeadership_lostAfterTwoTTLsUnanswered(t *testing.T) {
	m := startTestMember(t)
	m.cfg.LeaderTTL = time.Second
	loseRenewals(t, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := m.Campaign(ctx, NodeInfo{Name: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Resign(ctx)
	start := time.Now()
	select {
	case <-l.Done():
		if d := time.Since(start); d < 2*m.cfg.LeaderTTL-m.cfg.LeaderTTL/4 {
			t.Fatalf("leadership given up after %s, before two TTLs without answers", d)
		}
	case <-time.After(4 * m.cfg.LeaderTTL):
		t.Fatal("leadership still held 4 TTLs after the last answered renewal")
	}
}
