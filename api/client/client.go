package client

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Headers and limits of the client protocol.
const (
	// DefaultClientTimeout bounds one request when Options.HTTPClient
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

// Options configure New.
type Options struct {
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

// ErrNoEndpoints is returned by New when the endpoint list is empty.
var ErrNoEndpoints = errors.New("api: no endpoints")

// New returns a client for the nodes at endpoints (base URLs such as
// http://node-a:8888). Endpoints are normalised with NormalizeEndpoint.
func New(endpoints []string, opts Options) (*Client, error) {
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
