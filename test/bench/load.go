package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// opFunc performs one request of a closed-loop worker: worker is the
// worker's index, i the request's index within the worker.
type opFunc func(ctx context.Context, worker, i int) error

// loadResult is one load phase's measured window.
type loadResult struct {
	conc      int
	window    time.Duration
	ops       int             // requests that started and finished in the window
	errs      int             // requests that failed (any time in the phase)
	firstErr  error           // the first failure, for the report
	lat       []time.Duration // latencies of ops, sorted
	clientCPU float64         // harness CPU seconds in the window
	serverCPU float64         // server processes' CPU seconds in the window
	busiest   float64         // CPU seconds of the busiest server process in the window
	machine   float64         // busy share of all the machine's CPUs in the window, 0..1
}

func (r *loadResult) perSecond(unitsPerOp int) float64 {
	return float64(r.ops*unitsPerOp) / r.window.Seconds()
}

// percentile returns the nearest-rank p-quantile (0 < p ≤ 1) of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	k := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(k, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return round(float64(d)/1e6, 3) }

func round(v float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(v*p) / p
}

// cpuSampler returns the cumulative CPU seconds of each process of the
// system under test, always in the same order.
type cpuSampler func() []float64

func sum(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s
}

// runLoad runs conc workers in a closed loop for warmup+window. Only
// requests that start at or after the window opens and finish before it
// closes are counted; the latency is what the client sees, from sending the
// request to reading the whole answer.
func runLoad(ctx context.Context, conc int, warmup, window time.Duration, server cpuSampler, op opFunc) (*loadResult, error) {
	res := &loadResult{conc: conc, window: window}
	t0 := time.Now()
	wStart, wEnd := t0.Add(warmup), t0.Add(warmup+window)
	parent := ctx
	ctx, cancel := context.WithDeadline(ctx, wEnd.Add(30*time.Second)) // a stuck request must not hang the run
	defer cancel()

	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		lats = make([][]time.Duration, conc)
	)
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			local := make([]time.Duration, 0, 4096)
			for i := 0; ; i++ {
				s := time.Now()
				if !s.Before(wEnd) || ctx.Err() != nil {
					break
				}
				err := op(ctx, w, i)
				e := time.Now()
				if err != nil {
					mu.Lock()
					res.errs++
					if res.firstErr == nil {
						res.firstErr = err
					}
					mu.Unlock()
					time.Sleep(10 * time.Millisecond) // no hot loop against a failing server
					continue
				}
				if !s.Before(wStart) && !e.After(wEnd) {
					local = append(local, e.Sub(s))
				}
			}
			lats[w] = local
		}(w)
	}

	// CPU of both sides over exactly the window.
	var cStart, mBusy, mTotal float64
	var sStart []float64
	sample := func(at time.Time) bool {
		t := time.NewTimer(time.Until(at))
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	if sample(wStart) {
		cStart, sStart = selfCPU(), server()
		mBusy, mTotal = machineCPU()
		if sample(wEnd) {
			res.clientCPU = selfCPU() - cStart
			for i, v := range server() {
				if i < len(sStart) {
					d := v - sStart[i]
					res.serverCPU += d
					res.busiest = max(res.busiest, d)
				}
			}
			b, t := machineCPU()
			if t > mTotal {
				res.machine = (b - mBusy) / (t - mTotal)
			}
		}
	}
	wg.Wait()
	if err := parent.Err(); err != nil {
		return nil, err // interrupted
	}
	for _, l := range lats {
		res.lat = append(res.lat, l...)
	}
	slices.Sort(res.lat)
	res.ops = len(res.lat)
	if res.ops == 0 {
		return res, fmt.Errorf("no request succeeded in the window (%d failed; first: %v)", res.errs, res.firstErr)
	}
	return res, nil
}

// summary is how a phase is logged.
func (r *loadResult) summary(unit string, unitsPerOp int) string {
	w := r.window.Seconds()
	s := fmt.Sprintf("c%d: %.0f %s/s, p50 %.2f ms, p99 %.2f ms, %d requests; CPU (%% of one core): client %.0f%%, servers %.0f%% (busiest %.0f%%); machine %.0f%% busy",
		r.conc, r.perSecond(unitsPerOp), unit, ms(percentile(r.lat, 0.50)), ms(percentile(r.lat, 0.99)), r.ops,
		100*r.clientCPU/w, 100*r.serverCPU/w, 100*r.busiest/w, 100*r.machine)
	if r.errs > 0 {
		s += fmt.Sprintf(", %d errors (first: %v)", r.errs, r.firstErr)
	}
	return s
}
