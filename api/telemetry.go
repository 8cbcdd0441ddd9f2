package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/autonomyops/orchestrator/walrepl"
	"github.com/gin-gonic/gin"
)

// ParseEvents splits an ingest body into compacted JSON objects: one object,
// an array of objects, or newline-delimited objects (NDJSON). ids[i] is the
// client event id of payloads[i] as EventID reads it ("" for none), so that
// nothing below the API parses an event again. The payloads may share the
// body's memory: the body must not change while they are in use.
func ParseEvents(body []byte, maxEvents int) (payloads [][]byte, ids []string, err error) {
	body = bytes.TrimSpace(body)
	if len(body) > 0 {
		if payloads, ids, ok := scanEvents(body, maxEvents); ok {
			return payloads, ids, nil
		}
	}
	// Not valid (or empty): encoding/json says why, in the messages clients
	// have always had. (It accepts nothing the scanner rejects:
	// FuzzParseEvents.)
	payloads, err = parseEventsStd(body, maxEvents)
	if err != nil {
		return nil, nil, err
	}
	ids = make([]string, len(payloads))
	for i, p := range payloads {
		ids[i] = EventID(p)
	}
	return payloads, ids, nil
}

// parseEventsStd is ParseEvents with encoding/json: a Decoder over the
// body, json.Compact per event. ParseEvents uses it for its error messages;
// FuzzParseEvents holds the scanner to it.
func parseEventsStd(body []byte, maxEvents int) ([][]byte, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, errors.New("the body is empty: send one JSON object, a JSON array of objects, or NDJSON")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var out [][]byte
	add := func(raw json.RawMessage, where string) error {
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 || raw[0] != '{' {
			return fmt.Errorf("%s is not a JSON object", where)
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return fmt.Errorf("%s: %v", where, err)
		}
		out = append(out, buf.Bytes())
		if len(out) > maxEvents {
			return fmt.Errorf("more than %d events in one request; split the batch (setting ingest/max_batch)", maxEvents)
		}
		return nil
	}
	for i := 0; ; i++ {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("invalid JSON at byte %d: %v", dec.InputOffset(), err)
		}
		if t := bytes.TrimSpace(raw); len(t) > 0 && t[0] == '[' {
			// The body is trimmed: the array is the whole body if it ends
			// there. (dec.More alone let "[{}]]" or "[{}] }x" through.)
			if i != 0 || dec.InputOffset() != int64(len(body)) {
				return nil, errors.New("a JSON array must be the whole body")
			}
			var arr []json.RawMessage
			if err := json.Unmarshal(t, &arr); err != nil {
				return nil, fmt.Errorf("invalid JSON array: %v", err)
			}
			if len(arr) == 0 {
				return nil, errors.New("the array is empty: nothing to ingest")
			}
			for j, el := range arr {
				if err := add(el, fmt.Sprintf("array element %d", j)); err != nil {
					return nil, err
				}
			}
			break
		}
		if err := add(raw, fmt.Sprintf("event %d", i)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *Server) ingest(c *gin.Context) {
	start := time.Now()
	lim := s.cfg.Settings.Values()
	body, err := readBody(c, lim.MaxBodyBytes)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.cfg.Instruments.ingestDone(start, 0, "too_large")
			writeError(c, http.StatusRequestEntityTooLarge, "too_large",
				fmt.Sprintf("the body exceeds %d bytes; send smaller batches (setting ingest/max_body_bytes)", lim.MaxBodyBytes))
			return
		}
		s.cfg.Instruments.ingestDone(start, 0, "bad_body")
		writeError(c, http.StatusBadRequest, "bad_body", "reading the body: "+err.Error())
		return
	}
	events, ids, err := ParseEvents(body, lim.MaxBatch)
	if err != nil {
		s.cfg.Instruments.ingestDone(start, 0, "bad_json")
		writeError(c, http.StatusBadRequest, "bad_json", err.Error()+"; nothing was written")
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.cfg.IngestTimeout)
	defer cancel()
	seqs, safe, err := s.b.Ingest.Ingest(ctx, events, ids)
	if err != nil {
		status, code, msg := errStatus(err)
		s.cfg.Instruments.ingestDone(start, len(events), code)
		if status == http.StatusServiceUnavailable {
			c.Header("Retry-After", "1")
		}
		writeError(c, status, code, msg)
		return
	}
	s.cfg.Instruments.ingestDone(start, len(events), "ok")
	writeIngestOK(c, seqs, safe)
}

// readBody reads an ingest body of at most limit bytes. A body that states
// its length, as clients' bodies do, is read into one buffer of that size;
// one that does not (chunked) or states too much goes through
// http.MaxBytesReader, which answers too_large once limit is passed.
func readBody(c *gin.Context, limit int64) ([]byte, error) {
	r := c.Request
	if n := r.ContentLength; n >= 0 && n <= limit {
		buf := make([]byte, n)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	return io.ReadAll(http.MaxBytesReader(c.Writer, r.Body, limit))
}

// writeIngestOK answers 200 with the IngestResponse, encoded by hand: the
// bytes c.JSON would write, without reflection, on the hot path.
func writeIngestOK(c *gin.Context, seqs []uint64, safe uint64) {
	b := make([]byte, 0, len(`{"seqs":[],"safe_seq":}`)+21*(len(seqs)+1))
	b = append(b, `{"seqs":`...)
	if seqs == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, seq := range seqs {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendUint(b, seq, 10)
		}
		b = append(b, ']')
	}
	b = append(b, `,"safe_seq":`...)
	b = strconv.AppendUint(b, safe, 10)
	b = append(b, '}')
	c.Data(http.StatusOK, "application/json; charset=utf-8", b)
}

// frameQuery is the filter shared by events and inspect.
type frameQuery struct {
	afterSeq uint64
	limit    int
	kind     string
	agent    string
	since    time.Time // zero: no bound
}

func parseFrameQuery(c *gin.Context, defLimit int) (frameQuery, error) {
	q := frameQuery{limit: defLimit, kind: c.Query("kind"), agent: c.Query("agent")}
	if v := c.Query("after_seq"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return q, fmt.Errorf("after_seq=%q is not a Seq (a non-negative integer)", v)
		}
		q.afterSeq = n
	}
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > 10000 {
			return q, fmt.Errorf("limit=%q must be an integer from 1 to 10000", v)
		}
		q.limit = n
	}
	if v := c.Query("since"); v != "" {
		t, err := ParseSince(v, time.Now())
		if err != nil {
			return q, err
		}
		q.since = t
	}
	return q, nil
}

// ParseSince reads a duration ("1h", "90s") as "that long ago", or an RFC 3339 time.
func ParseSince(v string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("since=%q must not be negative", v)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("since=%q is neither a duration (e.g. 1h, 30m) nor an RFC 3339 time", v)
}

// eventFields is the part of an event the filters read.
type eventFields struct {
	Kind  string `json:"kind"`
	Agent string `json:"agent"`
}

func (q *frameQuery) match(f *walrepl.Frame) bool {
	if !q.since.IsZero() && f.Time < q.since.UnixNano() {
		return false
	}
	if q.kind == "" && q.agent == "" {
		return true
	}
	if f.Type != walrepl.FrameEvent {
		return false
	}
	var ef eventFields
	if json.Unmarshal(f.Payload, &ef) != nil {
		return false
	}
	return (q.kind == "" || ef.Kind == q.kind) && (q.agent == "" || ef.Agent == q.agent)
}

// scanCommitted calls fn for every committed frame after q.afterSeq that
// matches q, in Seq order, until fn returns false. Only frames at or below
// safe_seq are read (DESIGN §6 rule 11).
func scanCommitted(w Log, q *frameQuery, fn func(f *walrepl.Frame) bool) (uint64, error) {
	safe := w.SafeSeq()
	st := w.Status()
	from := max(q.afterSeq+1, st.FirstSeq, 1)
	for from <= safe {
		frames, err := w.ReadFrames(from, safe, 4096, 4<<20)
		if err != nil {
			return safe, err
		}
		if len(frames) == 0 {
			break
		}
		for i := range frames {
			if q.match(&frames[i]) && !fn(&frames[i]) {
				return safe, nil
			}
		}
		from = frames[len(frames)-1].Seq + 1
	}
	return safe, nil
}

func (s *Server) events(c *gin.Context) {
	q, err := parseFrameQuery(c, 100)
	if err != nil {
		writeError(c, http.StatusBadRequest, "bad_query", err.Error())
		return
	}
	out := []Event{}
	safe, err := scanCommitted(s.b.Log, &q, func(f *walrepl.Frame) bool {
		if f.Type != walrepl.FrameEvent {
			return true
		}
		out = append(out, Event{Seq: f.Seq, Epoch: f.Epoch, TS: time.Unix(0, f.Time).UTC(), Event: append(json.RawMessage(nil), f.Payload...)})
		return len(out) < q.limit
	})
	if err != nil {
		writeError(c, http.StatusInternalServerError, "wal_read", err.Error())
		return
	}
	c.JSON(http.StatusOK, EventsResponse{Events: out, SafeSeq: safe})
}

func (s *Server) walStatus(c *gin.Context) {
	c.JSON(http.StatusOK, WALStatusFrom(s.b.Node.NodeName(), s.b.Log.Status()))
}

// WALStatusFrom converts the WAL's status to the API shape.
func WALStatusFrom(node string, st walrepl.Status) WALStatus {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	ws := WALStatus{
		Node: node, Dir: st.Dir, WALID: st.WALID, Base: st.Base, FirstSeq: st.FirstSeq, LastSeq: st.LastSeq,
		FsyncedSeq: st.DurableSeq, SafeSeq: st.SafeSeq, PersistedSafeSeq: st.PersistedSafeSeq, Bytes: st.Bytes,
		FsyncCount: st.Fsync.Count, FsyncLastMs: ms(st.Fsync.Last), FsyncMaxMs: ms(st.Fsync.Max), Failed: st.Failed,
		BytesOnDisk: st.BytesOnDisk, TrimmedFrames: st.Trimmed,
	}
	if st.Fsync.Count > 0 {
		ws.FsyncAvgMs = ms(st.Fsync.Total / time.Duration(st.Fsync.Count))
	}
	return ws
}

// FrameFrom converts a WAL frame to the API shape.
func FrameFrom(f *walrepl.Frame) Frame {
	return Frame{Seq: f.Seq, Epoch: f.Epoch, TS: time.Unix(0, f.Time).UTC(), Type: f.Type.String(),
		Event: append(json.RawMessage(nil), f.Payload...)}
}

// walInspect shows this node's committed frames matching the filters, in
// Seq order: the newest `limit` of them, or with after_seq the first `limit`
// after it (to page forward through the whole WAL).
func (s *Server) walInspect(c *gin.Context) {
	q, err := parseFrameQuery(c, 100)
	if err != nil {
		writeError(c, http.StatusBadRequest, "bad_query", err.Error())
		return
	}
	if c.Query("after_seq") != "" {
		out := []Frame{}
		safe, err := scanCommitted(s.b.Log, &q, func(f *walrepl.Frame) bool {
			out = append(out, FrameFrom(f))
			return len(out) < q.limit
		})
		if err != nil {
			writeError(c, http.StatusInternalServerError, "wal_read", err.Error())
			return
		}
		c.JSON(http.StatusOK, InspectResponse{Node: s.b.Node.NodeName(), Frames: out, SafeSeq: safe})
		return
	}
	ring := make([]Frame, q.limit)
	n := 0
	safe, err := scanCommitted(s.b.Log, &q, func(f *walrepl.Frame) bool {
		ring[n%q.limit] = FrameFrom(f)
		n++
		return true
	})
	if err != nil {
		writeError(c, http.StatusInternalServerError, "wal_read", err.Error())
		return
	}
	out := make([]Frame, 0, min(n, q.limit))
	for i := max(0, n-q.limit); i < n; i++ {
		out = append(out, ring[i%q.limit])
	}
	c.JSON(http.StatusOK, InspectResponse{Node: s.b.Node.NodeName(), Frames: out, SafeSeq: safe})
}
