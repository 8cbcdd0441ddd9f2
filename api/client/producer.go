package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
)

// A Producer sends events to the cluster in batches, as an agent that emits
// many small events should: Send queues one event and returns at once; the
// producer sends a batch when MaxBatch events or MaxBytes are queued, or
// when the oldest queued event has waited Linger, with up to MaxInFlight
// batches outstanding. Each event carries an id (the producer adds one when
// the event has none), so a batch whose answer was lost is sent again and
// the cluster answers the Seqs it first gave (DESIGN §6 rule 10): every
// event is written once, whatever the retries.
//
// Batches may complete out of order when MaxInFlight > 1; an event's Seq is
// what orders it in the cluster.
type Producer struct {
	c   *Client
	o   ProducerOptions
	in  chan *Pending
	sem chan struct{} // one token per outstanding batch

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup // the loop and every batch in flight
	loopWG sync.WaitGroup
}

// ProducerOptions tune a Producer; zero fields take the defaults.
type ProducerOptions struct {
	Linger      time.Duration // how long an event waits for others to share its request (default 2 ms)
	MaxBatch    int           // events per request (default 500; the cluster's ingest/max_batch bounds it)
	MaxBytes    int           // bytes of events per request (default 512 KiB; ingest/max_body_bytes bounds it)
	MaxInFlight int           // requests outstanding at once (default 4)
	// RetryFor bounds how long one batch is sent again after errors that
	// may pass (no leader, unreachable, 503, 429, 5xx). Default 30 s.
	RetryFor time.Duration
	// NewID names an event that has no "id" (default: 16 random bytes in hex).
	NewID func() string
}

func (o *ProducerOptions) defaults() {
	if o.Linger <= 0 {
		o.Linger = 2 * time.Millisecond
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 500
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 512 << 10
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 4
	}
	if o.RetryFor <= 0 {
		o.RetryFor = 30 * time.Second
	}
	if o.NewID == nil {
		o.NewID = randomID
	}
}

// Pending is one sent event until the cluster acknowledges it.
type Pending struct {
	ID    string // the event's id (its own, or the one the producer gave it)
	event []byte
	done  chan struct{}
	seq   uint64
	err   error
}

// Done is closed once the event is acknowledged or has failed.
func (p *Pending) Done() <-chan struct{} { return p.done }

// Wait returns the event's Seq once the cluster has committed it (fsynced by
// a majority), or why it failed.
func (p *Pending) Wait(ctx context.Context) (uint64, error) {
	select {
	case <-p.done:
		return p.seq, p.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// ErrProducerClosed: Send after Close.
var ErrProducerClosed = errors.New("api: the producer is closed; create a new one to send more events")

// NewProducer returns a producer that sends through c. Close it to send
// what is queued and stop.
func (c *Client) NewProducer(o ProducerOptions) *Producer {
	o.defaults()
	p := &Producer{c: c, o: o, in: make(chan *Pending, o.MaxBatch), sem: make(chan struct{}, o.MaxInFlight)}
	p.loopWG.Add(1)
	go p.loop()
	return p
}

// Send queues one event (a JSON object) and returns its Pending. It blocks
// only while MaxInFlight batches are outstanding and a full batch waits
// (back-pressure), or until ctx ends.
func (p *Producer) Send(ctx context.Context, event []byte) (*Pending, error) {
	ev, id, err := withID(event, p.o.NewID)
	if err != nil {
		return nil, err
	}
	if len(ev)+2 > p.o.MaxBytes {
		return nil, fmt.Errorf("api: an event of %d bytes exceeds the producer's MaxBytes %d; raise MaxBytes (and the cluster's ingest/max_body_bytes) or send smaller events", len(ev), p.o.MaxBytes)
	}
	pe := &Pending{ID: id, event: ev, done: make(chan struct{})}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrProducerClosed
	}
	select {
	case p.in <- pe:
		return pe, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close sends what is queued, waits for every batch to be answered (or ctx
// to end), and stops the producer.
func (p *Producer) Close(ctx context.Context) error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.in)
	}
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { p.loopWG.Wait(); p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// loop gathers events into batches and hands each to a sender.
func (p *Producer) loop() {
	defer p.loopWG.Done()
	var (
		batch []*Pending
		size  int
		timer *time.Timer
		fire  <-chan time.Time
	)
	flush := func() {
		if timer != nil {
			timer.Stop()
			timer, fire = nil, nil
		}
		if len(batch) == 0 {
			return
		}
		p.sem <- struct{}{}
		p.wg.Add(1)
		go p.send(batch)
		batch, size = nil, 0
	}
	for {
		select {
		case pe, ok := <-p.in:
			if !ok {
				flush()
				return
			}
			if size+len(pe.event)+1 > p.o.MaxBytes {
				flush()
			}
			batch = append(batch, pe)
			size += len(pe.event) + 1
			if len(batch) >= p.o.MaxBatch {
				flush()
			} else if timer == nil {
				timer = time.NewTimer(p.o.Linger)
				fire = timer.C
			}
		case <-fire:
			timer, fire = nil, nil
			flush()
		}
	}
}

// send posts one batch until it is answered, or fails for good, and settles
// every event of it.
func (p *Producer) send(batch []*Pending) {
	defer func() { <-p.sem; p.wg.Done() }()
	var body bytes.Buffer
	body.WriteByte('[')
	for i, pe := range batch {
		if i > 0 {
			body.WriteByte(',')
		}
		body.Write(pe.event)
	}
	body.WriteByte(']')
	deadline := time.Now().Add(p.o.RetryFor)
	backoff := 20 * time.Millisecond
	for {
		var out wire.IngestResponse
		_, err := p.c.Do(context.Background(), Request{Method: http.MethodPost, Path: "/v1/telemetry/events",
			Route: LeaderOnly, Body: json.RawMessage(body.Bytes())}, &out)
		if err == nil && len(out.Seqs) != len(batch) {
			err = fmt.Errorf("api: the cluster answered %d Seqs for a batch of %d events", len(out.Seqs), len(batch))
		}
		if err == nil {
			for i, pe := range batch {
				pe.seq = out.Seqs[i]
				close(pe.done)
			}
			return
		}
		if !mayRetry(err) || time.Now().Add(backoff).After(deadline) {
			for _, pe := range batch {
				pe.err = err
				close(pe.done)
			}
			return
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, time.Second)
	}
}

// mayRetry: errors after which the same batch may pass. Retrying is safe
// for every error, since each event carries its id; these are the ones
// where it may help.
func mayRetry(err error) bool {
	var he *HTTPError
	if errors.As(err, &he) {
		switch he.Status {
		case http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusBadGateway,
			http.StatusGatewayTimeout, http.StatusInternalServerError:
			return true
		}
		return false
	}
	return true // transport errors, unreachable nodes, no leader
}

// withID returns the event (a JSON object) with an "id", adding one when it
// has none, and the id as the cluster keys it.
func withID(event []byte, newID func() string) ([]byte, string, error) {
	ev := bytes.TrimSpace(event)
	if len(ev) == 0 || ev[0] != '{' || !json.Valid(ev) {
		return nil, "", errors.New("api: an event must be one JSON object, e.g. {\"kind\":\"cpu\",\"value\":0.5}")
	}
	var e struct {
		ID json.RawMessage `json:"id"`
	}
	json.Unmarshal(ev, &e)
	if len(e.ID) > 0 && string(e.ID) != "null" {
		var s string
		if json.Unmarshal(e.ID, &s) == nil {
			return ev, s, nil
		}
		return ev, string(e.ID), nil
	}
	id := newID()
	quoted, _ := json.Marshal(id)
	out := make([]byte, 0, len(ev)+len(quoted)+8)
	out = append(out, `{"id":`...)
	out = append(out, quoted...)
	rest := bytes.TrimSpace(ev[1:])
	if rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, rest...), id, nil
}

func randomID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
