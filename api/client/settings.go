package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/autonomyops/orchestrator/api/wire"
)

// SettingPath is the route of one cluster setting: /v1/config/<key>, each
// '/'-separated part of the key escaped.
func SettingPath(key string) string {
	parts := strings.Split(key, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return "/v1/config/" + strings.Join(parts, "/")
}

// ifMatchHeader returns the If-Match header of a conditional settings write.
func ifMatchHeader(rev *int64) http.Header {
	if rev == nil {
		return nil
	}
	return http.Header{"If-Match": {strconv.FormatInt(*rev, 10)}}
}

// Settings asks the leader for every cluster setting (GET /v1/config/).
func (c *Client) Settings(ctx context.Context) (*wire.SettingsList, *Reply, error) {
	var l wire.SettingsList
	rep, err := c.Do(ctx, Request{Path: "/v1/config/", Route: LeaderOnly}, &l)
	if err != nil {
		return nil, rep, err
	}
	return &l, rep, nil
}

// Setting asks the leader for one cluster setting; an absent key is an
// *HTTPError with Status 404.
func (c *Client) Setting(ctx context.Context, key string) (*wire.Setting, *Reply, error) {
	var st wire.Setting
	rep, err := c.Do(ctx, Request{Path: SettingPath(key), Route: LeaderOnly}, &st)
	if err != nil {
		return nil, rep, err
	}
	return &st, rep, nil
}

// PutSetting writes a cluster setting (PUT /v1/config/<key>, body
// {"value": value}). With ifRevision set, the write applies only if the key's
// revision is *ifRevision (0: the key must not exist); otherwise the answer
// is an *HTTPError with Status 409 and Code "revision_mismatch".
func (c *Client) PutSetting(ctx context.Context, key string, value json.RawMessage, ifRevision *int64) (*wire.Setting, *Reply, error) {
	var st wire.Setting
	body := struct {
		Value json.RawMessage `json:"value"`
	}{value}
	rep, err := c.Do(ctx, Request{Method: http.MethodPut, Path: SettingPath(key), Route: LeaderOnly, Body: body,
		Header: ifMatchHeader(ifRevision)}, &st)
	if err != nil {
		return nil, rep, err
	}
	return &st, rep, nil
}

// DeleteSetting removes a cluster setting (DELETE /v1/config/<key>), under
// the same condition as PutSetting when ifRevision is set. The answer names
// the key and the revision of the deletion.
func (c *Client) DeleteSetting(ctx context.Context, key string, ifRevision *int64) (*wire.Setting, *Reply, error) {
	var st wire.Setting
	rep, err := c.Do(ctx, Request{Method: http.MethodDelete, Path: SettingPath(key), Route: LeaderOnly,
		Header: ifMatchHeader(ifRevision)}, &st)
	if err != nil {
		return nil, rep, err
	}
	return &st, rep, nil
}
