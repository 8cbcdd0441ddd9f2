//go:build integration

package integration

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/autonomyops/orchestrator/test/checker"
	"github.com/autonomyops/orchestrator/walrepl"
)

// The history of the clients' events is the checker's (test/checker).
type (
	Outcome = checker.Outcome
	Event   = checker.Event
)

// What a client knows about one event (checker.Outcome).
const (
	Pending = checker.Pending
	OK      = checker.OK
	Failed  = checker.Failed
	Unknown = checker.Unknown
)

type ackRec struct {
	sent, at, firstSent time.Time
	by                  string
}

// Workload posts events with unique ids and records every outcome.
type Workload struct {
	c      *Cluster
	prefix string

	mu     sync.Mutex
	events map[string]*Event
	order  []*Event
	acks   []ackRec               // every acknowledgement, in the order seen
	hint   atomic.Pointer[string] // the leader URL last seen
	seq    atomic.Int64
	wg     sync.WaitGroup
	stops  []context.CancelFunc

	// EventBudget bounds how long one event is retried before the writer
	// gives it up and moves on.
	EventBudget time.Duration
	// RequestTimeout bounds one POST: 1 s, the client of issue 15's failover
	// measure, which then tries the other nodes.
	RequestTimeout time.Duration
}

// NewWorkload returns an idle workload over c.
func NewWorkload(c *Cluster, prefix string) *Workload {
	return &Workload{c: c, prefix: prefix, events: map[string]*Event{}, EventBudget: 4 * time.Second, RequestTimeout: time.Second}
}

// WriterOpts shape a group of writers.
type WriterOpts struct {
	Pin      *Node // always post to this node and never follow its redirects
	Interval time.Duration
}

// Start runs k writers until Stop (or the returned cancel).
func (w *Workload) Start(k int, opt WriterOpts) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	w.mu.Lock()
	w.stops = append(w.stops, cancel)
	w.mu.Unlock()
	for i := 0; i < k; i++ {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for ctx.Err() == nil {
				w.WriteOne(ctx, opt.Pin)
				if opt.Interval > 0 {
					walrepl.Sleep(ctx, opt.Interval)
				}
			}
		}()
	}
	return cancel
}

// Stop stops every writer and waits for them.
func (w *Workload) Stop() {
	w.mu.Lock()
	for _, s := range w.stops {
		s()
	}
	w.stops = nil
	w.mu.Unlock()
	w.wg.Wait()
}

func (w *Workload) newEvent(pin *Node) *Event {
	e := &Event{ID: fmt.Sprintf("%s-%06d", w.prefix, w.seq.Add(1))}
	if pin != nil {
		e.Pinned = pin.Name
	}
	w.mu.Lock()
	w.events[e.ID] = e
	w.order = append(w.order, e)
	w.mu.Unlock()
	return e
}

func (w *Workload) nodeByURL(base string) string {
	for _, n := range w.c.Nodes {
		if n.URL() == base {
			return n.Name
		}
	}
	return base
}

// WriteOne creates one event and tries to get it acknowledged within the
// event budget, following redirects (unless pinned) and rotating over the
// nodes on errors. It returns the event's final record.
func (w *Workload) WriteOne(ctx context.Context, pin *Node) Event {
	e := w.newEvent(pin)
	body := fmt.Sprintf(`{"id":%q,"kind":"load","agent":%q,"n":%d}`, e.ID, w.prefix, time.Now().UnixNano())
	deadline := time.Now().Add(w.EventBudget)
	ambiguous := false
	target := ""
	rot := int(w.seq.Load())
	var final Outcome
	var res postResult
	// failed holds the nodes this event's requests could not reach lately:
	// the client tries the other nodes first, and does not follow a
	// redirect back to one of them (a follower may still name a dead leader).
	failed := map[string]time.Time{}
	avoid := func(url string) bool {
		at, ok := failed[url]
		return ok && time.Since(at) < w.RequestTimeout && len(failed) < len(w.c.Nodes)
	}
	for ctx.Err() == nil && time.Now().Before(deadline) {
		switch {
		case pin != nil:
			target = pin.URL()
		case target == "":
			if h := w.hint.Load(); h != nil && !avoid(*h) {
				target = *h
			} else {
				for range w.c.Nodes {
					rot++
					target = w.c.Nodes[rot%len(w.c.Nodes)].URL()
					if !avoid(target) {
						break
					}
				}
			}
		}
		w.mu.Lock()
		if e.Attempts == 0 {
			e.FirstSent = time.Now()
		}
		e.Attempts++
		w.mu.Unlock()
		res = postEvent(ctx, target, body, w.RequestTimeout)
		if res.err == nil && res.status == http.StatusOK {
			w.mu.Lock()
			e.Outcome, e.Seq, e.AckedBy, e.AckSent, e.AckAt = OK, res.seq, w.nodeByURL(target), res.sentAt, res.doneAt
			e.FirstTry = e.Attempts == 1
			w.acks = append(w.acks, ackRec{sent: res.sentAt, at: res.doneAt, firstSent: e.FirstSent, by: e.AckedBy})
			w.mu.Unlock()
			if pin == nil {
				t := target
				w.hint.Store(&t)
			}
			return w.snapshot(e)
		}
		if res.err != nil {
			failed[target] = time.Now()
		}
		switch {
		case res.err != nil && refused(res.err):
			// never reached a server: nothing written
		case res.err != nil:
			ambiguous = true
		case res.status == http.StatusTemporaryRedirect || res.status == http.StatusPermanentRedirect:
			if to := strings.TrimSuffix(res.location, "/v1/telemetry/events"); pin == nil && res.location != "" && !avoid(to) {
				target = to
				w.hint.Store(&to)
				continue
			}
		case res.status == http.StatusServiceUnavailable && res.code == "no_leader":
			// a follower that knows no leader refused it before any write
		case res.status >= 400 && res.status < 500:
			// refused as a bad request: nothing written
		default:
			ambiguous = true // 5xx from a leader: it may have been appended
		}
		if pin == nil {
			if h := w.hint.Load(); h != nil && *h == target {
				w.hint.Store(nil)
			}
			target = ""
		}
		walrepl.Sleep(ctx, 50*time.Millisecond)
	}
	final = Failed
	if ambiguous {
		final = Unknown
	}
	if e.Attempts == 0 {
		final = Failed
	}
	w.mu.Lock()
	e.Outcome = final
	w.mu.Unlock()
	return w.snapshot(e)
}

func (w *Workload) snapshot(e *Event) Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return *e
}

// Events returns a copy of every event's record, in creation order.
func (w *Workload) Events() []Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]Event, len(w.order))
	for i, e := range w.order {
		out[i] = *e
	}
	return out
}

// Counts returns how many events ended ok, failed and unknown.
func (w *Workload) Counts() (ok, failed, unknown int) {
	for _, e := range w.Events() {
		switch e.Outcome {
		case OK:
			ok++
		case Failed:
			failed++
		case Unknown:
			unknown++
		}
	}
	return
}

// AcksBetween counts the events acknowledged (answered 200) in [from, to),
// optionally only those answered by one node, or first sent at or after from.
func (w *Workload) AcksBetween(from, to time.Time, by string, sentAfter bool) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	k := 0
	for _, a := range w.acks {
		if a.at.Before(from) || !a.at.Before(to) || (by != "" && a.by != by) || (sentAfter && a.firstSent.Before(from)) {
			continue
		}
		k++
	}
	return k
}

// AckLatencyP50 is the median time from request to acknowledgement of the
// events acknowledged in [from, to).
func (w *Workload) AckLatencyP50(from, to time.Time) time.Duration {
	w.mu.Lock()
	var ds []time.Duration
	for _, a := range w.acks {
		if !a.at.Before(from) && a.at.Before(to) {
			ds = append(ds, a.at.Sub(a.sent))
		}
	}
	w.mu.Unlock()
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2]
}

// FirstAckAfter is when the first request sent at or after t was
// acknowledged: the end of an outage as clients see it.
// Acknowledgements by the node named notBy are ignored.
func (w *Workload) FirstAckAfter(t time.Time, notBy string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var best time.Time
	for _, a := range w.acks {
		if !a.sent.Before(t) && (notBy == "" || a.by != notBy) && (best.IsZero() || a.at.Before(best)) {
			best = a.at
		}
	}
	return best, !best.IsZero()
}

// WaitAcks waits until at least k events were acknowledged at or after t.
func (w *Workload) WaitAcks(t time.Time, k int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if w.AcksBetween(t, time.Now().Add(time.Hour), "", false) >= k {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}
