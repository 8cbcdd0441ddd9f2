package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// This file is the Go client of the REST API, used by autonomyctl and the
// integration suite. It knows two kinds of route (DESIGN §7):
//
//   - every-node routes (health, ha status, wal status/inspect, metrics) are
//     answered by any node about itself: the client asks the first endpoint
//     that answers, in the order given, unless a request names one endpoint;
//   - leader-only routes: the client discovers the leader (the endpoint whose
//     GET /v1/health answers 200) and sends the request there. A follower
//     answers such a route with 307 and the leader's URL in Location and
//     X-Autonomy-Leader; the client follows that itself (Go's http.Client would
//     drop the Authorization header on a redirect to another host).
//
// Transport errors are returned as Go's own *url.Error, so the operator sees
// the familiar text, e.g.
//
//	Get "http://localhost:8080/v1/fleet/summary": dial tcp 127.0.0.1:8080: connect: connection refused
//
// An answer with a status of 400 or above is an *HTTPError carrying the
// server's {"error","message"} body.

// Headers and limits of the client protocol.
const (
	// HeaderLeader is set by followers on their 307 answers: the leader's API
	// URL (or name when no URL is known).
	HeaderLeader = "X-Autonomy-Leader"
	// DefaultClientTimeout bounds one request when ClientOptions.HTTPClient
	// is nil.
	DefaultClientTimeout = 5 * time.Second
	// defaultMaxRedirects bounds the 307 hops followed for one request. One is
	// normal (follower → leader); more means leadership is moving.
	defaultMaxRedirects = 3
	// maxErrorBody bounds how much of an error answer is read.
	maxErrorBody = 64 << 10
)

// Route says which node may answer a request.
type Route int

const (
	// AnyNode routes are answered by every node about itself.
	AnyNode Route = iota
	// LeaderOnly routes are answered by the leader; followers redirect.
	LeaderOnly
)

// ClientOptions configure NewClient.
type ClientOptions struct {
	// HTTPClient sends the requests. nil means a client with
	// DefaultClientTimeout. Its CheckRedirect is ignored: the client follows
	// the API's 307 answers itself.
	HTTPClient *http.Client
	// Token, when set, is sent as "Authorization: Bearer <token>" to every
	// endpoint, including the leader a follower redirects to.
	Token string
	// UserAgent, when set, is sent in every request.
	UserAgent string
	// MaxRedirects bounds the 307 hops followed for one request; 0 means 3.
	MaxRedirects int
}

// Client talks to the nodes of one cluster. It is safe for concurrent use.
type Client struct {
	endpoints    []string
	hc           *http.Client
	stream       *http.Client  // hc without Timeout, for answers read as they come (logs)
	timeout      time.Duration // hc's Timeout: bounds a stream until its headers arrive
	token        string
	userAgent    string
	maxRedirects int

	mu     sync.Mutex
	leader string // last leader URL learned by discovery or a redirect
}

// ErrNoEndpoints is returned by NewClient when the endpoint list is empty.
var ErrNoEndpoints = errors.New("api: no endpoints")

// NewClient returns a client for the nodes at endpoints (base URLs such as
// http://node-a:8888). Endpoints are normalised with NormalizeEndpoint.
func NewClient(endpoints []string, opts ClientOptions) (*Client, error) {
	var eps []string
	for _, e := range endpoints {
		if strings.TrimSpace(e) == "" {
			continue
		}
		n, err := NormalizeEndpoint(e)
		if err != nil {
			return nil, err
		}
		eps = append(eps, n)
	}
	if len(eps) == 0 {
		return nil, ErrNoEndpoints
	}
	base := opts.HTTPClient
	if base == nil {
		base = &http.Client{Timeout: DefaultClientTimeout}
	}
	hc := *base // a copy: the caller's client keeps its own redirect policy
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	sc := hc
	sc.Timeout = 0
	c := &Client{
		endpoints:    eps,
		hc:           &hc,
		stream:       &sc,
		timeout:      hc.Timeout,
		token:        opts.Token,
		userAgent:    opts.UserAgent,
		maxRedirects: opts.MaxRedirects,
	}
	if c.maxRedirects <= 0 {
		c.maxRedirects = defaultMaxRedirects
	}
	return c, nil
}

// NormalizeEndpoint turns "host:port", "http://host:port/" and the like into
// a base URL without a trailing slash. A missing scheme means http.
func NormalizeEndpoint(s string) (string, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("api: endpoint %q is not a URL: %w", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("api: endpoint %q: scheme must be http or https", s)
	}
	if u.Host == "" {
		return "", fmt.Errorf("api: endpoint %q has no host", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("api: endpoint %q: give only scheme://host:port", s)
	}
	return strings.TrimRight(u.Scheme+"://"+u.Host+u.Path, "/"), nil
}

// Endpoints returns the normalised endpoint list.
func (c *Client) Endpoints() []string { return append([]string(nil), c.endpoints...) }

// KnownLeader returns the leader URL last learned, or "".
func (c *Client) KnownLeader() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leader
}

func (c *Client) setLeader(u string) {
	c.mu.Lock()
	c.leader = u
	c.mu.Unlock()
}

// HTTPError is an answer with status ≥ 400.
type HTTPError struct {
	Status     int    // HTTP status code
	Code       string // the body's "error" code, or "http_<status>" when the body has none
	Message    string // the body's "message", or the start of a non-JSON body
	Method     string
	URL        string
	Leader     string // X-Autonomy-Leader, when the node named one
	RetryAfter string // Retry-After, when present (429, 503)
}

func (e *HTTPError) Error() string {
	msg := fmt.Sprintf("%s %s: %d %s", e.Method, e.URL, e.Status, e.Code)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// UnreachableError says that no endpoint could be reached. Errs holds one
// transport error (normally a *url.Error) per endpoint tried, in order; its
// text is theirs, one per line.
type UnreachableError struct {
	Errs []error
}

func (e *UnreachableError) Error() string {
	s := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		s[i] = err.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap exposes the per-endpoint errors to errors.Is and errors.As.
func (e *UnreachableError) Unwrap() []error { return e.Errs }

// URLs returns the URLs that could not be reached, in order.
func (e *UnreachableError) URLs() []string {
	var out []string
	for _, err := range e.Errs {
		var ue *url.Error
		if errors.As(err, &ue) {
			out = append(out, ue.URL)
		}
	}
	return out
}

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
	return c.route(ctx, r, func(ep string) (*Reply, error) {
		resp, rep, err := c.open(ctx, c.hc, ep, r, body)
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
// or above is read, closed and returned as an *HTTPError.
func (c *Client) open(ctx context.Context, hc *http.Client, base string, r Request, body []byte) (*http.Response, *Reply, error) {
	target := base + r.Path
	if len(r.Query) > 0 {
		target += "?" + r.Query.Encode()
	}
	for hop := 0; ; hop++ {
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

func (c *Client) roundTrip(ctx context.Context, hc *http.Client, method, target string, body []byte, h http.Header) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
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
		if l := resp.Header.Get(HeaderLeader); strings.Contains(l, "://") {
			loc = strings.TrimRight(l, "/") + path
			if q := resp.Request.URL.RawQuery; q != "" {
				loc += "?" + q
			}
		}
	}
	if loc == "" {
		return "", &HTTPError{Status: resp.StatusCode, Code: "redirect_without_location", Method: resp.Request.Method,
			URL: current, Leader: resp.Header.Get(HeaderLeader), Message: "the node redirected without naming the leader's URL"}
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
		Leader:     resp.Header.Get(HeaderLeader),
		RetryAfter: resp.Header.Get("Retry-After"),
	}
	var er ErrorResponse
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

// HealthResult is one node's answer to GET /v1/health.
type HealthResult struct {
	Endpoint string
	Status   int     // HTTP status; 0 when the node did not answer
	Health   *Health // the body of a 200 or 503 answer, when it decoded
	Err      error   // a transport error or an unexpected answer
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
		var h Health
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

// HAStatus asks the leader for GET /v1/ha/status, or the first node that
// answers when no leader is known (every node answers this route).
func (c *Client) HAStatus(ctx context.Context) (*HAStatus, *Reply, error) {
	var st HAStatus
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
func (c *Client) WALStatus(ctx context.Context, endpoint string) (*WALStatus, *Reply, error) {
	var st WALStatus
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
func (c *Client) WALInspect(ctx context.Context, endpoint string, q InspectQuery) (*InspectResponse, *Reply, error) {
	var ir InspectResponse
	rep, err := c.Do(ctx, Request{Path: "/v1/wal/inspect", Query: q.Values(), Endpoint: endpoint}, &ir)
	if err != nil {
		return nil, rep, err
	}
	return &ir, rep, nil
}

// FleetSummary asks the leader for GET /v1/fleet/summary.
func (c *Client) FleetSummary(ctx context.Context) (*FleetSummary, *Reply, error) {
	var fs FleetSummary
	rep, err := c.Do(ctx, Request{Path: "/v1/fleet/summary", Route: LeaderOnly}, &fs)
	if err != nil {
		return nil, rep, err
	}
	return &fs, rep, nil
}

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
func (c *Client) Settings(ctx context.Context) (*SettingsList, *Reply, error) {
	var l SettingsList
	rep, err := c.Do(ctx, Request{Path: "/v1/config/", Route: LeaderOnly}, &l)
	if err != nil {
		return nil, rep, err
	}
	return &l, rep, nil
}

// Setting asks the leader for one cluster setting; an absent key is an
// *HTTPError with Status 404.
func (c *Client) Setting(ctx context.Context, key string) (*Setting, *Reply, error) {
	var st Setting
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
func (c *Client) PutSetting(ctx context.Context, key string, value json.RawMessage, ifRevision *int64) (*Setting, *Reply, error) {
	var st Setting
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
func (c *Client) DeleteSetting(ctx context.Context, key string, ifRevision *int64) (*Setting, *Reply, error) {
	var st Setting
	rep, err := c.Do(ctx, Request{Method: http.MethodDelete, Path: SettingPath(key), Route: LeaderOnly,
		Header: ifMatchHeader(ifRevision)}, &st)
	if err != nil {
		return nil, rep, err
	}
	return &st, rep, nil
}

// Audit asks the leader for the operator actions, newest first; limit 0
// leaves the number to the server.
func (c *Client) Audit(ctx context.Context, limit int) (*AuditResponse, *Reply, error) {
	var ar AuditResponse
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
func (c *Client) Failover(ctx context.Context, req FailoverRequest) (*FailoverResponse, *Reply, error) {
	var fr FailoverResponse
	rep, err := c.Do(ctx, Request{Method: http.MethodPost, Path: "/v1/ha/failover", Route: LeaderOnly, Body: req}, &fr)
	if err != nil {
		return nil, rep, err
	}
	return &fr, rep, nil
}

// LogsQuery selects the events of GET /v1/logs. Zero values are left out.
type LogsQuery struct {
	AfterSeq uint64 // events with a larger Seq
	Follow   bool   // keep the stream open and send events as they commit
	Kind     string // the event's "kind" field
	Agent    string // the event's "agent" field
}

// Values encodes q as query parameters.
func (q LogsQuery) Values() url.Values {
	v := url.Values{}
	if q.Follow {
		v.Set("follow", "true")
	}
	if q.AfterSeq > 0 {
		v.Set("after_seq", strconv.FormatUint(q.AfterSeq, 10))
	}
	if q.Kind != "" {
		v.Set("kind", q.Kind)
	}
	if q.Agent != "" {
		v.Set("agent", q.Agent)
	}
	return v
}

// Limits of a log stream.
const (
	// ContentTypeNDJSON is the media type of GET /v1/logs.
	ContentTypeNDJSON = "application/x-ndjson"
	// maxLogLine bounds one line of a log stream: an event (at most the
	// WAL's frame payload bound, 4 MiB) with its envelope.
	maxLogLine = 8 << 20
)

// ErrStreamIdle: a log stream brought nothing, not even a keepalive line,
// within its idle timeout. The node may be stopped or cut off.
var ErrStreamIdle = errors.New("api: log stream idle")

// headerTimeoutError is the error of a stream whose answer did not begin
// within the client's timeout. Its text is net/http's own for Client.Timeout.
type headerTimeoutError struct{}

func (headerTimeoutError) Error() string {
	return "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
}
func (headerTimeoutError) Timeout() bool   { return true }
func (headerTimeoutError) Temporary() bool { return true }

// LogStream is an open answer of GET /v1/logs: NDJSON, one Event a line,
// blank lines being keepalives. It is not safe for concurrent use; Close it.
type LogStream struct {
	// URL is the URL that answered (after redirects).
	URL string

	resp   *http.Response
	rd     *bufio.Reader
	cancel context.CancelFunc
	timer  *time.Timer // nil: no idle bound
	idle   time.Duration
	idled  atomic.Bool
}

// Logs opens GET /v1/logs on the leader (a follower's 307 is followed). The
// answer's headers must arrive within the client's timeout; after that, with
// idle > 0, the stream fails with ErrStreamIdle when no line arrives for
// idle. The request is not retried on another node once it got an answer: the
// caller resumes with AfterSeq.
func (c *Client) Logs(ctx context.Context, q LogsQuery, idle time.Duration) (*LogStream, error) {
	r := Request{Path: "/v1/logs", Query: q.Values(), Route: LeaderOnly, Method: http.MethodGet,
		Header: http.Header{"Accept": {ContentTypeNDJSON}}}
	var s *LogStream
	_, err := c.route(ctx, r, func(ep string) (*Reply, error) {
		sctx, cancel := context.WithCancel(ctx)
		var timedOut atomic.Bool
		var timer *time.Timer
		if c.timeout > 0 {
			timer = time.AfterFunc(c.timeout, func() { timedOut.Store(true); cancel() })
		}
		resp, rep, err := c.open(sctx, c.stream, ep, r, nil)
		if timer != nil && !timer.Stop() || timedOut.Load() {
			if resp != nil {
				resp.Body.Close()
			}
			cancel()
			target := ep + r.Path + "?" + r.Query.Encode()
			if rep != nil {
				target = rep.URL
			}
			return rep, &url.Error{Op: "Get", URL: target, Err: headerTimeoutError{}}
		}
		if err != nil {
			cancel()
			return rep, err
		}
		if ct := resp.Header.Get("Content-Type"); ct != "" {
			if mt, _, perr := mime.ParseMediaType(ct); perr != nil || mt != ContentTypeNDJSON {
				drain(resp)
				cancel()
				return rep, fmt.Errorf("api: GET %s answered Content-Type %q, not %s", rep.URL, ct, ContentTypeNDJSON)
			}
		}
		s = &LogStream{URL: rep.URL, resp: resp, rd: bufio.NewReaderSize(resp.Body, 64<<10), cancel: cancel, idle: idle}
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

// Next returns the next event and its line as sent (without the newline),
// skipping keepalives. At the clean end of the stream it returns io.EOF; a
// stream cut in the middle of a line returns io.ErrUnexpectedEOF; an idle
// stream, an error wrapping ErrStreamIdle; a broken connection, the read error.
func (s *LogStream) Next() (Event, []byte, error) {
	for {
		line, err := s.readLine()
		if err != nil {
			if s.idled.Load() {
				return Event{}, nil, fmt.Errorf("%w: nothing (not even a keepalive) from %s for %s", ErrStreamIdle, s.URL, s.idle)
			}
			return Event{}, nil, err
		}
		if s.timer != nil {
			s.timer.Reset(s.idle)
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue // keepalive
		}
		var ev Event
		if err := json.Unmarshal(line, &ev); err != nil {
			return Event{}, nil, fmt.Errorf("api: a line of the log stream from %s is not an event: %w", s.URL, err)
		}
		return ev, line, nil
	}
}

// readLine reads one line, bounded by maxLogLine.
func (s *LogStream) readLine() ([]byte, error) {
	var line []byte
	for {
		frag, err := s.rd.ReadSlice('\n')
		line = append(line, frag...)
		switch {
		case err == nil:
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			if len(line) > maxLogLine {
				return nil, fmt.Errorf("api: a line of the log stream from %s exceeds %d bytes", s.URL, maxLogLine)
			}
		case errors.Is(err, io.EOF):
			if len(bytes.TrimSpace(line)) > 0 {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, io.EOF
		default:
			return nil, err
		}
	}
}

// Close ends the stream. It is idempotent.
func (s *LogStream) Close() error {
	if s.timer != nil {
		s.timer.Stop()
	}
	s.cancel()
	return s.resp.Body.Close()
}
