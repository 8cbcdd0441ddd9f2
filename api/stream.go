package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/gin-gonic/gin"
	"github.com/sirupsen/logrus"
)

// POST /v1/telemetry/stream: ingest on one long-lived, full-duplex HTTP/1.1
// connection (docs/api.md).
//
// The request body is NDJSON: each line is one batch, as the body of POST
// /v1/telemetry/events (one event object or a JSON array of them), with the
// same limits per line (ingest/max_batch, ingest/max_body_bytes) and the same
// Ingester.Ingest, so ids make retries exactly-once (DESIGN §6 rule 10). The
// answer is 200 NDJSON, one line per request line.
//
// Invariants:
//
//   - A line is acknowledged only once Ingest returned its Seqs: committed,
//     fsynced by a majority (rule 1). The stream adds no path to the WAL.
//   - Answers come in line order, each written as soon as its line and every
//     line before it are answered, and flushed before the handler waits.
//   - Lines are submitted without waiting for the commits of the lines
//     before them. Lines that arrived together go to Ingest in one call,
//     never larger than one POST may be; a call that fails fails each of its
//     lines as it would have failed alone.
//   - At most window lines, and about streamMaxBytes of them, are in flight:
//     while they are, the handler reads nothing more of the body, so a client
//     that sends faster than the cluster commits is held back by TCP.
//   - A line the client got wrong (a 4xx code: bad_json, too_large) is
//     refused alone and the stream goes on. Any other error (not_leader,
//     no_quorum, commit_timeout, ...) ends the stream: that line and every
//     later line in flight are answered (an ack if it had committed, else
//     the same error), then the answer ends. The client sends the lines
//     without an ack again, with the same ids.
//   - Every goroutine the handler starts has ended when it returns.

// streamMaxBytes bounds the bytes of the lines one stream holds in flight,
// whatever its window; one line of ingest/max_body_bytes always fits.
const streamMaxBytes = 16 << 20

// errStreamStopped answers a line read after the stream began to end.
var errStreamStopped = errors.New("api: the stream is ending")

// streamLine is one request line from when it is read until it is answered.
type streamLine struct {
	n      int       // 1-based; blank lines are not counted
	start  time.Time // when it was read
	size   int       // its bytes, held until it is answered
	events int

	payloads [][]byte // its events, and their ids, once parsed
	ids      []string

	done chan struct{} // closed once the fields below are set
	// refused: the line was not submitted (bad_json, too_large); code and
	// msg are the answer.
	code, msg string
	seqs      []uint64
	safe      uint64
	err       error // Ingest's
}

// ingestStream is one stream's state shared by its reader and its writer
// (the handler's goroutine).
type ingestStream struct {
	s      *Server
	ctx    context.Context // the request's; cancelled when the stream ends early
	credit *streamCredit
	queue  chan *streamLine // lines in order, read and not yet answered
	stop   chan struct{}    // closed when the writer ends the stream early
	wg     sync.WaitGroup   // the reader and every Ingest in flight
}

func (s *Server) ingestStream(c *gin.Context) {
	window := wire.StreamWindowDefault
	if v := c.Query("window"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > wire.StreamWindowMax {
			writeError(c, http.StatusBadRequest, "bad_query", fmt.Sprintf("window=%q must be an integer from 1 to %d", v, wire.StreamWindowMax))
			return
		}
		window = n
	}
	rc := http.NewResponseController(c.Writer)
	c.Header("Content-Type", wire.ContentTypeNDJSON)
	c.Header("Cache-Control", "no-cache")
	c.Status(http.StatusOK)
	c.Writer.WriteHeaderNow()
	c.Writer.Flush() // the client starts sending once it has the headers

	ctx, cancel := context.WithCancel(c.Request.Context())
	defer cancel()
	st := &ingestStream{s: s, ctx: ctx, credit: newStreamCredit(window, streamMaxBytes),
		queue: make(chan *streamLine, window), stop: make(chan struct{})}
	st.wg.Add(1)
	go st.read(c.Request.Body)

	bw := bufio.NewWriterSize(c.Writer, 32<<10)
	var (
		buf     []byte
		fatal   *wire.StreamError // the error that ends the stream
		broken  bool              // the client cannot be written to
		stopped bool
	)
	stopReading := func() {
		if stopped {
			return
		}
		stopped = true
		close(st.stop)
		cancel() // Ingest calls still in flight return
		// A read blocked on the client returns now, and the server does not
		// wait for the rest of the body once the handler returns.
		rc.SetReadDeadline(time.Now())
	}
	// flush sends everything answered so far; the writer calls it before
	// it waits, for the next line or for its commit.
	flush := func() {
		if !broken && (bw.Flush() != nil || rc.Flush() != nil) {
			broken = true
			stopReading()
		}
	}
	for {
		var l *streamLine
		select {
		case l = <-st.queue:
		default:
			flush()
			l = <-st.queue
		}
		if l == nil {
			break // the reader is done
		}
		select {
		case <-l.done:
		default:
			flush()
			<-l.done // Ingest returns: it has a timeout, and ctx
		}
		outcome := "ok"
		switch {
		case l.code != "":
			outcome = l.code
			buf = appendStreamError(buf[:0], l.n, l.code, l.msg)
		case l.err == nil:
			buf = appendStreamAck(buf[:0], l.n, l.seqs, l.safe)
		default:
			_, code, msg := errStatus(l.err)
			if fatal == nil && !lineFault(l.err) {
				fatal = &wire.StreamError{Code: code, Message: msg}
				stopReading()
			}
			if fatal != nil && !lineFault(l.err) {
				code, msg = fatal.Code, fatal.Message // a line cancelled behind the failed one
			}
			outcome = code
			buf = appendStreamError(buf[:0], l.n, code, msg)
		}
		s.cfg.Instruments.ingestDone(l.start, l.events, outcome)
		if !broken {
			if _, err := bw.Write(buf); err != nil {
				broken = true
				stopReading()
			}
		}
		st.credit.release(l.size)
	}
	flush()
	st.wg.Wait()
}

// fullDuplex lets a streaming route read its request while it answers
// (HTTP/1.1; HTTP/2 always may). It runs before auth and the redirect, so
// that their answers go out at once: otherwise net/http first reads what is
// left of the body, which a streaming client sends only once it has the
// answer's headers.
//
// The connection closes after the answer. A stream is long-lived, so little
// is lost, and it avoids a flaw of net/http (go1.26) in full-duplex mode: when
// the handler returns before the end of the body (a refusal) and the client
// then ends its body, the server's read of the rest after the handler
// starts a background read that collides with the read of the next request
// ("http: panic serving ...: invalid concurrent Body.Read call", recovered
// by net/http; TestStream_authRedirectAndQuery).
func fullDuplex(c *gin.Context) {
	c.Header("Connection", "close")
	if err := http.NewResponseController(c.Writer).EnableFullDuplex(); err != nil {
		writeError(c, http.StatusInternalServerError, "internal", "this connection cannot read the request while it answers: "+err.Error())
	}
}

// read reads the body line by line while the window has room and submits
// the lines to Ingest without waiting for their commits, so that the commits
// of lines in flight overlap (the WAL's group commit). Lines that arrived
// together (already in the read buffer) go to Ingest as one call, up to what
// one POST may hold (ingest/max_batch events, ingest/max_body_bytes): a call
// per line costs the leader more than the line's events do. It closes the
// queue when the body ends or the stream stops.
func (st *ingestStream) read(body io.Reader) {
	defer st.wg.Done()
	defer close(st.queue)
	br := bufio.NewReaderSize(body, 64<<10)
	var g lineGroup
	defer st.submit(&g)
	n := 0
	for {
		// Nothing that may block (a read without a whole line buffered, a
		// full window) while lines wait unsubmitted.
		if len(g.lines) > 0 && (!st.credit.room() || !lineBuffered(br)) {
			st.submit(&g)
		}
		if !st.credit.wait(st.stop) {
			return
		}
		lim := st.s.cfg.Settings.Values()
		line, tooLong, err := readStreamLine(br, lim.MaxBodyBytes)
		if err != nil && !errors.Is(err, io.EOF) {
			return // the connection broke, or the stream is stopping: a partial line is not a line
		}
		if t := bytes.TrimSpace(line); len(t) > 0 || tooLong {
			n++
			l := &streamLine{n: n, start: time.Now(), size: len(line), done: make(chan struct{})}
			st.credit.take(l.size)
			if l.parse(t, tooLong, lim.MaxBodyBytes, lim.MaxBatch) {
				if g.events+l.events > lim.MaxBatch || int64(g.bytes+l.size) > lim.MaxBodyBytes {
					st.submit(&g)
				}
				g.add(l)
			}
			st.queue <- l
		}
		if err != nil {
			return // io.EOF: the client is done
		}
	}
}

// lineBuffered reports whether a whole line is in br's buffer: reading it
// will not wait for the client.
func lineBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.IndexByte(b, '\n') >= 0
}

// parse reads line l's events from t, its trimmed bytes, or refuses the line
// (too_large, bad_json; l is then answered). It reports whether l is to be
// ingested.
func (l *streamLine) parse(t []byte, tooLong bool, maxBytes int64, maxBatch int) bool {
	if tooLong {
		l.code, l.msg = "too_large", fmt.Sprintf("the line exceeds %d bytes; send smaller batches (setting ingest/max_body_bytes)", maxBytes)
		close(l.done)
		return false
	}
	events, ids, err := ParseEvents(t, maxBatch)
	if err != nil {
		l.code, l.msg = "bad_json", err.Error()+"; nothing was written"
		close(l.done)
		return false
	}
	l.payloads, l.ids, l.events = events, ids, len(events)
	return true
}

// lineFault reports whether err is the fault of the events sent (a 4xx
// code): it ends no stream, and only the line that holds them is refused.
func lineFault(err error) bool {
	status, _, _ := errStatus(err)
	return status < 500
}

// lineGroup is lines that go to Ingest in one call.
type lineGroup struct {
	lines         []*streamLine
	payloads      [][]byte
	ids           []string
	events, bytes int
}

func (g *lineGroup) add(l *streamLine) {
	g.lines = append(g.lines, l)
	g.payloads = append(g.payloads, l.payloads...)
	g.ids = append(g.ids, l.ids...)
	g.events += l.events
	g.bytes += l.size
}

// submit starts the Ingest of g's lines, one call for all of them, and
// empties g. Once the stream is stopping, it answers them unsubmitted.
func (st *ingestStream) submit(g *lineGroup) {
	if len(g.lines) == 0 {
		return
	}
	lines, payloads, ids := g.lines, g.payloads, g.ids
	*g = lineGroup{}
	select {
	case <-st.stop:
		for _, l := range lines {
			l.err = errStreamStopped
			close(l.done)
		}
		return
	default:
	}
	st.wg.Add(1)
	go func() {
		defer st.wg.Done()
		answered := 0
		defer func() {
			// As gin.Recovery does for a request: a bug below answers 500
			// (internal, which ends the stream), not a dead node.
			if p := recover(); p != nil {
				st.s.log.WithFields(logrus.Fields{"panic": fmt.Sprint(p), "stack": string(debug.Stack())}).Error("INGEST_STREAM_PANIC")
				for _, l := range lines[answered:] {
					l.seqs, l.err = nil, fmt.Errorf("api: Ingest panicked: %v", p)
					close(l.done)
				}
			}
		}()
		ctx, cancel := context.WithTimeout(st.ctx, st.s.cfg.IngestTimeout)
		defer cancel()
		seqs, safe, err := st.s.b.Ingest.Ingest(ctx, payloads, ids)
		if err == nil && len(seqs) != len(payloads) {
			err = fmt.Errorf("api: Ingest answered %d Seqs for %d events", len(seqs), len(payloads))
		}
		if err != nil && len(lines) > 1 && lineFault(err) {
			// One line's events were refused (too large for a frame, ...),
			// and nothing was written: find which, so that the others commit.
			for _, l := range lines {
				l.seqs, l.safe, l.err = st.s.b.Ingest.Ingest(ctx, l.payloads, l.ids)
				close(l.done)
				answered++
			}
			return
		}
		off := 0
		for _, l := range lines {
			if err != nil {
				l.err = err
			} else {
				l.seqs, l.safe = seqs[off:off+l.events:off+l.events], safe
			}
			off += l.events
			close(l.done)
			answered++
		}
	}()
}

// readStreamLine reads one line of at most limit bytes (its newline not
// counted). A longer line is read to its end and dropped (tooLong), so the
// stream can go on after it. err is the reader's (io.EOF at the end).
func readStreamLine(br *bufio.Reader, limit int64) (line []byte, tooLong bool, err error) {
	for {
		frag, err := br.ReadSlice('\n')
		if !tooLong {
			if int64(len(line)+len(frag)) > limit+1 {
				tooLong, line = true, nil
			} else {
				line = append(line, frag...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if n := len(line); n > 0 && line[n-1] == '\n' {
			line = line[:n-1]
		}
		if int64(len(line)) > limit {
			tooLong, line = true, nil
		}
		return line, tooLong, err
	}
}

// appendStreamAck appends {"line":N,"seqs":[...],"safe_seq":S} and a
// newline, encoded by hand as writeIngestOK does.
func appendStreamAck(b []byte, n int, seqs []uint64, safe uint64) []byte {
	b = append(b, `{"line":`...)
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, `,"seqs":[`...)
	for i, seq := range seqs {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, seq, 10)
	}
	b = append(b, `],"safe_seq":`...)
	b = strconv.AppendUint(b, safe, 10)
	return append(b, "}\n"...)
}

// appendStreamError appends {"line":N,"error":{"code":...,"message":...}}
// and a newline.
func appendStreamError(b []byte, n int, code, msg string) []byte {
	j, _ := json.Marshal(wire.StreamAnswer{Line: n, Error: &wire.StreamError{Code: code, Message: msg}})
	b = append(b, j...)
	return append(b, '\n')
}

// streamCredit bounds what one stream holds in flight: lines, and their
// bytes. The reader waits for credit before it reads a line; the writer
// gives it back once the line is answered.
type streamCredit struct {
	mu                 sync.Mutex
	lines, bytes       int
	maxLines, maxBytes int
	freed              chan struct{} // a token after each release
}

func newStreamCredit(maxLines, maxBytes int) *streamCredit {
	return &streamCredit{maxLines: maxLines, maxBytes: maxBytes, freed: make(chan struct{}, 1)}
}

// wait returns true once there is room for one more line (of any size: the
// bytes bound is passed by at most one line), or false once stop is closed.
func (c *streamCredit) wait(stop <-chan struct{}) bool {
	for {
		if c.room() {
			return true
		}
		select {
		case <-c.freed:
		case <-stop:
			return false
		}
	}
}

// room reports whether wait would return at once.
func (c *streamCredit) room() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lines < c.maxLines && c.bytes < c.maxBytes
}

func (c *streamCredit) take(size int) {
	c.mu.Lock()
	c.lines++
	c.bytes += size
	c.mu.Unlock()
}

func (c *streamCredit) release(size int) {
	c.mu.Lock()
	c.lines--
	c.bytes -= size
	c.mu.Unlock()
	select {
	case c.freed <- struct{}{}:
	default:
	}
}
