package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/api/client"
	"github.com/autonomyops/orchestrator/api/wire"
)

// ingestNode is a fake leader with the cluster's ingest contract: events
// with a known id answer the Seq they were first given (rule 10).
type ingestNode struct {
	srv *httptest.Server

	mu       sync.Mutex
	seqs     map[string]uint64
	log      []string // ids in Seq order: what the cluster holds
	requests []int    // events per request
	loseNext int      // commit, then answer 503 as if the answer was lost
	refuse   bool     // answer 413 too_large, a refusal for good
	answered int      // requests answered 200
}

func newIngestNode(t *testing.T) *ingestNode {
	n := &ingestNode{seqs: map[string]uint64{}}
	n.srv = httptest.NewServer(http.HandlerFunc(n.serve))
	t.Cleanup(n.srv.Close)
	return n
}

func (n *ingestNode) serve(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/v1/health":
		writeJSON(w, 200, wire.Health{Status: "ok", Role: "leader", Node: "n1", WAL: "ok"})
	case "/v1/telemetry/events":
		b, _ := io.ReadAll(r.Body)
		var evs []struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(b, &evs); err != nil {
			writeJSON(w, 400, wire.ErrorResponse{Error: "bad_json", Message: err.Error()})
			return
		}
		n.mu.Lock()
		defer n.mu.Unlock()
		n.requests = append(n.requests, len(evs))
		if n.refuse {
			writeJSON(w, 413, wire.ErrorResponse{Error: "too_large", Message: "the body exceeds 10 bytes"})
			return
		}
		out := wire.IngestResponse{}
		for _, e := range evs {
			s, ok := n.seqs[e.ID]
			if !ok {
				n.log = append(n.log, e.ID)
				s = uint64(len(n.log))
				n.seqs[e.ID] = s
			}
			out.Seqs = append(out.Seqs, s)
		}
		if n.loseNext > 0 {
			n.loseNext--
			writeJSON(w, 503, wire.ErrorResponse{Error: "no_leader", Message: "the answer was lost"})
			return
		}
		n.answered++
		writeJSON(w, 200, out)
	default:
		writeJSON(w, 404, wire.ErrorResponse{Error: "not_found"})
	}
}

func newProducerClient(t *testing.T, n *ingestNode) *client.Client {
	c, err := client.New([]string{n.srv.URL}, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Events go in batches bounded by MaxBatch, each event learns the Seq the
// cluster gave it, and events without an id get one.
func TestProducer_batchesAndReportsEachSeq(t *testing.T) {
	n := newIngestNode(t)
	p := newProducerClient(t, n).NewProducer(client.ProducerOptions{Linger: 50 * time.Millisecond, MaxBatch: 100, MaxInFlight: 2})
	ctx := context.Background()
	var pend []*client.Pending
	for i := 0; i < 1000; i++ {
		ev := fmt.Sprintf(`{"kind":"cpu","n":%d}`, i)
		if i%2 == 0 {
			ev = fmt.Sprintf(`{"id":"own-%d","n":%d}`, i, i)
		}
		pe, err := p.Send(ctx, []byte(ev))
		if err != nil {
			t.Fatal(err)
		}
		pend = append(pend, pe)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for i, pe := range pend {
		seq, err := pe.Wait(ctx)
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if i%2 == 0 && pe.ID != fmt.Sprintf("own-%d", i) {
			t.Fatalf("event %d's own id was replaced by %q", i, pe.ID)
		}
		if pe.ID == "" || seq == 0 || n.log[seq-1] != pe.ID {
			t.Fatalf("event %d (id %q) reported Seq %d, which holds %q", i, pe.ID, seq, n.log[seq-1])
		}
	}
	if len(n.log) != 1000 {
		t.Fatalf("the cluster holds %d events, want 1000", len(n.log))
	}
	for _, k := range n.requests {
		if k > 100 {
			t.Fatalf("a request of %d events exceeds MaxBatch 100", k)
		}
	}
	if len(n.requests) > 20 {
		t.Errorf("%d requests for 1000 events with MaxBatch 100: not batching", len(n.requests))
	}
}

// A batch whose answer was lost is sent again; the ids make the retry
// exactly-once: each event keeps the Seq it was first given, and the cluster
// holds each once.
func TestProducer_retryAfterALostAnswerIsExactlyOnce(t *testing.T) {
	n := newIngestNode(t)
	n.loseNext = 3
	p := newProducerClient(t, n).NewProducer(client.ProducerOptions{MaxBatch: 10, MaxInFlight: 1})
	ctx := context.Background()
	var pend []*client.Pending
	for i := 0; i < 30; i++ {
		pe, err := p.Send(ctx, []byte(`{"kind":"x"}`))
		if err != nil {
			t.Fatal(err)
		}
		pend = append(pend, pe)
	}
	p.Close(ctx)
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.log) != 30 {
		t.Fatalf("the cluster holds %d events after retries, want 30 (each once)", len(n.log))
	}
	for i, pe := range pend {
		seq, err := pe.Wait(ctx)
		if err != nil || n.log[seq-1] != pe.ID {
			t.Fatalf("event %d: Seq %d err %v", i, seq, err)
		}
	}
	if n.loseNext != 0 || n.answered+3 != len(n.requests) {
		t.Errorf("%d requests, %d answered: want every batch answered once after 3 lost answers", len(n.requests), n.answered)
	}
}

// Bad input is refused at Send with what to do, and nothing is sent; a
// batch the cluster refuses for good fails its events with the cluster's
// error, without retrying.
func TestProducer_badInput(t *testing.T) {
	n := newIngestNode(t)
	p := newProducerClient(t, n).NewProducer(client.ProducerOptions{MaxBytes: 64})
	ctx := context.Background()
	for _, ev := range []string{``, `[1]`, `{"a":`, `"x"`} {
		if _, err := p.Send(ctx, []byte(ev)); err == nil || !strings.Contains(err.Error(), "one JSON object") {
			t.Errorf("Send(%q) = %v, want a JSON object error", ev, err)
		}
	}
	if _, err := p.Send(ctx, []byte(`{"pad":"`+strings.Repeat("x", 80)+`"}`)); err == nil || !strings.Contains(err.Error(), "MaxBytes") {
		t.Errorf("an event over MaxBytes: %v", err)
	}
	p.Close(ctx)
	if _, err := p.Send(ctx, []byte(`{}`)); err != client.ErrProducerClosed {
		t.Errorf("Send after Close: %v", err)
	}
	n.mu.Lock()
	if len(n.requests) != 0 {
		t.Errorf("%d requests for refused input", len(n.requests))
	}
	n.refuse = true
	n.mu.Unlock()
	p = newProducerClient(t, n).NewProducer(client.ProducerOptions{})
	pe, err := p.Send(ctx, []byte(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	p.Close(ctx)
	if _, err := pe.Wait(ctx); err == nil || !strings.Contains(err.Error(), "too_large") {
		t.Errorf("a batch refused with 413: %v, want the cluster's too_large", err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.requests) != 1 {
		t.Errorf("a refusal for good was sent %d times, want once", len(n.requests))
	}
}
