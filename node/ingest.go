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
	mu  sync.Mutex
	set idSet // the ids, oldest first (idset.go)
	// upTo: frames ≤ upTo are indexed (or their ids forgotten).
	upTo     uint64
	truncs   int // WAL truncations already applied
	inflight map[string]chan struct{}
	// epochStart reports the leader's epoch-start Seq (0 when not leading).
	epochStart func() uint64
	// window and maxBytes bound the index: the settings
	// ingest/idempotency_window (ids) and ingest/idempotency_window_bytes
	// (the set's footprint). It keeps the newest ids that fit in both.
	window   int
	maxBytes int64
	// forgotten is the highest Seq whose id the bounds dropped: a later
	// scan over that frame (a leader catching up over frames it indexed as
	// it appended them) must not bring the id back.
	forgotten uint64
	// unsorted: an id was added below the newest Seq held. Ids arrive in
	// Seq order (the WAL's scan, the leader's appends, the checkpoint), so
	// this is a safety net: truncations then check every entry.
	unsorted bool
}

// idPos is where an id's frame sits: its Seq and epoch identify the frame.
type idPos struct{ seq, epoch uint64 }

// newIDIndex returns an empty index with the given bounds.
//
// The bounds keep memory flat: a retry is recognised while its original is
// among the last window events that carried an id and the ids since it fit
// in maxBytes (each id costs its length plus idEntBytes). Retries come
// within seconds or minutes.
func newIDIndex(window int, maxBytes int64) *idIndex {
	return &idIndex{set: newIDSet(), inflight: map[string]chan struct{}{}, window: window, maxBytes: maxBytes}
}

// setLimits changes the bounds live; smaller ones forget the oldest ids now
// and give the memory back.
func (x *idIndex) setLimits(window int, maxBytes int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.window, x.maxBytes = window, maxBytes
	for x.set.len() > x.window || minFootprint(x.set.len(), x.set.keyBytes) > x.maxBytes {
		x.forgetOldestLocked()
	}
	x.set.compact(x.maxBytes)
}

// eventID extracts the optional "id" of an event: api.EventID, which the
// API also uses for the ids it hands to Ingest, so both read ids alike.
func eventID(payload []byte) string { return api.EventID(payload) }

// lookupLocked returns where the frame carrying id is, if the index has it.
func (x *idIndex) lookupLocked(id string) (idPos, bool) { return x.set.get(id) }

func (x *idIndex) addLocked(id string, seq, epoch uint64) {
	if id == "" || seq <= x.forgotten {
		return
	}
	if _, dup := x.set.get(id); dup {
		return
	}
	if minFootprint(1, int64(len(id))) > x.maxBytes {
		// Larger than the whole bound: forgotten at once, like an id the
		// bound pushed out.
		x.forgotten = max(x.forgotten, seq)
		return
	}
	if x.set.len() > 0 && seq < x.set.newest().seq {
		x.unsorted = true
	}
	for x.set.len() >= x.window {
		x.forgetOldestLocked()
	}
	for !x.set.add(id, seq, epoch, x.maxBytes) {
		x.forgetOldestLocked()
	}
}

func (x *idIndex) forgetOldestLocked() {
	x.forgotten = max(x.forgotten, x.set.dropOldest())
}

// truncateLocked forgets the ids of frames above seq (a WAL truncation
// removed them).
func (x *idIndex) truncateLocked(seq uint64) {
	for x.set.len() > 0 && x.set.newest().seq > seq {
		x.set.dropNewest()
	}
	if x.unsorted {
		x.set.filter(func(e *idEnt) bool { return e.seq <= seq })
	}
	x.upTo = min(x.upTo, seq)
	x.forgotten = min(x.forgotten, seq) // frames above seq are new frames
}

// usage returns how many ids the index holds and the bytes they occupy.
func (x *idIndex) usage() (ids int, bytes int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.set.len(), x.set.footprint()
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
		x.mu.Lock()
		x.syncLocked(w, x.epochStart())
		x.mu.Unlock()
	}
}

// syncLocked brings the index up to the WAL: the WAL's truncations always,
// then the frames it has not indexed yet unless this node leads an epoch
// whose start it has indexed (that epoch's ids are added as they are
// appended). The truncations come first: a node may have indexed frames a
// later leader truncated and replaced, and then be elected with its
// epoch-start frame at or below what it indexed; skipping on the stale
// position would keep ids that are gone and miss the frames that replaced
// them (found in review: a retry would then be written twice).
func (x *idIndex) syncLocked(w *walrepl.WAL, epochStart uint64) error {
	x.applyTruncationsLocked(w)
	if epochStart != 0 && x.upTo >= epochStart {
		return nil
	}
	return x.catchUpLocked(w)
}

func (x *idIndex) applyTruncationsLocked(w *walrepl.WAL) {
	truncs, n := w.TruncationsSince(x.truncs)
	for _, t := range truncs {
		x.truncateLocked(t)
	}
	x.truncs = n
}

// catchUpLocked applies the WAL's truncations and indexes new frames.
func (x *idIndex) catchUpLocked(w *walrepl.WAL) error {
	x.applyTruncationsLocked(w)
	st := w.Status()
	from := max(x.upTo+1, st.FirstSeq, 1)
	last := w.WrittenSeq()
	for from <= last {
		// 1 MiB a read: ReadFrames allocates its byte bound whole, and
		// 4096 frames of a few hundred bytes need about that.
		frames, err := w.ReadFrames(from, last, 4096, 1<<20)
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
		if err := x.syncLocked(n.wal, n.replica.EpochStartSeq()); err != nil {
			x.mu.Unlock()
			return nil, 0, err
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
			if p, ok := x.lookupLocked(id); ok {
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
		// Called on the replica's loop once the frames are appended, in
		// append order: the ids go in by Seq (mine is in the order of
		// fresh), and when the index covered the frame before this batch it
		// now covers the whole batch, so a leader that steps down does not
		// scan its own epoch again.
		indexed := func(first, epoch uint64) {
			x.mu.Lock()
			for _, id := range mine {
				x.addLocked(id, first+uint64(firstOfID[id]), epoch)
			}
			if x.upTo+1 == first {
				x.upTo = first + uint64(len(fresh)) - 1
			}
			x.mu.Unlock()
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
