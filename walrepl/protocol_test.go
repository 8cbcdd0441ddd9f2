package walrepl

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// promiseHandler answers every promise and counts the requests it was
// handed: a refused version must never reach the protocol.
type promiseHandler struct {
	mu      sync.Mutex
	handled int
}

func (h *promiseHandler) HandlePromise(_ context.Context, req *PromiseRequest) *PromiseResponse {
	h.mu.Lock()
	h.handled++
	h.mu.Unlock()
	return &PromiseResponse{OK: true, Node: "b", Promised: req.Epoch}
}

func (h *promiseHandler) HandleFetch(context.Context, *FetchRequest) *FetchResponse {
	h.mu.Lock()
	h.handled++
	h.mu.Unlock()
	return &FetchResponse{OK: true}
}

func (h *promiseHandler) HandleStream(context.Context, ServerStream) error { return nil }

func (h *promiseHandler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.handled
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serveProto starts a replication listener speaking this build's protocol.
func serveProto(t *testing.T) (addr string, tr *TCPTransport, h *promiseHandler, logs *syncBuffer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr, h, logs = NewTCPTransport(nil), &promiseHandler{}, &syncBuffer{}
	log := logrus.New()
	log.SetOutput(logs)
	log.SetFormatter(&logrus.JSONFormatter{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tr.Serve(ctx, ln, h, log); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String(), tr, h, logs
}

// rawPromise sends a promise request of any version, as another build would,
// and returns the answer.
func rawPromise(t *testing.T, addr string, proto uint32) *PromiseResponse {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte{connPromise})
	if err := gob.NewEncoder(c).Encode(&PromiseRequest{Epoch: 7, Leader: "a", Proto: proto}); err != nil {
		t.Fatal(err)
	}
	var resp PromiseResponse
	if err := gob.NewDecoder(c).Decode(&resp); err != nil {
		t.Fatalf("no answer to a version %d request: %v", proto, err)
	}
	return &resp
}

// A node refuses a peer that speaks a version it does not, says so in one
// exact log line, and never hands the request to the protocol; a request
// without a version is v0.2.0's, version 1, and is served.
func TestProtocol_refusesAVersionItDoesNotSpeak(t *testing.T) {
	addr, tr, h, logs := serveProto(t)

	resp := rawPromise(t, addr, Protocol+1)
	if resp.Refused == "" || resp.OK || resp.Proto != Protocol {
		t.Fatalf("version %d answered %+v; want a refusal naming this node's version %d", Protocol+1, resp, Protocol)
	}
	if !strings.Contains(resp.Refused, "docs/operations.md") {
		t.Errorf("the refusal does not say what to do: %q", resp.Refused)
	}
	if h.count() != 0 {
		t.Fatalf("a request of an unsupported version reached the protocol")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), `"msg":"REPL_PROTOCOL_UNSUPPORTED: a peer speaks a replication protocol version this node does not; it is refused"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no REPL_PROTOCOL_UNSUPPORTED line:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), `"level":"error"`) || tr.LastRefusal().At.IsZero() {
		t.Errorf("the refusal is not an error line, or not remembered for /v1/health: %+v\n%s", tr.LastRefusal(), logs.String())
	}

	for _, v := range []uint32{0, Protocol} { // 0: v0.2.0 sent no version
		if resp := rawPromise(t, addr, v); resp.Refused != "" || !resp.OK || resp.Proto != Protocol {
			t.Errorf("version %d answered %+v; want served", v, resp)
		}
	}
	if h.count() != 2 {
		t.Errorf("%d requests reached the protocol, want 2", h.count())
	}
}

// A peer that answers in a version this node does not speak is as good as
// unreachable, with the reason, and is remembered for /v1/health.
func TestProtocol_callerRefusesAnAnswerOfAnotherVersion(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var kind [1]byte
		c.Read(kind[:])
		var req PromiseRequest
		dec := gob.NewDecoder(c)
		dec.Decode(&req)
		if req.Proto != Protocol {
			return // the caller must say which version it speaks
		}
		gob.NewEncoder(c).Encode(&PromiseResponse{Proto: Protocol + 1, OK: true, Promised: req.Epoch})
	}()
	tr := NewTCPTransport(nil)
	_, err = tr.Promise(context.Background(), ln.Addr().String(), &PromiseRequest{Epoch: 3, Leader: "a"})
	if !errors.Is(err, ErrProtocolUnsupported) || !errors.Is(err, ErrUnreachable) {
		t.Fatalf("an answer of version %d: err = %v; want ErrProtocolUnsupported (and unreachable)", Protocol+1, err)
	}
	if r := tr.LastRefusal(); r.Version != Protocol+1 || r.At.IsZero() {
		t.Errorf("LastRefusal = %+v", r)
	}
}
