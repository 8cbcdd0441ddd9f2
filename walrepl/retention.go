package walrepl

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/sirupsen/logrus"
)

// Retention keeps the WAL bounded (issue 8) by deleting whole sealed
// segments (issue 14): nothing retained is ever rewritten, and no file is
// sparse. Trimming records the new base in telemetry.base and then removes
// the segments below it.
//
// Crash safety: telemetry.base is replaced atomically before any segment is
// removed. A crash before that leaves the old base (nothing trimmed); a crash
// after it leaves the new base with some segments below it still there,
// which recovery removes without reading (failpoints trim-before-base and
// trim-before-delete). Only frames at or below safe_seq (and fsynced) are
// trimmed.

// ErrBelowBase: the frames asked for were trimmed.
var ErrBelowBase = errors.New("walrepl: frames below the WAL's base were trimmed")

// TrimTo drops every frame below newBase. newBase-1 must be committed
// (≤ safe_seq) and fsynced; it is rounded down to the first Seq of a
// segment, since only whole sealed segments are deleted. A newBase past every
// frame first seals telemetry.wal, so that everything can go. It returns the
// base in effect afterwards.
func (w *WAL) TrimTo(newBase uint64) (uint64, error) {
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	w.fileMu.Lock()
	defer w.fileMu.Unlock()
	w.mu.Lock()
	if err := w.usableLocked(); err != nil {
		w.mu.Unlock()
		return 0, err
	}
	limit := min(w.safeSeq, w.durableSeq, w.persistedSafe) + 1
	if newBase > limit {
		newBase = limit
	}
	if w.frames == 0 || newBase <= w.firstSeq {
		b := w.base
		w.mu.Unlock()
		return b, nil
	}
	if act := w.disk; newBase == w.lastSeq+1 && act.frames() > 0 && len(w.pending) == 0 && act == w.segs[len(w.segs)-1] {
		// Every frame goes, telemetry.wal's too: seal it first.
		ns := newActiveSeg(segHeader{ID: w.id, First: act.last + 1, PrevEpoch: act.lastEpoch, PrevCRC: act.lastCRC}, nil)
		if err := w.rollTo(ns, true); err != nil {
			err = w.failNowLocked(fmt.Errorf("%w: %v", ErrFailed, err))
			w.mu.Unlock()
			return 0, err
		}
		w.segs = append(w.segs, ns)
	}
	// Segments [0,k) hold only frames below newBase. Only sealed ones go:
	// never telemetry.wal (w.disk), nor a segment a queued roll has not
	// created yet.
	k := 0
	for k < len(w.segs)-1 && w.segs[k] != w.disk && w.segs[k+1].first <= newBase {
		k++
	}
	if k == 0 {
		b := w.base
		w.mu.Unlock()
		return b, nil
	}
	keep := w.segs[k]
	newBase = keep.first
	prevEpoch := keep.hdr.PrevEpoch
	w.mu.Unlock()

	if err := w.fault("trim-before-base"); err != nil {
		return 0, err
	}
	if err := saveBase(w.dir, baseState{Base: newBase, PrevEpoch: prevEpoch}); err != nil {
		w.mu.Lock()
		w.failLocked(fmt.Errorf("%w: writing %s: %v", ErrFailed, BaseFile, err))
		w.notifyLocked()
		w.mu.Unlock()
		return 0, err
	}
	w.mu.Lock()
	dead := append([]*segment(nil), w.segs[:k]...)
	removed := newBase - w.firstSeq
	w.segs = append([]*segment(nil), w.segs[k:]...)
	w.frames -= removed
	w.trimmed += removed
	if w.frames == 0 {
		w.epochs = nil // the log holds no frame; lastEpoch stays (= prevEpoch)
	} else {
		i := sort.Search(len(w.epochs), func(i int) bool { return w.epochs[i].FirstSeq > newBase })
		w.epochs = append([]epochStart(nil), w.epochs[i-1:]...)
		w.epochs[0].FirstSeq = max(w.epochs[0].FirstSeq, newBase)
	}
	w.base, w.baseEpoch, w.firstSeq = newBase, prevEpoch, newBase
	w.notifyLocked()
	w.mu.Unlock()

	closeSegs(dead)
	if err := w.fault("trim-before-delete"); err != nil {
		return newBase, err
	}
	for _, sg := range dead {
		if err := w.fs.Remove(joinDir(w.dir, sg.name)); err != nil && !isNotExist(err) {
			w.log.WithFields(logrus.Fields{"dir": w.dir, "file": sg.name, "error": err.Error()}).
				Warn("WAL_SEGMENT_REMOVE_FAILED: the next start removes it")
		}
	}
	if err := w.fs.SyncDir(w.dir); err != nil {
		w.log.WithFields(logrus.Fields{"dir": w.dir, "error": err.Error()}).Warn("WAL_SEGMENT_REMOVE_FAILED: directory fsync")
	}
	w.log.WithFields(logrus.Fields{"dir": w.dir, "base": newBase, "frames": removed, "segments": len(dead)}).Info("WAL_TRIMMED")
	return newBase, nil
}

// Rebase discards this log and restarts it empty at newBase, whose
// predecessor had prevEpoch: a follower too far behind a leader whose WAL
// was trimmed past it. Everything below newBase is committed cluster-wide.
// Frames above safe_seq are discarded with it; frames at or below safe_seq
// above newBase-1 would be lost, so that is refused.
//
// telemetry.wal is replaced by an empty segment flagged as the log's
// beginning, then telemetry.base is written, then the sealed segments go;
// recovery finishes a rebase a crash interrupted from the flag.
func (w *WAL) Rebase(newBase, prevEpoch uint64) error {
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	w.fileMu.Lock()
	defer w.fileMu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usableLocked(); err != nil {
		return err
	}
	if w.safeSeq > newBase-1 && w.safeSeq <= w.lastSeq {
		return w.failNowLocked(fmt.Errorf("%w: rebase to %d would drop committed frames up to safe_seq=%d", ErrTruncateCommitted, newBase, w.safeSeq))
	}
	if err := w.writePendingLocked(); err != nil {
		return err
	}
	h := segHeader{ID: w.id, First: newBase, PrevEpoch: prevEpoch, Flags: segFlagBase}
	nf, err := replaceActive(w.fs, w.dir, h, w.fault, "rebase")
	if err == nil {
		if err = saveBase(w.dir, baseState{Base: newBase, PrevEpoch: prevEpoch}); err != nil {
			nf.Close()
		}
	}
	if err != nil {
		return w.failNowLocked(fmt.Errorf("%w: rebasing: %v", ErrFailed, err))
	}
	old := w.segs
	for _, sg := range old[:len(old)-1] {
		if sg.f != nil {
			sg.f.Close()
		}
		if err := w.fs.Remove(joinDir(w.dir, sg.name)); err != nil && !isNotExist(err) {
			w.log.WithFields(logrus.Fields{"dir": w.dir, "file": sg.name, "error": err.Error()}).
				Warn("WAL_SEGMENT_REMOVE_FAILED: the next start removes it")
		}
	}
	if f := old[len(old)-1].f; f != nil {
		f.Close()
	}
	if err := w.fs.SyncDir(w.dir); err != nil {
		return w.failNowLocked(fmt.Errorf("%w: rebasing: %v", ErrFailed, err))
	}
	ns := newActiveSeg(h, nf)
	w.segs, w.disk = []*segment{ns}, ns
	w.trimmed += w.frames
	w.base, w.baseEpoch = newBase, prevEpoch
	w.firstSeq, w.lastSeq, w.lastEpoch = newBase, newBase-1, prevEpoch
	w.frames, w.epochs = 0, nil
	w.writtenSeq, w.durableSeq = newBase-1, newBase-1
	w.truncs = append(w.truncs, 0) // indexes over the log must start over
	if w.safeSeq < newBase-1 {
		w.safeSeq = newBase - 1
	}
	w.notifyLocked()
	w.log.WithFields(logrus.Fields{"dir": w.dir, "base": newBase}).Warn("WAL_REBASED: the leader no longer holds the frames this node lacked")
	return nil
}

// Retention bounds a WAL. Zero disables a bound.
type Retention struct {
	// MaxBytes bounds the retained frames' bytes.
	MaxBytes int64
	// MaxAge drops frames older than this (by their timestamp).
	MaxAge time.Duration
	// Interval is how often the bounds are checked.
	Interval time.Duration
	// BeforeTrim, if set, is called with the new base before frames are
	// dropped, so derived state (fleet summary, idempotency ids) can be
	// checkpointed. An error cancels this trim.
	BeforeTrim func(newBase uint64) error
	// Bounds, if set, is read at every check and replaces MaxBytes and
	// MaxAge: bounds that change while the node runs (live settings).
	Bounds func() (maxBytes int64, maxAge time.Duration)
}

// RunRetention trims w within r's bounds until ctx ends.
func (w *WAL) RunRetention(ctx context.Context, r Retention) {
	if r.Bounds == nil && r.MaxBytes <= 0 && r.MaxAge <= 0 {
		return
	}
	if r.Interval <= 0 {
		r.Interval = time.Second
	}
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		cur := r
		if r.Bounds != nil {
			cur.MaxBytes, cur.MaxAge = r.Bounds()
		}
		w.setRetentionBytes(cur.MaxBytes)
		if cur.MaxBytes <= 0 && cur.MaxAge <= 0 {
			continue
		}
		nb := w.retentionBase(cur)
		if nb == 0 {
			continue
		}
		if r.BeforeTrim != nil {
			if err := r.BeforeTrim(nb); err != nil {
				w.log.WithError(err).Warn("WAL_TRIM_DEFERRED: checkpoint failed")
				continue
			}
		}
		if _, err := w.TrimTo(nb); err != nil && !errors.Is(err, ErrClosed) {
			w.log.WithError(err).Error("WAL_TRIM_FAILED")
		}
	}
}

// setRetentionBytes keeps segments at most a quarter of a retention size
// bound (and at least MinSegmentBytes, at most Options.SegmentBytes), so
// that deleting whole segments can keep the WAL near the bound even when a
// live setting lowers it below the configured segment size. 0 (no size
// bound) restores Options.SegmentBytes. Segments already written keep their
// size.
func (w *WAL) setRetentionBytes(maxBytes int64) {
	rb := w.opts.SegmentBytes
	if maxBytes > 0 {
		rb = min(rb, max(maxBytes/4, MinSegmentBytes))
	}
	w.mu.Lock()
	w.rollBytes = rb
	w.mu.Unlock()
}

// retentionBase returns the base that brings the WAL within r, or 0 when
// nothing needs trimming. It only reads the index and frame headers. TrimTo
// rounds it down to a segment's first Seq.
func (w *WAL) retentionBase(r Retention) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.frames <= indexStride {
		return 0
	}
	var nb uint64
	if r.MaxBytes > 0 {
		// The first segment from which the rest fits the bound.
		var total int64
		for _, sg := range w.segs {
			total += sg.end - sg.start
		}
		for _, sg := range w.segs {
			if total <= r.MaxBytes {
				break
			}
			total -= sg.end - sg.start
			nb = sg.last + 1
		}
	}
	if r.MaxAge > 0 {
		// Frame timestamps are wall-clock readings (the leader's), so a
		// clock step must not make young frames look old (DESIGN §6 rule
		// 13). Two bounds, both required: the timestamp is older than MaxAge
		// by this process's clock as it would read without steps since
		// Open; and frames this process appended itself have also been held
		// MaxAge of monotonic time (a leader whose clock runs behind stamps
		// new frames in the past). Frames found on disk at Open have only
		// their timestamps.
		clk := w.opts.Clock
		unstepped := w.anchor.Add(clk.Since(w.anchor))
		if skew := clk.Now().Sub(unstepped); (skew > time.Minute || skew < -time.Minute) && !w.jumpWarned {
			w.jumpWarned = true
			w.log.WithFields(logrus.Fields{"dir": w.dir, "skew_ms": skew.Milliseconds()}).
				Warn("WAL_RETENTION_CLOCK_STEP: the wall clock moved since start; age retention keeps counting monotonic time")
		}
		cutoff := unstepped.Add(-r.MaxAge).UnixNano()
		// The index entries of every segment, in Seq order.
		type entry struct {
			seg *segment
			k   int
		}
		var ents []entry
		for _, sg := range w.segs {
			for k := range sg.index {
				ents = append(ents, entry{sg, k})
			}
		}
		var hdr [FrameHeaderSize]byte
		i := sort.Search(len(ents), func(i int) bool {
			sg, k := ents[i].seg, ents[i].k
			if seen := sg.seen[k]; !seen.IsZero() && clk.Since(seen) < r.MaxAge {
				return true
			}
			if sg.f == nil || sg.index[k] >= sg.written {
				return true // not written yet: young
			}
			if _, err := sg.f.ReadAt(hdr[:], sg.index[k]); err != nil {
				return true
			}
			return int64(binary.LittleEndian.Uint64(hdr[24:])) >= cutoff
		})
		if i > 0 {
			at := w.lastSeq + 1
			if i < len(ents) {
				at = ents[i].seg.first + uint64(ents[i].k)*indexStride
			}
			nb = max(nb, at)
		}
	}
	if nb <= w.firstSeq {
		return 0
	}
	return nb
}

// BytesOnDisk returns the sum of the segment files' sizes: what retention
// bounds, and what a copy of the directory copies (no file is sparse, except
// a format-version-1 file sealed by the upgrade, until retention removes it).
func (w *WAL) BytesOnDisk() int64 {
	w.fileMu.RLock()
	defer w.fileMu.RUnlock()
	w.mu.Lock()
	var fs []segFile
	for _, sg := range w.segs {
		if sg.f != nil {
			fs = append(fs, sg.f)
		}
	}
	w.mu.Unlock()
	var n int64
	for _, f := range fs {
		if sz, err := f.Size(); err == nil {
			n += sz
		}
	}
	return n
}

// Trimmed returns how many frames retention dropped since Open.
func (w *WAL) Trimmed() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.trimmed
}
