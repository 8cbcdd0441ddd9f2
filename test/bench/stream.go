package main

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/autonomyops/orchestrator/api/client"
)

// The streaming ingest endpoint (POST /v1/telemetry/stream, issue 15),
// measured as JetStream's async publish is (jetstream.go): each of 64
// workers has its own stream, and one op sends a window of lines without
// waiting, then waits for all their acks.
var streamPhases = []struct {
	key           string
	eventsPerLine int
	window        int
	label         string
}{
	// One event a line, 100 lines in flight: JetStream's async publish in
	// windows of 100 messages, over HTTP.
	{"c64", 1, 100, "1 event/line"},
	// Lines of 100 events, 4 in flight: the batch phase's requests of 100,
	// pipelined on one connection (400 events in flight per stream, 25 600
	// in all; a window of 100 such lines would hold 164 MB in the leader).
	{"batch100_c64", 100, 4, "100 events/line"},
}

// measureStream runs the stream phases against the leader l.
func measureStream(ctx context.Context, c *orchCluster, l *node, o *options, res *results) error {
	const conc = 64
	cl, err := client.New([]string{l.api}, client.Options{HTTPClient: httpClient(conc, 30*time.Second)})
	if err != nil {
		return err
	}
	for _, ph := range streamPhases {
		logf("cluster: ingest stream, %s, windows of %d lines, c%d for %s after %s warm-up", ph.label, ph.window, conc, o.measure, o.warmup)
		w := &streamWorkers{cl: cl, streams: make([]*client.Stream, conc), window: ph.window, perLine: ph.eventsPerLine,
			phase: "st" + ph.key}
		lr, err := runLoad(ctx, conc, o.warmup, o.measure, c.cpu, w.op)
		w.close()
		if err != nil {
			return fmt.Errorf("ingest stream %s: %w", ph.key, err)
		}
		perOp := ph.window * ph.eventsPerLine
		if res.IngestStream == nil {
			res.IngestStream = streamResults{}
		}
		res.IngestStream[ph.key] = &streamLat{EventsPerS: round(lr.perSecond(perOp), 1), P50Ms: ms(percentile(lr.lat, 0.5)),
			P99Ms: ms(percentile(lr.lat, 0.99)), EventsPerLine: ph.eventsPerLine, Window: ph.window}
		res.record("ingest_stream "+ph.key, lr)
		logf("cluster: %s", lr.summary("events", perOp))
	}
	return nil
}

// streamWorkers are one phase's workers, each with its own stream, opened
// at its first op and again after a stream ends.
type streamWorkers struct {
	cl      *client.Client
	streams []*client.Stream // by worker; each touched only by its worker
	window  int
	perLine int
	phase   string
}

// op sends one window of lines on worker w's stream, then waits for their
// acks: every line acknowledged, with one Seq per event.
func (sw *streamWorkers) op(ctx context.Context, w, i int) error {
	s := sw.streams[w]
	if s == nil {
		var err error
		if s, err = sw.cl.OpenStream(ctx, client.StreamOptions{Window: sw.window}); err != nil {
			return err
		}
		sw.streams[w] = s
	}
	err := sw.window1(ctx, s, w, i)
	if err != nil {
		s.Close()
		sw.streams[w] = nil
	}
	return err
}

func (sw *streamWorkers) window1(ctx context.Context, s *client.Stream, w, i int) error {
	var line bytes.Buffer
	line.Grow(sw.perLine*(recordSize+1) + 2)
	for j := 0; j < sw.window; j++ {
		line.Reset()
		if sw.perLine == 1 {
			event(&line, fmt.Sprintf("%s-%d-%d-%d", sw.phase, w, i, j))
		} else {
			line.WriteByte('[')
			for k := 0; k < sw.perLine; k++ {
				if k > 0 {
					line.WriteByte(',')
				}
				event(&line, fmt.Sprintf("%s-%d-%d-%d-%d", sw.phase, w, i, j, k))
			}
			line.WriteByte(']')
		}
		if _, err := s.Send(ctx, line.Bytes()); err != nil {
			return err
		}
	}
	for j := 0; j < sw.window; j++ {
		select {
		case a, ok := <-s.Acks():
			if !ok {
				return fmt.Errorf("the stream ended: %v", s.Err())
			}
			if a.Err != nil {
				return a.Err
			}
			if len(a.Seqs) != sw.perLine {
				return fmt.Errorf("line %d: %d Seqs for %d events", a.Line, len(a.Seqs), sw.perLine)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// close ends every worker's stream (between ops no line is in flight).
func (sw *streamWorkers) close() {
	for _, s := range sw.streams {
		if s != nil {
			s.Close()
		}
	}
}
