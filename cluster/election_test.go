package cluster

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestLeadership_outlivesAKeepAliveThatGivesUp: when the renewals get no
// answer for two TTLs (as while etcd elects a new raft leader, FINDINGS F7),
// the leadership holds as long as etcd still holds the lease (here the
// session's own keep-alive holds it), and renews it once answers come back;
// once etcd has no lease (revoked here), Done closes.
func TestLeadership_outlivesAKeepAliveThatGivesUp(t *testing.T) {
	m := startTestMember(t)
	m.cfg.LeaderTTL = time.Second
	var calls atomic.Int32
	real := keepAliveOnce
	lostUntil := time.Now().Add(2 * m.cfg.LeaderTTL)
	keepAliveOnce = func(ctx context.Context, c *clientv3.Client, id clientv3.LeaseID) (*clientv3.LeaseKeepAliveResponse, error) {
		calls.Add(1)
		if time.Now().Before(lostUntil) { // no answer, as while etcd elects
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return real(ctx, c, id)
	}
	t.Cleanup(func() { keepAliveOnce = real })

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := m.Campaign(ctx, NodeInfo{Name: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Resign(ctx)
	select {
	case <-l.Done():
		t.Fatal("leadership lost although etcd still held its lease")
	case <-time.After(3 * m.cfg.LeaderTTL):
	}
	if calls.Load() < 8 {
		t.Fatalf("%d renewals in 3 TTLs, want one every quarter TTL", calls.Load())
	}
	ttl, err := m.client.TimeToLive(ctx, l.sess.Lease())
	if err != nil || ttl.TTL < 0 {
		t.Fatalf("after 3 TTLs the lease is %+v, %v; want it renewed", ttl, err)
	}
	if _, err := m.client.Revoke(ctx, l.sess.Lease()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Done():
	case <-time.After(3 * m.cfg.LeaderTTL):
		t.Fatal("leadership still held 3 TTLs after etcd revoked its lease")
	}
}
