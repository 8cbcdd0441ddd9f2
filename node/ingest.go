package node

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/autonomyops/orchestrator/api"
	"github.com/autonomyops/orchestrator/walrepl"
)

// idIndex maps client event ids to the Seq of the frame that carries them,
// over everything in this node's WAL (DESIGN §6 rule 10). It is caught up
// lazily from the WAL before each ingest, so it also covers frames this node
// received as a follower — a retry sent to a new leader finds the original.
type idIndex struct {
	mu       sync.Mutex
	seqs     map[string]idPos
	order    []idEntry // by Seq, to undo truncations from the end
	upTo     uint64    // frames ≤ upTo are indexed
	truncs   int       // WAL truncations already applied
	inflight map[string]chan struct{}
	// epochStart reports the leader's epoch-start Seq (0 when not leading).
	epochStart func() uint64
	// window is the idempotency window (setting ingest/idempotency_window).
	window int
	// forgotten is the highest Seq whose id the window dropped: a later
	// scan over that frame (a leader catching up over frames it indexed as
	// it appended them) must not bring the id back.
	forgotten uint64
}

type idEntry struct {
	seq uint64
	id  string
}

// idPos is where an id's frame sits: its Seq and epoch identify the frame.
type idPos struct{ seq, epoch uint64 }

// newIDIndex returns an empty index with the given window.
//
// The window bounds the idempotency index: a retry is recognised while its
// original is among the last window events that carried an id (the index
// holds between window and 2×window of them). Retries come within seconds or
// minutes; the bound keeps memory flat.
func newIDIndex(window int) *idIndex {
	return &idIndex{seqs: map[string]idPos{}, inflight: map[string]chan struct{}{}, window: window}
}

// setWindow changes the window live; a smaller one forgets the oldest ids now.
func (x *idIndex) setWindow(window int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.window = window
	x.pruneLocked()
}

// eventID extracts the optional "id" of an event: api.EventID, which the
// API also uses for the ids it hands to Ingest, so both read ids alike.
func eventID(payload []byte) string { return api.EventID(payload) }

func (x *idIndex) addLocked(id string, seq, epoch uint64) {
	if _, dup := x.seqs[id]; dup || seq <= x.forgotten {
		return
	}
	x.seqs[id] = idPos{seq, epoch}
	x.order = append(x.order, idEntry{seq, id})
	x.pruneLocked()
}

// pruneLocked keeps the newest window ids once more than 2×window are held.
//
// It builds a new map of the kept ids rather than deleting the dropped ones
// from the old map, which slowed down under that churn: a lookup and add at
// the default window took 3.8 µs with deletes and 0.95 µs with the rebuild
// (a benchmark), and addLocked was 18 % of the leader's CPU under batched
// ingest, on the replica's loop (docs/performance.md). Every seqs entry has one order
// entry (addLocked adds both, truncations remove both), so the kept order
// entries are the whole new map.
func (x *idIndex) pruneLocked() {
	if len(x.order) <= 2*x.window {
		return
	}
	drop := len(x.order) - x.window
	for _, e := range x.order[:drop] {
		x.forgotten = max(x.forgotten, e.seq)
	}
	keep := x.order[drop:]
	seqs := make(map[string]idPos, 2*x.window+1)
	for _, e := range keep {
		if p, ok := x.seqs[e.id]; ok && p.seq == e.seq {
			seqs[e.id] = p
		}
	}
	x.seqs = seqs
	x.order = append(make([]idEntry, 0, 2*x.window+1), keep...)
}

// follow keeps the index caught up in the background, on followers too, so
// that a new leader does not scan its whole WAL at its first ingest.
func (x *idIndex) follow(ctx context.Context, w *walrepl.WAL, r *walrepl.Replica) {
	x.epochStart = r.EpochStartSeq
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		if n := x.epochStart(); n != 0 && x.caughtUpTo(n) {
			continue // leading: this epoch's ids are added as they are appended
		}
		x.mu.Lock()
		x.catchUpLocked(w)
		x.mu.Unlock()
	}
}

func (x *idIndex) caughtUpTo(seq uint64) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.upTo >= seq
}

// catchUpLocked applies the WAL's truncations and indexes new frames.
func (x *idIndex) catchUpLocked(w *walrepl.WAL) error {
	truncs, n := w.TruncationsSince(x.truncs)
	for _, t := range truncs {
		for len(x.order) > 0 && x.order[len(x.order)-1].seq > t {
			e := x.order[len(x.order)-1]
			if x.seqs[e.id].seq == e.seq {
				delete(x.seqs, e.id)
			}
			x.order = x.order[:len(x.order)-1]
		}
		x.upTo = min(x.upTo, t)
		x.forgotten = min(x.forgotten, t) // frames above t are new frames
	}
	x.truncs = n
	st := w.Status()
	from := max(x.upTo+1, st.FirstSeq, 1)
	last := w.WrittenSeq()
	for from <= last {
		frames, err := w.ReadFrames(from, last, 4096, 4<<20)
		if err != nil {
			return err
		}
		if len(frames) == 0 {
			break
		}
		for i := range frames {
			f := &frames[i]
			if f.Type == walrepl.FrameEvent {
				if id := eventID(f.Payload); id != "" {
					x.addLocked(id, f.Seq, f.Epoch)
				}
			}
			x.upTo = f.Seq
		}
		from = x.upTo + 1
	}
	return nil
}

// Ingest implements api.Ingester: it appends the events that are new, and for
// events whose id the log already holds answers that frame's Seq once it is
// committed, writing nothing. ids are the events' ids as api.ParseEvents
// found them (nil: read them here).
func (n *Node) Ingest(ctx context.Context, payloads [][]byte, ids []string) ([]uint64, uint64, error) {
	x := n.ids
	if ids == nil {
		ids = make([]string, len(payloads))
		for i, p := range payloads {
			ids[i] = eventID(p)
		}
	} else if len(ids) != len(payloads) {
		return nil, 0, fmt.Errorf("node: %d ids for %d events", len(ids), len(payloads))
	}
	seqs := make([]uint64, len(payloads))
	var (
		waits []chan struct{}
		mine  []string
		done  chan struct{} // closed when this request's ids are no longer in flight
	)
	for {
		x.mu.Lock()
		// Frames of earlier epochs must be indexed; this epoch's own frames
		// are added as they are appended (ProposeNotify below).
		if x.upTo < n.replica.EpochStartSeq() || n.replica.EpochStartSeq() == 0 {
			if err := x.catchUpLocked(n.wal); err != nil {
				x.mu.Unlock()
				return nil, 0, err
			}
		}
		waits = waits[:0]
		for _, id := range ids {
			if ch, busy := x.inflight[id]; id != "" && busy && (len(waits) == 0 || waits[len(waits)-1] != ch) {
				waits = append(waits, ch)
			}
		}
		if len(waits) == 0 {
			break
		}
		x.mu.Unlock()
		for _, ch := range waits {
			select {
			case <-ch:
			case <-ctx.Done():
				return nil, 0, ctx.Err()
			}
		}
	}
	// Decide under the lock: known ids answer their Seq; the rest are
	// written, each id once even if the batch repeats it.
	fresh := make([][]byte, 0, len(payloads))
	freshIdx := make([]int, len(payloads)) // index into fresh, or -1
	firstOfID := make(map[string]int, len(payloads))
	var known []idPos
	for i, id := range ids {
		freshIdx[i] = -1
		if id != "" {
			if p, ok := x.seqs[id]; ok {
				seqs[i] = p.seq
				known = append(known, p)
				continue
			}
			if j, ok := firstOfID[id]; ok {
				freshIdx[i] = j
				continue
			}
			firstOfID[id] = len(fresh)
			if done == nil {
				done = make(chan struct{}) // one for all of this request's ids
			}
			x.inflight[id] = done
			mine = append(mine, id)
		}
		freshIdx[i] = len(fresh)
		fresh = append(fresh, payloads[i])
	}
	x.mu.Unlock()
	defer func() {
		x.mu.Lock()
		for _, id := range mine {
			delete(x.inflight, id)
		}
		if done != nil {
			close(done)
		}
		x.mu.Unlock()
	}()

	if len(fresh) > 0 {
		var indexed func(first, epoch uint64)
		if len(mine) > 0 {
			indexed = func(first, epoch uint64) {
				x.mu.Lock()
				for id, j := range firstOfID {
					x.addLocked(id, first+uint64(j), epoch)
				}
				x.mu.Unlock()
			}
		}
		first, _, err := n.replica.ProposeNotify(ctx, time.Now().UnixNano(), fresh, indexed)
		if err != nil {
			return nil, 0, err
		}
		for i := range payloads {
			if freshIdx[i] >= 0 && seqs[i] == 0 {
				seqs[i] = first + uint64(freshIdx[i])
			}
		}
	}
	for _, p := range known {
		if err := n.replica.WaitCommitted(ctx, p.seq); err != nil {
			return nil, 0, fmt.Errorf("waiting for the original of a retried event (Seq=%d): %w", p.seq, err)
		}
		// The Seq alone is not the frame: confirm the one committed there is
		// still the original (a truncation and re-election could intervene).
		// (Below the base it was trimmed: trimmed frames are committed and
		// never change.)
		if base, _ := n.wal.Base(); p.seq < base {
			continue
		}
		if e, ok := n.wal.EpochAt(p.seq); !ok || e != p.epoch {
			return nil, 0, fmt.Errorf("%w: the original of a retried event moved; retry", walrepl.ErrUnknownOutcome)
		}
	}
	return seqs, n.wal.SafeSeq(), nil
}
