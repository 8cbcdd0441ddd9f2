package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
)

// RSS as the WAL grows (issue 15: "flat: the same after 10× more events").
// While the ingest phases run, a sampler reads every node's VmHWM and the
// leader's last Seq every rssEvery. From the trace, the flatness figure is
// the largest node's peak RSS once every event was written divided by its
// peak when half of them were: 1.0 is flat, and a node whose memory grows
// with the WAL approaches 2. Comparing runs with -duration 12s and 120s
// (about 10× the events) is the other half of the check.

const rssEvery = 2 * time.Second

// rssTrace is meta.rss_trace in bench-results.json.
type rssTrace struct {
	EverySeconds float64     `json:"every_s"`
	Samples      []rssSample `json:"samples"`
	// HalfSeq and LastSeq are the leader's last Seq at the sample nearest
	// half of the events, and at the end.
	HalfSeq     uint64  `json:"half_seq"`
	LastSeq     uint64  `json:"last_seq"`
	PeakHalfMiB float64 `json:"peak_at_half_mib"`
	PeakEndMiB  float64 `json:"peak_at_end_mib"`
}

type rssSample struct {
	Seconds float64            `json:"t_s"`
	LastSeq uint64             `json:"last_seq"`
	HWMMiB  map[string]float64 `json:"hwm_mib"`
}

// traceRSS samples c's nodes until the returned stop is called; stop
// returns the trace.
func traceRSS(parent context.Context, c *orchCluster, leader *node) (stop func() *rssTrace) {
	tr := &rssTrace{EverySeconds: rssEvery.Seconds()}
	ctx, cancel := context.WithCancel(parent)
	start := time.Now()
	sample := func(ctx context.Context) {
		s := rssSample{Seconds: round(time.Since(start).Seconds(), 1), HWMMiB: map[string]float64{}}
		for _, n := range c.nodes {
			n.sampleRSS()
			s.HWMMiB[n.name] = round(float64(n.peakKB)/1024, 1)
		}
		var ws wire.WALStatus
		if code, err := getJSON(ctx, leader.api+"/v1/wal/status", &ws); err == nil && code == http.StatusOK {
			s.LastSeq = ws.LastSeq
		}
		tr.Samples = append(tr.Samples, s)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(rssEvery)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				sample(ctx)
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() *rssTrace {
		cancel()
		wg.Wait()
		sample(context.Background()) // the end: every event written
		tr.summarize()
		return tr
	}
}

// summarize finds the peak at half of the events and at the end.
func (tr *rssTrace) summarize() {
	if len(tr.Samples) == 0 {
		return
	}
	worst := func(s rssSample) float64 {
		var w float64
		for _, v := range s.HWMMiB {
			w = max(w, v)
		}
		return w
	}
	end := tr.Samples[len(tr.Samples)-1]
	tr.LastSeq, tr.PeakEndMiB = end.LastSeq, worst(end)
	for _, s := range tr.Samples {
		if s.LastSeq >= tr.LastSeq/2 {
			tr.HalfSeq, tr.PeakHalfMiB = s.LastSeq, worst(s)
			break
		}
	}
}

// addRSSFlatness adds the flatness target to r.Ratios (after
// computeRatios, which starts them afresh).
func (r *results) addRSSFlatness() {
	tr := r.Meta.RSSTrace
	if tr == nil || tr.PeakHalfMiB == 0 || tr.HalfSeq == 0 {
		return
	}
	v := tr.PeakEndMiB / tr.PeakHalfMiB
	r.Ratios = append(r.Ratios, ratio{Key: "rss_flatness", Name: "peak RSS after all events ÷ after half of them", Value: round(v, 3),
		Op: "<=", Target: 1.1, Pass: v <= 1.1,
		Note: fmt.Sprintf("%.0f MiB at Seq %d, %.0f MiB at Seq %d", tr.PeakEndMiB, tr.LastSeq, tr.PeakHalfMiB, tr.HalfSeq)})
}
