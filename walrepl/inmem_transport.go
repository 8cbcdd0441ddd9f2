package walrepl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// InmemNetwork connects Replicas in one process, with faults a test can
// inject: directed link cuts (partitions, one-way cuts), per-message delay,
// and node crashes. Addresses are node names. A cut breaks every open stream
// on the link, as a TCP connection through a dead route would.
type InmemNetwork struct {
	mu       sync.Mutex
	handlers map[string]Handler
	cut      map[[2]string]bool
	delay    time.Duration
	streams  map[*inmemStream]struct{}
	hook     func(kind, from, to string)
}

// NewInmemNetwork returns an empty network.
func NewInmemNetwork() *InmemNetwork {
	return &InmemNetwork{handlers: map[string]Handler{}, cut: map[[2]string]bool{}, streams: map[*inmemStream]struct{}{}}
}

// Register attaches a node's handler at addr.
func (n *InmemNetwork) Register(addr string, h Handler) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.handlers[addr] = h
}

// Unregister detaches addr (a crashed node) and breaks its streams.
func (n *InmemNetwork) Unregister(addr string) {
	n.mu.Lock()
	delete(n.handlers, addr)
	var kill []*inmemStream
	for s := range n.streams {
		if s.from == addr || s.to == addr {
			kill = append(kill, s)
		}
	}
	n.mu.Unlock()
	for _, s := range kill {
		s.close(ErrUnreachable)
	}
}

// Cut drops every message from → to (one way) and breaks streams on that link.
func (n *InmemNetwork) Cut(from, to string) {
	n.mu.Lock()
	n.cut[[2]string{from, to}] = true
	var kill []*inmemStream
	for s := range n.streams {
		if (s.from == from && s.to == to) || (s.from == to && s.to == from) {
			kill = append(kill, s)
		}
	}
	n.mu.Unlock()
	for _, s := range kill {
		s.close(ErrUnreachable)
	}
}

// Isolate cuts every link between node and the others, both ways.
func (n *InmemNetwork) Isolate(node string, others ...string) {
	for _, o := range others {
		n.Cut(node, o)
		n.Cut(o, node)
	}
}

// Partition splits the nodes into groups that cannot reach each other.
func (n *InmemNetwork) Partition(groups ...[]string) {
	for i, g := range groups {
		for j, h := range groups {
			if i == j {
				continue
			}
			for _, a := range g {
				for _, b := range h {
					n.Cut(a, b)
				}
			}
		}
	}
}

// Heal removes every cut.
func (n *InmemNetwork) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut = map[[2]string]bool{}
}

// SetDelay delays every message by d.
func (n *InmemNetwork) SetDelay(d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.delay = d
}

// SetHook installs f (nil removes it), called before each message of kind
// "promise", "fetch" or "stream" (a stream's opening) from → to is routed. It
// may block: a test holds one message there to order events exactly.
func (n *InmemNetwork) SetHook(f func(kind, from, to string)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.hook = f
}

func (n *InmemNetwork) runHook(kind, from, to string) {
	n.mu.Lock()
	f := n.hook
	n.mu.Unlock()
	if f != nil {
		f(kind, from, to)
	}
}

func (n *InmemNetwork) route(from, to string) (Handler, time.Duration, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	h, ok := n.handlers[to]
	if !ok || n.cut[[2]string{from, to}] {
		return nil, 0, fmt.Errorf("%w: %s → %s", ErrUnreachable, from, to)
	}
	return h, n.delay, nil
}

func (n *InmemNetwork) linkUp(from, to string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, ok := n.handlers[to]
	return ok && !n.cut[[2]string{from, to}]
}

// Transport returns the transport node `from` uses.
func (n *InmemNetwork) Transport(from string) Transport { return &inmemTransport{net: n, from: from} }

type inmemTransport struct {
	net  *InmemNetwork
	from string
}

// call delivers a request and its answer, both subject to cuts and delay.
func call[Req, Resp any](ctx context.Context, t *inmemTransport, kind, to string, req Req, h func(Handler, context.Context, Req) Resp) (Resp, error) {
	var zero Resp
	t.net.runHook(kind, t.from, to)
	hd, d, err := t.net.route(t.from, to)
	if err != nil {
		return zero, err
	}
	if err := Sleep(ctx, d); err != nil {
		return zero, err
	}
	resp := h(hd, ctx, req)
	if !t.net.linkUp(to, t.from) {
		return zero, fmt.Errorf("%w: %s → %s (answer lost)", ErrUnreachable, to, t.from)
	}
	if err := Sleep(ctx, d); err != nil {
		return zero, err
	}
	return resp, nil
}

func (t *inmemTransport) Promise(ctx context.Context, to string, req *PromiseRequest) (*PromiseResponse, error) {
	return call(ctx, t, "promise", to, req, Handler.HandlePromise)
}

func (t *inmemTransport) Fetch(ctx context.Context, to string, req *FetchRequest) (*FetchResponse, error) {
	return call(ctx, t, "fetch", to, req, Handler.HandleFetch)
}

func (t *inmemTransport) OpenStream(ctx context.Context, to string) (Stream, error) {
	t.net.runHook("stream", t.from, to)
	h, _, err := t.net.route(t.from, to)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancelCause(context.Background())
	s := &inmemStream{net: t.net, from: t.from, to: to, ctx: sctx, cancel: cancel,
		reqs: make(chan *AppendRequest, 1024), resps: make(chan *AppendResponse, 1024)}
	t.net.mu.Lock()
	t.net.streams[s] = struct{}{}
	t.net.mu.Unlock()
	go func() {
		err := h.HandleStream(sctx, &inmemServerStream{s})
		if err == nil {
			err = io.EOF
		}
		s.close(err)
	}()
	stop := context.AfterFunc(ctx, func() { s.close(ctx.Err()) })
	go func() { <-sctx.Done(); stop() }()
	return s, nil
}

// inmemStream is both ends of one append stream.
type inmemStream struct {
	net      *InmemNetwork
	from, to string
	ctx      context.Context
	cancel   context.CancelCauseFunc
	reqs     chan *AppendRequest
	resps    chan *AppendResponse
	once     sync.Once
}

func (s *inmemStream) close(err error) {
	s.once.Do(func() {
		s.cancel(err)
		s.net.mu.Lock()
		delete(s.net.streams, s)
		s.net.mu.Unlock()
	})
}

func (s *inmemStream) err() error {
	if err := context.Cause(s.ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return io.EOF
}

// deliver passes a message along a direction of the link after the delay.
func deliver[T any](s *inmemStream, from, to string, ch chan T, m T) error {
	s.net.mu.Lock()
	d := s.net.delay
	s.net.mu.Unlock()
	if !s.net.linkUp(from, to) {
		err := fmt.Errorf("%w: %s → %s", ErrUnreachable, from, to)
		s.close(err)
		return err
	}
	if err := Sleep(s.ctx, d); err != nil {
		return s.err()
	}
	select {
	case ch <- m:
		return nil
	case <-s.ctx.Done():
		return s.err()
	}
}

func (s *inmemStream) Send(r *AppendRequest) error { return deliver(s, s.from, s.to, s.reqs, r) }

func (s *inmemStream) Recv() (*AppendResponse, error) {
	select {
	case r := <-s.resps:
		return r, nil
	case <-s.ctx.Done():
		return nil, s.err()
	}
}

func (s *inmemStream) Close() error {
	s.close(io.EOF)
	return nil
}

type inmemServerStream struct{ s *inmemStream }

func (ss *inmemServerStream) Recv() (*AppendRequest, error) {
	select {
	case r := <-ss.s.reqs:
		return r, nil
	case <-ss.s.ctx.Done():
		return nil, ss.s.err()
	}
}

func (ss *inmemServerStream) Send(r *AppendResponse) error {
	return deliver(ss.s, ss.s.to, ss.s.from, ss.s.resps, r)
}
