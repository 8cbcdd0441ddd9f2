package cluster

import (
	"context"
	"errors"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// TestRetryMembership: a membership change is retried through etcd's answers
// while its raft leadership moves (what member remove met right after the
// node it removes was killed, when that node was etcd's raft leader: 500
// "etcdserver: leader changed"), and told that an earlier attempt failed so,
// since that attempt may have been applied; an error retrying cannot change
// is returned at once.
func TestRetryMembership(t *testing.T) {
	ctx := context.Background()
	var calls []bool
	err := retryMembership(ctx, func(retry bool) error {
		calls = append(calls, retry)
		switch len(calls) {
		case 1:
			return rpctypes.ErrLeaderChanged
		case 2:
			return rpctypes.ErrNoLeader
		case 3:
			if !retry {
				t.Error("third attempt not told it is a retry")
			}
			return nil
		}
		t.Fatal("called after success")
		return nil
	})
	if err != nil || len(calls) != 3 || calls[0] {
		t.Fatalf("err %v after %d calls (retry flags %v)", err, len(calls), calls)
	}

	calls = nil
	err = retryMembership(ctx, func(retry bool) error {
		calls = append(calls, retry)
		return rpctypes.ErrMemberNotFound
	})
	if !errors.Is(err, rpctypes.ErrMemberNotFound) || len(calls) != 1 {
		t.Fatalf("a permanent error: %v after %d calls, want it at once", err, len(calls))
	}

	cctx, cancel := context.WithCancel(ctx)
	calls = nil
	err = retryMembership(cctx, func(bool) error {
		calls = append(calls, true)
		cancel()
		return rpctypes.ErrUnhealthy
	})
	if !errors.Is(err, rpctypes.ErrUnhealthy) || len(calls) != 1 {
		t.Fatalf("cancelled: %v after %d calls", err, len(calls))
	}
}
