package walrepl

import (
	"context"
	"time"
)

// Sleep waits for d or until ctx ends, whichever comes first. It returns
// ctx.Err() when ctx ended first (or had already ended), else nil; d ≤ 0
// does not wait. It is the one context-aware sleep of the packages that may
// import walrepl (node, api, ctl, the tests); cluster, which may not
// (DESIGN §2), waits with an inline select.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
