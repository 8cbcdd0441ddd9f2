//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
)

// httpClient never follows redirects: the workload follows them itself, to
// know which node answered.
var httpClient = &http.Client{
	Transport: &http.Transport{
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     5 * time.Second,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func getJSON(ctx context.Context, url string, timeout time.Duration, out any) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("GET %s: status %d, undecodable body %.200q: %w", url, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode, nil
}

// Health is GET /v1/health on one node: its status code and body.
func (n *Node) Health(ctx context.Context) (int, wire.Health, error) {
	var h wire.Health
	code, err := getJSON(ctx, n.URL()+"/v1/health", time.Second, &h)
	return code, h, err
}

// WALStatus is GET /v1/wal/status on one node.
func (n *Node) WALStatus(ctx context.Context) (wire.WALStatus, error) {
	var ws wire.WALStatus
	code, err := getJSON(ctx, n.URL()+"/v1/wal/status", time.Second, &ws)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("GET /v1/wal/status on %s: status %d", n.Name, code)
	}
	return ws, err
}

// Frames reads every committed frame of the node's own WAL, paging forward
// with after_seq, and the safe_seq of the last page.
func (n *Node) Frames(ctx context.Context) ([]wire.Frame, uint64, error) {
	var out []wire.Frame
	var safe uint64
	after := uint64(0)
	for {
		var ir wire.InspectResponse
		code, err := getJSON(ctx, fmt.Sprintf("%s/v1/wal/inspect?after_seq=%d&limit=10000", n.URL(), after), 30*time.Second, &ir)
		if err != nil {
			return nil, 0, err
		}
		if code != http.StatusOK {
			return nil, 0, fmt.Errorf("GET /v1/wal/inspect on %s: status %d", n.Name, code)
		}
		out = append(out, ir.Frames...)
		safe = ir.SafeSeq
		if len(ir.Frames) < 10000 {
			return out, safe, nil
		}
		after = ir.Frames[len(ir.Frames)-1].Seq
	}
}

// postResult is the outcome of one POST of one event.
type postResult struct {
	status   int
	code     string // the error code of a JSON error answer
	seq      uint64
	location string
	err      error
	sentAt   time.Time
	doneAt   time.Time
}

func postEvent(ctx context.Context, base, body string, timeout time.Duration) postResult {
	r := postResult{sentAt: time.Now()}
	defer func() { r.doneAt = time.Now() }()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/telemetry/events", strings.NewReader(body))
	if err != nil {
		r.err = err
		return r
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		r.err = err
		r.doneAt = time.Now()
		return r
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	r.status = resp.StatusCode
	r.doneAt = time.Now()
	if err != nil {
		r.err = err
		return r
	}
	switch resp.StatusCode {
	case http.StatusOK:
		var ir wire.IngestResponse
		if err := json.Unmarshal(b, &ir); err != nil || len(ir.Seqs) != 1 {
			r.err = fmt.Errorf("bad ingest answer %.200q", b)
			return r
		}
		r.seq = ir.Seqs[0]
	case http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		r.location = resp.Header.Get("Location")
	default:
		var er wire.ErrorResponse
		if json.Unmarshal(b, &er) == nil {
			r.code = er.Error
		}
	}
	return r
}

// refused reports whether a transport error proves the request never reached
// the server (a failed dial), so nothing can have been written.
func refused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// PlannedFailover is POST /v1/ha/failover on n (which must lead) with
// {"to": to}: the product's planned handover, as `autonomyctl ha failover`
// sends it.
func (n *Node) PlannedFailover(ctx context.Context, to string, timeout time.Duration) (wire.FailoverResponse, error) {
	var fr wire.FailoverResponse
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	body, _ := json.Marshal(wire.FailoverRequest{To: to})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.URL()+"/v1/ha/failover", strings.NewReader(string(body)))
	if err != nil {
		return fr, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		return fr, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fr, fmt.Errorf("POST /v1/ha/failover on %s to %s: status %d: %.300s", n.Name, to, resp.StatusCode, b)
	}
	return fr, json.Unmarshal(b, &fr)
}
