package walrepl

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// Retention keeps telemetry.wal bounded (issue 8). The retained frames stay
// where they are: trimming moves the base forward in telemetry.base and then
// punches a hole over the trimmed bytes (fallocate PUNCH_HOLE), so nothing
// kept is ever rewritten and the file keeps its name and meaning.
//
// Crash safety: telemetry.base is replaced atomically before the hole is
// punched. A crash before that leaves the old base (nothing trimmed); a
// crash after it leaves the new base with some bytes not yet punched, which
// recovery never reads. Only frames at or below safe_seq (and fsynced) are
// trimmed, in whole index strides.

// ErrBelowBase: the frames asked for were trimmed.
var ErrBelowBase = errors.New("walrepl: frames below the WAL's base were trimmed")

// punchHole deallocates [off, off+n) of f, keeping its size.
func punchHole(f *os.File, off, n int64) error {
	const fallocPunchHole, fallocKeepSize = 0x02, 0x01
	if n <= 0 {
		return nil
	}
	return syscall.Fallocate(int(f.Fd()), fallocPunchHole|fallocKeepSize, off, n)
}

const holeBlock = 4096

// TrimTo drops every frame below newBase. newBase-1 must be committed
// (≤ safe_seq) and fsynced; it is rounded down to an index stride. It
// returns the base in effect afterwards.
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
	k := (newBase - w.firstSeq) / indexStride
	if k == 0 {
		b := w.base
		w.mu.Unlock()
		return b, nil
	}
	newBase = w.firstSeq + k*indexStride
	off := w.end // every frame goes (newBase is lastSeq+1, at a stride boundary)
	if k < uint64(len(w.index)) {
		off = w.index[k]
	}
	prevEpoch, _ := w.epochAtLocked(newBase - 1)
	oldOffset := w.baseOffset
	w.mu.Unlock()

	if err := w.fault("trim-before-base"); err != nil {
		return 0, err
	}
	if err := saveBase(w.dir, baseState{Base: newBase, Offset: off, PrevEpoch: prevEpoch}); err != nil {
		w.mu.Lock()
		w.failLocked(fmt.Errorf("%w: writing %s: %v", ErrFailed, BaseFile, err))
		w.notifyLocked()
		w.mu.Unlock()
		return 0, err
	}
	w.mu.Lock()
	removed := newBase - w.firstSeq
	w.index = append([]int64(nil), w.index[k:]...)
	w.indexSeen = append([]time.Time(nil), w.indexSeen[k:]...)
	w.frames -= removed
	w.trimmed += removed
	if w.frames == 0 {
		w.epochs = nil // the log holds no frame; lastEpoch stays (= prevEpoch)
	} else {
		i := sort.Search(len(w.epochs), func(i int) bool { return w.epochs[i].FirstSeq > newBase })
		w.epochs = append([]epochStart(nil), w.epochs[i-1:]...)
		w.epochs[0].FirstSeq = max(w.epochs[0].FirstSeq, newBase)
	}
	w.base, w.baseOffset, w.baseEpoch, w.firstSeq = newBase, off, prevEpoch, newBase
	w.notifyLocked()
	w.mu.Unlock()

	if err := w.fault("trim-before-punch"); err != nil {
		return newBase, err
	}
	// Whole blocks only, never the header's block.
	from := max(holeBlock, oldOffset/holeBlock*holeBlock)
	to := off / holeBlock * holeBlock
	if err := punchHole(w.f, from, to-from); err != nil && to > from {
		w.log.WithFields(logrus.Fields{"dir": w.dir, "error": err.Error()}).
			Warn("WAL_PUNCH_HOLE_FAILED: trimmed frames stay allocated on this filesystem")
	}
	w.log.WithFields(logrus.Fields{"dir": w.dir, "base": newBase, "frames": removed}).Info("WAL_TRIMMED")
	return newBase, nil
}

// Rebase discards this log and restarts it empty at newBase, whose
// predecessor had prevEpoch: a follower too far behind a leader whose WAL
// was trimmed past it. Everything below newBase is committed cluster-wide.
// Frames above safe_seq are discarded with it; frames at or below safe_seq
// above newBase-1 would be lost, so that is refused.
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
	end := w.end
	if err := fdatasync(w.f); err != nil {
		w.failLocked(fmt.Errorf("%w: %v", ErrFailed, err))
		w.notifyLocked()
		return w.failed
	}
	if err := saveBase(w.dir, baseState{Base: newBase, Offset: end, PrevEpoch: prevEpoch}); err != nil {
		w.failLocked(fmt.Errorf("%w: writing %s: %v", ErrFailed, BaseFile, err))
		w.notifyLocked()
		return w.failed
	}
	from := max(holeBlock, w.baseOffset/holeBlock*holeBlock)
	punchHole(w.f, from, end/holeBlock*holeBlock-from)
	w.trimmed += w.frames
	w.base, w.baseOffset, w.baseEpoch = newBase, end, prevEpoch
	w.firstSeq, w.lastSeq, w.lastEpoch = newBase, newBase-1, prevEpoch
	w.frames, w.index, w.indexSeen, w.epochs = 0, nil, nil, nil
	w.pendingFrom, w.writtenEnd = end, end
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

// retentionBase returns the base that brings the WAL within r, or 0 when
// nothing needs trimming. It only reads the index and frame headers.
func (w *WAL) retentionBase(r Retention) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.frames <= indexStride {
		return 0
	}
	var nb uint64
	if r.MaxBytes > 0 && w.end-w.baseOffset > r.MaxBytes {
		// The first index entry from which the rest fits the bound.
		k := sort.Search(len(w.index), func(k int) bool { return w.end-w.index[k] <= r.MaxBytes })
		if k < len(w.index) {
			nb = w.firstSeq + uint64(k)*indexStride
		} else {
			nb = w.lastSeq + 1
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
		var hdr [FrameHeaderSize]byte
		k := sort.Search(len(w.index), func(k int) bool {
			if seen := w.indexSeen[k]; !seen.IsZero() && clk.Since(seen) < r.MaxAge {
				return true
			}
			if _, err := w.f.ReadAt(hdr[:], w.index[k]); err != nil {
				return true
			}
			return int64(binary.LittleEndian.Uint64(hdr[24:])) >= cutoff
		})
		if k > 0 {
			nb = max(nb, w.firstSeq+uint64(k)*indexStride)
		}
	}
	if nb <= w.firstSeq {
		return 0
	}
	return nb
}

// BytesOnDisk returns the WAL file's allocated bytes (what du counts).
func (w *WAL) BytesOnDisk() int64 {
	st, err := w.f.Stat()
	if err != nil {
		return 0
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return sys.Blocks * 512
	}
	return st.Size()
}

// Trimmed returns how many frames retention dropped since Open.
func (w *WAL) Trimmed() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.trimmed
}
