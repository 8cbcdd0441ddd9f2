package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/autonomyops/orchestrator/api/wire"
)

// A Stream is an open POST /v1/telemetry/stream on the leader
// (docs/api.md): batches go out as lines of one long-lived request, and each
// line's acknowledgement comes back, in line order, while more are sent.
//
//	s, err := c.OpenStream(ctx, client.StreamOptions{Window: 100})
//	go func() {
//		for a := range s.Acks() { // line 1, 2, 3, ...
//			// a.Err == nil: every event of line a.Line is committed, at a.Seqs
//		}
//	}()
//	line, err := s.Send(ctx, []byte(`[{"id":"e1","kind":"cpu"},{"id":"e2","kind":"cpu"}]`))
//	...
//	s.CloseSend() // no more lines; the acks of those in flight still come
//	// ... once Acks is closed:
//	s.Close()
//
// Send returns at once while fewer than Window lines are unanswered, and
// blocks otherwise (flow control). Read Acks until it is closed: a reader
// that stops holds the stream back. An ack's Err says why its line was not
// acknowledged: a *LineError, or ErrStreamEnded when the stream ended before
// the line was answered. Send the events of such a line again, on a new
// stream, with the same ids: an event that did commit answers its first Seq
// (DESIGN §6 rule 10). A line refused with bad_json or too_large fails
// again; any other code ended the stream.
//
// Send, CloseSend and Close are safe for concurrent use.
type Stream struct {
	// URL is the URL that answered (after redirects).
	URL string

	resp      *http.Response
	pw        *io.PipeWriter // the request body
	cancel    context.CancelFunc
	slots     chan struct{} // one per line sent and not yet answered
	acks      chan StreamAck
	wake      chan struct{} // a token when out grows or sending ends
	closing   chan struct{} // closed by Close
	closeOnce sync.Once
	wg        sync.WaitGroup // write and read

	mu     sync.Mutex
	out    []byte // lines sent, not yet handed to the connection
	sent   int    // lines sent
	noMore bool   // CloseSend was called
	ended  bool   // the answer has ended: Send refuses
	err    error  // why it ended, once ended
}

// StreamOptions tune OpenStream.
type StreamOptions struct {
	// Window is how many lines may be unanswered at once: Send blocks beyond
	// it, and the leader reads that many ahead (default 64, at most
	// wire.StreamWindowMax).
	Window int
}

// StreamAck is the answer to one line.
type StreamAck struct {
	Line    int      // as Send returned it
	Seqs    []uint64 // each event's Seq, in the line's order
	SafeSeq uint64
	Err     error // nil: committed (fsynced by a majority); else see Stream
}

// LineError is a line the leader refused or could not commit: the code and
// message POST /v1/telemetry/events gives for the same cause.
type LineError struct {
	Line    int
	Code    string
	Message string
}

func (e *LineError) Error() string {
	return fmt.Sprintf("api: stream line %d: %s: %s", e.Line, e.Code, e.Message)
}

// Errors of a Stream.
var (
	// ErrStreamEnded: the stream ended before the line was answered; it
	// may or may not have committed. Send it again with the same ids.
	ErrStreamEnded = errors.New("api: the ingest stream ended")
	// ErrStreamClosed: Send after CloseSend or Close.
	ErrStreamClosed = errors.New("api: the ingest stream is closed for sending")
)

// maxAnswerLine bounds one answer line: the Seqs of a line of the largest
// batch (ingest/max_batch) with their envelope.
const maxAnswerLine = 8 << 20

// OpenStream opens POST /v1/telemetry/stream on the leader (a follower's 307
// is followed). ctx bounds the stream's whole life; its headers must arrive
// within the client's timeout. Close it.
func (c *Client) OpenStream(ctx context.Context, o StreamOptions) (*Stream, error) {
	window := o.Window
	if window <= 0 {
		window = wire.StreamWindowDefault
	}
	if window > wire.StreamWindowMax {
		return nil, fmt.Errorf("api: a stream's window of %d lines exceeds %d", window, wire.StreamWindowMax)
	}
	r := Request{Method: http.MethodPost, Path: "/v1/telemetry/stream", Route: LeaderOnly,
		Query:  url.Values{"window": {strconv.Itoa(window)}},
		Header: http.Header{"Content-Type": {wire.ContentTypeNDJSON}, "Accept": {wire.ContentTypeNDJSON}}}
	var s *Stream
	_, err := c.route(ctx, r, func(ep string) (*Reply, error) {
		// One body per attempt: an attempt that was answered (a redirect, an
		// error) has its body closed, which ends the request's connection.
		// A body also closes with the attempt's context (the header timeout,
		// Close): net/http waits for a request's body to end before it
		// reports an error of the attempt, and a pipe ends only when closed.
		var pw *io.PipeWriter
		newBody := func(ctx context.Context) io.Reader {
			if pw != nil {
				pw.CloseWithError(ErrStreamClosed)
			}
			pr, w := io.Pipe()
			context.AfterFunc(ctx, func() { w.CloseWithError(ErrStreamClosed) })
			pw = w
			return pr
		}
		resp, rep, cancel, err := c.openStream(ctx, ep, r, newBody)
		if err != nil {
			if pw != nil {
				pw.CloseWithError(ErrStreamClosed)
			}
			return rep, err
		}
		if mt, _, perr := mime.ParseMediaType(resp.Header.Get("Content-Type")); perr != nil || mt != wire.ContentTypeNDJSON {
			pw.CloseWithError(ErrStreamClosed)
			drain(resp)
			cancel()
			return rep, fmt.Errorf("api: POST %s answered Content-Type %q, not %s", rep.URL, resp.Header.Get("Content-Type"), wire.ContentTypeNDJSON)
		}
		s = &Stream{URL: rep.URL, resp: resp, pw: pw, cancel: cancel, slots: make(chan struct{}, window),
			acks: make(chan StreamAck, window), wake: make(chan struct{}, 1), closing: make(chan struct{})}
		return rep, nil
	})
	if err != nil {
		return nil, err
	}
	s.wg.Add(2)
	go s.write()
	go s.read()
	return s, nil
}

// Send queues one line: a batch of events, as the body of POST
// /v1/telemetry/events (one event object, or a JSON array of them). It
// returns the line's number, which its ack carries. It blocks while Window
// lines are unanswered, until ctx ends. batch is copied.
func (s *Stream) Send(ctx context.Context, batch []byte) (int, error) {
	batch = bytes.TrimSpace(batch)
	if len(batch) == 0 {
		return 0, errors.New("api: an empty batch is not a line")
	}
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-s.closing:
		return 0, ErrStreamClosed
	}
	s.mu.Lock()
	if s.noMore || s.ended {
		err := s.err
		s.mu.Unlock()
		<-s.slots
		if err == nil {
			err = ErrStreamClosed
		}
		return 0, err
	}
	s.sent++
	n := len(s.out)
	s.out = append(s.out, batch...)
	// In valid JSON a newline can only be whitespace between tokens:
	// a space keeps the batch on its line and means the same.
	for i := bytes.IndexByte(s.out[n:], '\n'); i >= 0; i = bytes.IndexByte(s.out[n:], '\n') {
		s.out[n+i] = ' '
	}
	s.out = append(s.out, '\n')
	line := s.sent
	s.mu.Unlock()
	s.signal()
	return line, nil
}

// Acks delivers the answer of every line sent, in line order. It is closed
// once the stream has ended and every line was answered (by the leader, or
// with ErrStreamEnded).
func (s *Stream) Acks() <-chan StreamAck { return s.acks }

// CloseSend says that no more lines come: the leader answers those in
// flight, then ends the stream. It is idempotent.
func (s *Stream) CloseSend() {
	s.mu.Lock()
	s.noMore = true
	s.mu.Unlock()
	s.signal()
}

// Err is why the stream ended, once Acks is closed: nil when it ended after
// CloseSend with every line answered by the leader.
func (s *Stream) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close ends the stream at once; acks not yet delivered are dropped. It
// waits for the stream's goroutines and is idempotent.
func (s *Stream) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.pw.CloseWithError(ErrStreamClosed)
		s.cancel()
	})
	s.wg.Wait()
	return s.resp.Body.Close()
}

func (s *Stream) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// write hands what Send queued to the connection, all of it at once: lines
// queued while a write is under way go out together in the next one.
func (s *Stream) write() {
	defer s.wg.Done()
	var buf []byte
	for {
		select {
		case <-s.wake:
		case <-s.closing:
			return
		}
		s.mu.Lock()
		buf, s.out = s.out, buf[:0]
		last, ended := s.noMore, s.ended
		s.mu.Unlock()
		if ended {
			return
		}
		if len(buf) > 0 {
			if _, err := s.pw.Write(buf); err != nil {
				return // the request is gone: read reports how the stream ended
			}
		}
		if last {
			s.pw.Close()
			return
		}
	}
}

// read delivers the answers in order and, once the answer ends, an
// ErrStreamEnded ack for every line left unanswered.
func (s *Stream) read() {
	defer s.wg.Done()
	defer close(s.acks)
	rd := bufio.NewReaderSize(s.resp.Body, 64<<10)
	next := 1
	var (
		cause error
		last  *LineError // the last line refused
	)
	for cause == nil {
		line, err := readAnswerLine(rd)
		if err != nil {
			cause = err
			break
		}
		var a wire.StreamAnswer
		if err := json.Unmarshal(line, &a); err != nil {
			cause = fmt.Errorf("api: an answer line from %s is not JSON: %w", s.URL, err)
			break
		}
		if a.Line != next {
			cause = fmt.Errorf("api: %s answered line %d where line %d was due", s.URL, a.Line, next)
			break
		}
		ack := StreamAck{Line: a.Line, Seqs: a.Seqs, SafeSeq: a.SafeSeq}
		if a.Error != nil {
			last = &LineError{Line: a.Line, Code: a.Error.Code, Message: a.Error.Message}
			ack.Err = last
		}
		s.deliver(ack)
		next++
	}
	s.mu.Lock()
	s.ended = true
	sent, noMore := s.sent, s.noMore
	switch {
	case errors.Is(cause, io.EOF) && noMore && next > sent:
		// The clean end: every line answered after CloseSend.
	case errors.Is(cause, io.EOF) && last != nil:
		s.err = fmt.Errorf("%w: %s ended it after line %d (the last line refused: %d, %s)", ErrStreamEnded, s.URL, next-1, last.Line, last.Code)
	case errors.Is(cause, io.EOF):
		s.err = fmt.Errorf("%w: %s ended it after line %d", ErrStreamEnded, s.URL, next-1)
	default:
		s.err = fmt.Errorf("%w: %w", ErrStreamEnded, cause)
	}
	err := s.err
	s.mu.Unlock()
	s.pw.CloseWithError(ErrStreamEnded)
	s.signal()
	for n := next; n <= sent; n++ {
		s.deliver(StreamAck{Line: n, Err: err})
	}
}

// deliver hands one ack over and frees its line's slot.
func (s *Stream) deliver(a StreamAck) {
	select {
	case s.acks <- a:
	case <-s.closing:
	}
	<-s.slots
}

// readAnswerLine reads one answer line, bounded by maxAnswerLine. A line cut
// by the end of the answer is io.ErrUnexpectedEOF.
func readAnswerLine(rd *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		frag, err := rd.ReadSlice('\n')
		switch {
		case err == nil:
			if line == nil {
				return frag, nil // valid until the next read: the caller is done with it by then
			}
			return append(line, frag...), nil
		case errors.Is(err, bufio.ErrBufferFull):
			line = append(line, frag...)
			if len(line) > maxAnswerLine {
				return nil, fmt.Errorf("api: an answer line exceeds %d bytes", maxAnswerLine)
			}
		case errors.Is(err, io.EOF):
			if len(bytes.TrimSpace(append(line, frag...))) > 0 {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, io.EOF
		default:
			return nil, err
		}
	}
}
