package client

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/autonomyops/orchestrator/api/wire"
)

// HAStatus asks the leader for GET /v1/ha/status, or the first node that
// answers when no leader is known (every node answers this route).
func (c *Client) HAStatus(ctx context.Context) (*wire.HAStatus, *Reply, error) {
	var st wire.HAStatus
	r := Request{Path: "/v1/ha/status"}
	leader, err := c.Leader(ctx)
	var unreach *UnreachableError
	if errors.As(err, &unreach) {
		return nil, nil, retarget(unreach, r, c.endpoints)
	}
	if err == nil {
		r.Endpoint = leader
		rep, err := c.Do(ctx, r, &st)
		if err == nil || !isTransport(err) {
			return &st, rep, err
		}
		r.Endpoint = "" // the leader went away meanwhile: ask anyone
	}
	rep, err := c.Do(ctx, r, &st)
	if err != nil {
		return nil, rep, err
	}
	return &st, rep, nil
}

// WALStatus asks for GET /v1/wal/status: the WAL of the node at endpoint, or
// of the first node that answers when endpoint is "".
func (c *Client) WALStatus(ctx context.Context, endpoint string) (*wire.WALStatus, *Reply, error) {
	var st wire.WALStatus
	rep, err := c.Do(ctx, Request{Path: "/v1/wal/status", Endpoint: endpoint}, &st)
	if err != nil {
		return nil, rep, err
	}
	return &st, rep, nil
}

// InspectQuery filters GET /v1/wal/inspect. Zero values are left out.
type InspectQuery struct {
	Since string // a duration such as 1h, or an RFC 3339 time
	Kind  string // the event's "kind" field
	Limit int    // at most this many frames (the newest)
}

// Values encodes q as query parameters.
func (q InspectQuery) Values() url.Values {
	v := url.Values{}
	if q.Since != "" {
		v.Set("since", q.Since)
	}
	if q.Kind != "" {
		v.Set("kind", q.Kind)
	}
	if q.Limit > 0 {
		v.Set("limit", fmt.Sprint(q.Limit))
	}
	return v
}

// WALInspect asks for GET /v1/wal/inspect on the node at endpoint, or on the
// first node that answers when endpoint is "".
func (c *Client) WALInspect(ctx context.Context, endpoint string, q InspectQuery) (*wire.InspectResponse, *Reply, error) {
	var ir wire.InspectResponse
	rep, err := c.Do(ctx, Request{Path: "/v1/wal/inspect", Query: q.Values(), Endpoint: endpoint}, &ir)
	if err != nil {
		return nil, rep, err
	}
	return &ir, rep, nil
}

// FleetSummary asks the leader for GET /v1/fleet/summary.
func (c *Client) FleetSummary(ctx context.Context) (*wire.FleetSummary, *Reply, error) {
	var fs wire.FleetSummary
	rep, err := c.Do(ctx, Request{Path: "/v1/fleet/summary", Route: LeaderOnly}, &fs)
	if err != nil {
		return nil, rep, err
	}
	return &fs, rep, nil
}
