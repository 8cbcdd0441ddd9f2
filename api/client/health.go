package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/autonomyops/orchestrator/api/wire"
)

// HealthResult is one node's answer to GET /v1/health.
type HealthResult struct {
	Endpoint string
	Status   int          // HTTP status; 0 when the node did not answer
	Health   *wire.Health // the body of a 200 or 503 answer, when it decoded
	Err      error        // a transport error or an unexpected answer
}

// Leading reports whether this node answered as the committing leader.
func (h HealthResult) Leading() bool { return h.Err == nil && h.Status == http.StatusOK }

// ErrNoLeader: nodes answered, but none answered /v1/health with 200.
var ErrNoLeader = errors.New("api: no node answered /v1/health with 200 (no leader can commit right now)")

// HealthOf asks one node for its health. It does not follow redirects:
// every node answers health about itself.
func (c *Client) HealthOf(ctx context.Context, endpoint string) HealthResult {
	res := HealthResult{Endpoint: endpoint}
	target := endpoint + "/v1/health"
	resp, err := c.roundTrip(ctx, c.hc, http.MethodGet, target, nil, nil)
	if err != nil {
		res.Err = err
		return res
	}
	defer drain(resp)
	res.Status = resp.StatusCode
	switch resp.StatusCode {
	case http.StatusOK, http.StatusServiceUnavailable:
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		if err != nil {
			res.Err = fmt.Errorf("api: reading the answer of GET %s: %w", target, err)
			return res
		}
		var h wire.Health
		if jerr := json.Unmarshal(b, &h); jerr == nil {
			res.Health = &h
		} else if resp.StatusCode == http.StatusOK {
			res.Err = fmt.Errorf("api: decoding the answer of GET %s: %w", target, jerr)
		}
	default:
		res.Err = decodeHTTPError(resp, http.MethodGet, target)
	}
	return res
}

// HealthAll asks every endpoint for its health, concurrently, and returns the
// answers in endpoint order.
func (c *Client) HealthAll(ctx context.Context) []HealthResult {
	out := make([]HealthResult, len(c.endpoints))
	var wg sync.WaitGroup
	for i, ep := range c.endpoints {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = c.HealthOf(ctx, ep)
		}()
	}
	wg.Wait()
	return out
}

// Leader discovers the leader: the endpoint whose /v1/health answers 200. It
// probes every endpoint concurrently and stops at the first 200. When no node
// answers at all it returns an *UnreachableError; when nodes answer but none
// leads, an error wrapping ErrNoLeader.
func (c *Client) Leader(ctx context.Context) (string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type answer struct {
		i   int
		res HealthResult
	}
	ch := make(chan answer, len(c.endpoints))
	for i, ep := range c.endpoints {
		go func() { ch <- answer{i, c.HealthOf(ctx, ep)} }()
	}
	results := make([]HealthResult, len(c.endpoints))
	for range c.endpoints {
		a := <-ch
		if a.res.Leading() {
			c.setLeader(a.res.Endpoint)
			return a.res.Endpoint, nil
		}
		results[a.i] = a.res
	}
	var unreach []error
	var why []string
	for _, r := range results {
		if r.Status == 0 && r.Err != nil && isTransport(r.Err) {
			unreach = append(unreach, r.Err)
			continue
		}
		d := fmt.Sprintf("%s answered %d", r.Endpoint, r.Status)
		if r.Health != nil {
			d += fmt.Sprintf(" (role %s", r.Health.Role)
			if len(r.Health.Reasons) > 0 {
				d += ", " + strings.Join(r.Health.Reasons, ", ")
			}
			d += ")"
		}
		why = append(why, d)
	}
	if len(why) == 0 {
		return "", &UnreachableError{Errs: unreach}
	}
	return "", fmt.Errorf("%w: %s", ErrNoLeader, strings.Join(why, "; "))
}
