package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/autonomyops/orchestrator/api/wire"
)

// Audit asks the leader for the operator actions, newest first; limit 0
// leaves the number to the server.
func (c *Client) Audit(ctx context.Context, limit int) (*wire.AuditResponse, *Reply, error) {
	var ar wire.AuditResponse
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	rep, err := c.Do(ctx, Request{Path: "/v1/audit", Query: q, Route: LeaderOnly}, &ar)
	if err != nil {
		return nil, rep, err
	}
	return &ar, rep, nil
}

// Failover asks the leader for a planned failover (POST /v1/ha/failover).
// A refusal is an *HTTPError with Status 409 and Code "failover_refused". The
// request is never resent to another node once it may have reached one.
func (c *Client) Failover(ctx context.Context, req wire.FailoverRequest) (*wire.FailoverResponse, *Reply, error) {
	var fr wire.FailoverResponse
	rep, err := c.Do(ctx, Request{Method: http.MethodPost, Path: "/v1/ha/failover", Route: LeaderOnly, Body: req}, &fr)
	if err != nil {
		return nil, rep, err
	}
	return &fr, rep, nil
}
