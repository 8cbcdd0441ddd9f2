package client

import (
	"context"
	"fmt"
	"mime"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
)

// SnapshotStream is an open answer of GET /v1/snapshot: the snapshot's
// bytes as the leader streams them. The caller verifies them (package
// node/snapshot). Close it.
type SnapshotStream struct {
	// URL is the URL that answered (after redirects).
	URL string

	resp   *http.Response
	cancel context.CancelFunc
	timer  *time.Timer // nil: no idle bound
	idle   time.Duration
	idled  atomic.Bool
}

// Snapshot opens GET /v1/snapshot on the leader (a follower's 307 is
// followed). The answer's headers must arrive within the client's timeout;
// after that, with idle > 0, a read fails with ErrStreamIdle when no byte
// arrives for idle.
func (c *Client) Snapshot(ctx context.Context, idle time.Duration) (*SnapshotStream, error) {
	r := Request{Path: "/v1/snapshot", Route: LeaderOnly, Method: http.MethodGet,
		Header: http.Header{"Accept": {wire.ContentTypeSnapshot}}}
	var s *SnapshotStream
	_, err := c.route(ctx, r, func(ep string) (*Reply, error) {
		resp, rep, cancel, err := c.openStream(ctx, ep, r, nil)
		if err != nil {
			return rep, err
		}
		if mt, _, perr := mime.ParseMediaType(resp.Header.Get("Content-Type")); perr != nil || mt != wire.ContentTypeSnapshot {
			drain(resp)
			cancel()
			return rep, fmt.Errorf("api: GET %s answered Content-Type %q, not %s", rep.URL, resp.Header.Get("Content-Type"), wire.ContentTypeSnapshot)
		}
		s = &SnapshotStream{URL: rep.URL, resp: resp, cancel: cancel, idle: idle}
		if idle > 0 {
			s.timer = time.AfterFunc(idle, func() { s.idled.Store(true); cancel() })
		}
		return rep, nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Read reads the snapshot's bytes.
func (s *SnapshotStream) Read(p []byte) (int, error) {
	n, err := s.resp.Body.Read(p)
	if s.timer != nil && n > 0 {
		s.timer.Reset(s.idle)
	}
	if err != nil && s.idled.Load() {
		return n, fmt.Errorf("%w: nothing from %s for %s", ErrStreamIdle, s.URL, s.idle)
	}
	return n, err
}

// Close ends the stream. It is idempotent.
func (s *SnapshotStream) Close() error {
	if s.timer != nil {
		s.timer.Stop()
	}
	s.cancel()
	return s.resp.Body.Close()
}
