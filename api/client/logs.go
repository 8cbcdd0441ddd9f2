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
	"sync/atomic"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
)

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
		Header: http.Header{"Accept": {wire.ContentTypeNDJSON}}}
	var s *LogStream
	_, err := c.route(ctx, r, func(ep string) (*Reply, error) {
		resp, rep, cancel, err := c.openStream(ctx, ep, r, nil)
		if err != nil {
			return rep, err
		}
		if ct := resp.Header.Get("Content-Type"); ct != "" {
			if mt, _, perr := mime.ParseMediaType(ct); perr != nil || mt != wire.ContentTypeNDJSON {
				drain(resp)
				cancel()
				return rep, fmt.Errorf("api: GET %s answered Content-Type %q, not %s", rep.URL, ct, wire.ContentTypeNDJSON)
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
func (s *LogStream) Next() (wire.Event, []byte, error) {
	for {
		line, err := s.readLine()
		if err != nil {
			if s.idled.Load() {
				return wire.Event{}, nil, fmt.Errorf("%w: nothing (not even a keepalive) from %s for %s", ErrStreamIdle, s.URL, s.idle)
			}
			return wire.Event{}, nil, err
		}
		if s.timer != nil {
			s.timer.Reset(s.idle)
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue // keepalive
		}
		var ev wire.Event
		if err := json.Unmarshal(line, &ev); err != nil {
			return wire.Event{}, nil, fmt.Errorf("api: a line of the log stream from %s is not an event: %w", s.URL, err)
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

// openStream issues r, a request whose answer is read as it comes, against
// ep. The answer's headers must arrive within the client's timeout; the
// returned cancel ends the stream (the caller owns it once err is nil).
// newBody, unless nil, gives each attempt its body, as for open.
func (c *Client) openStream(ctx context.Context, ep string, r Request, newBody func(context.Context) io.Reader) (*http.Response, *Reply, context.CancelFunc, error) {
	sctx, cancel := context.WithCancel(ctx)
	var timedOut atomic.Bool
	var timer *time.Timer
	if c.timeout > 0 {
		timer = time.AfterFunc(c.timeout, func() { timedOut.Store(true); cancel() })
	}
	resp, rep, err := c.open(sctx, c.stream, ep, r, newBody)
	if timer != nil && !timer.Stop() || timedOut.Load() {
		if resp != nil {
			resp.Body.Close()
		}
		cancel()
		target := ep + r.Path
		if len(r.Query) > 0 {
			target += "?" + r.Query.Encode()
		}
		if rep != nil {
			target = rep.URL
		}
		return nil, rep, nil, &url.Error{Op: urlOp(r.Method), URL: target, Err: headerTimeoutError{}}
	}
	if err != nil {
		cancel()
		return nil, rep, nil, err
	}
	return resp, rep, cancel, nil
}
