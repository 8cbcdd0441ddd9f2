package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/autonomyops/orchestrator/api/wire"
)

// Request is one API call.
type Request struct {
	Method string // default GET
	Path   string // e.g. /v1/ha/status
	Query  url.Values
	// Body is sent as JSON; a []byte or json.RawMessage is sent as is.
	Body   any
	Header http.Header
	Route  Route
	// Endpoint pins the request to one node (any base URL, not necessarily
	// in the list). Redirects are still followed.
	Endpoint string
}

// Reply describes the answer a request got.
type Reply struct {
	URL    string // the URL that answered (after redirects)
	Status int
	Header http.Header
}

// Do sends r and decodes a 2xx JSON answer into out (unless out is nil). See
// the file comment for how the node is chosen.
func (c *Client) Do(ctx context.Context, r Request, out any) (*Reply, error) {
	if r.Method == "" {
		r.Method = http.MethodGet
	}
	body, err := encodeBody(r.Body)
	if err != nil {
		return nil, err
	}
	var newBody func(context.Context) io.Reader
	if body != nil {
		newBody = func(context.Context) io.Reader { return bytes.NewReader(body) }
	}
	return c.route(ctx, r, func(ep string) (*Reply, error) {
		resp, rep, err := c.open(ctx, c.hc, ep, r, newBody)
		if err != nil {
			return rep, err
		}
		defer drain(resp)
		if out != nil && resp.StatusCode != http.StatusNoContent {
			if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
				return rep, fmt.Errorf("api: decoding the answer of %s %s: %w", r.Method, rep.URL, err)
			}
		}
		return rep, nil
	})
}

// route calls try with the node r should go to and, while try meets a
// transport error that allows it, with the next one (see the file comment).
func (c *Client) route(ctx context.Context, r Request, try func(ep string) (*Reply, error)) (*Reply, error) {
	if r.Endpoint != "" {
		ep, err := NormalizeEndpoint(r.Endpoint)
		if err != nil {
			return nil, err
		}
		return try(ep)
	}
	order := c.endpoints
	if r.Route == LeaderOnly {
		leader, lerr := c.Leader(ctx)
		var unreach *UnreachableError
		switch {
		case lerr == nil:
			// Ask the leader first, then the others: a follower redirects to
			// whoever leads by then.
			order = append([]string{leader}, without(c.endpoints, leader)...)
		case errors.As(lerr, &unreach):
			// Nobody answered /v1/health. Report the request the caller made,
			// with the transport error each endpoint gave.
			return nil, retarget(unreach, r, c.endpoints)
		case errors.Is(lerr, ErrNoLeader):
			// Nodes answer but none is leader: let the first one that
			// answers say why (307 to a leader it knows, or 503 no_leader).
		default:
			return nil, lerr
		}
	}
	var errs []error
	for _, ep := range order {
		rep, err := try(ep)
		if err == nil || !isTransport(err) || !mayResend(r.Method, err) {
			return rep, err
		}
		if ctx.Err() != nil {
			return nil, err
		}
		errs = append(errs, err)
	}
	return nil, &UnreachableError{Errs: errs}
}

// mayResend reports whether a request that met the transport error err may
// be sent again to another node. Idempotent methods may; a POST only when the
// connection was never made (a dial error): once sent, a POST such as a
// failover may have taken effect, and sending it to the next node could run
// it twice.
func mayResend(method string, err error) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// ErrTooManyRedirects: a request was redirected more than MaxRedirects
// times, which means leadership is moving.
var ErrTooManyRedirects = errors.New("api: too many redirects")

// open issues r against the node at base with hc, follows 307 answers, and
// returns the final answer for the caller to read and close. An answer of 400
// or above is read, closed and returned as an *HTTPError. newBody, unless
// nil, gives each attempt (the first, and one per redirect) its body; ctx is
// passed on, so that a body that blocks can end with it.
func (c *Client) open(ctx context.Context, hc *http.Client, base string, r Request, newBody func(context.Context) io.Reader) (*http.Response, *Reply, error) {
	target := base + r.Path
	if len(r.Query) > 0 {
		target += "?" + r.Query.Encode()
	}
	for hop := 0; ; hop++ {
		var body io.Reader
		if newBody != nil {
			body = newBody(ctx)
		}
		resp, err := c.roundTrip(ctx, hc, r.Method, target, body, r.Header)
		if err != nil {
			return nil, nil, err
		}
		if resp.StatusCode == http.StatusTemporaryRedirect || resp.StatusCode == http.StatusPermanentRedirect {
			next, lerr := redirectTarget(resp, target, r.Path)
			drain(resp)
			if lerr != nil {
				return nil, nil, lerr
			}
			if hop >= c.maxRedirects {
				return nil, nil, fmt.Errorf("api: %s %s: more than %d redirects (leadership is moving?); last pointed at %s: %w",
					r.Method, base+r.Path, c.maxRedirects, next, ErrTooManyRedirects)
			}
			if u, err := url.Parse(next); err == nil {
				c.setLeader(u.Scheme + "://" + u.Host)
			}
			target = next
			continue
		}
		rep := &Reply{URL: target, Status: resp.StatusCode, Header: resp.Header}
		if resp.StatusCode >= 400 {
			defer drain(resp)
			return nil, rep, decodeHTTPError(resp, r.Method, target)
		}
		return resp, rep, nil
	}
}

func (c *Client) roundTrip(ctx context.Context, hc *http.Client, method, target string, body io.Reader, h http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/json")
	}
	if body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	return hc.Do(req)
}

// redirectTarget reads where a 307 points: Location, else X-Autonomy-Leader
// when it holds a URL.
func redirectTarget(resp *http.Response, current, path string) (string, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		if l := resp.Header.Get(wire.HeaderLeader); strings.Contains(l, "://") {
			loc = strings.TrimRight(l, "/") + path
			if q := resp.Request.URL.RawQuery; q != "" {
				loc += "?" + q
			}
		}
	}
	if loc == "" {
		return "", &HTTPError{Status: resp.StatusCode, Code: "redirect_without_location", Method: resp.Request.Method,
			URL: current, Leader: resp.Header.Get(wire.HeaderLeader), Message: "the node redirected without naming the leader's URL"}
	}
	cur, err := url.Parse(current)
	if err != nil {
		return "", fmt.Errorf("api: %w", err)
	}
	u, err := cur.Parse(loc)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("api: %s redirected to %q, which is not an http(s) URL", current, loc)
	}
	return u.String(), nil
}

func decodeHTTPError(resp *http.Response, method, target string) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &HTTPError{
		Status:     resp.StatusCode,
		Method:     method,
		URL:        target,
		Leader:     resp.Header.Get(wire.HeaderLeader),
		RetryAfter: resp.Header.Get("Retry-After"),
	}
	var er wire.ErrorResponse
	if json.Unmarshal(b, &er) == nil && er.Error != "" {
		e.Code, e.Message = er.Error, er.Message
		return e
	}
	e.Code = fmt.Sprintf("http_%d", resp.StatusCode)
	e.Message = strings.TrimSpace(string(b))
	if len(e.Message) > 200 {
		e.Message = e.Message[:200] + "…"
	}
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	return e
}

func encodeBody(b any) ([]byte, error) {
	switch v := b.(type) {
	case nil:
		return nil, nil
	case []byte:
		return v, nil
	case json.RawMessage:
		return v, nil
	}
	out, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("api: encoding the request body: %w", err)
	}
	return out, nil
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	resp.Body.Close()
}

// isTransport reports whether err means "this node did not answer" (as
// opposed to an answer we did not like): the request may go to another node.
func isTransport(err error) bool {
	var ue *url.Error
	return errors.As(err, &ue)
}

// retarget rewrites the health-probe errors of a failed leader discovery so
// that they name the request the caller made: the cause (refused, timeout,
// TLS) is the same one the request itself would have met.
func retarget(u *UnreachableError, r Request, eps []string) *UnreachableError {
	out := &UnreachableError{}
	for i, err := range u.Errs {
		var ue *url.Error
		if errors.As(err, &ue) && i < len(eps) {
			target := eps[i] + r.Path
			if len(r.Query) > 0 {
				target += "?" + r.Query.Encode()
			}
			out.Errs = append(out.Errs, &url.Error{Op: urlOp(r.Method), URL: target, Err: ue.Err})
			continue
		}
		out.Errs = append(out.Errs, err)
	}
	return out
}

// urlOp spells a method the way net/http does in a *url.Error ("Get", "Post").
func urlOp(method string) string {
	if method == "" {
		return "Get"
	}
	return method[:1] + strings.ToLower(method[1:])
}

func without(list []string, s string) []string {
	var out []string
	for _, e := range list {
		if e != s {
			out = append(out, e)
		}
	}
	return out
}
