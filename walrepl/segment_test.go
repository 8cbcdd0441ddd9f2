package walrepl

// The segment layer (issue 14): bounded files, rolls, truncations into
// sealed segments and rebases, each crash point driven by the WAL's
// failpoints (Options.Inject) and recovered by the next Open alone.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// armed is an Inject hook that fails at one point once armed.
type armed struct{ point atomic.Pointer[string] }

func (a *armed) arm(p string) { a.point.Store(&p) }
func (a *armed) inject(p string) error {
	if q := a.point.Load(); q != nil && *q == p {
		return fmt.Errorf("injected crash at %s", p)
	}
	return nil
}

// appendUntilFail appends one frame at a time until the WAL fails and
// returns the last Seq that was acknowledged (durable) before it did.
func appendUntilFail(t *testing.T, w *WAL, epoch uint64, size int) uint64 {
	t.Helper()
	pad := make([]byte, size)
	for i := range pad {
		pad[i] = 'y'
	}
	var acked uint64
	for i := 0; i < 10000; i++ {
		_, last, err := w.Append(epoch, FrameEvent, time.Now().UnixNano(), [][]byte{[]byte(fmt.Sprintf(`{"n":%d,"p":%q}`, i, pad))})
		if err == nil {
			err = w.WaitDurable(context.Background(), last)
		}
		if err != nil {
			return acked
		}
		acked = last
	}
	t.Fatal("the WAL never failed")
	return 0
}

func verifyClean(t *testing.T, dir string) *Report {
	t.Helper()
	rep, err := Verify(dir, true, 0)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if rep.TornTail || len(rep.Repairs) > 0 {
		t.Fatalf("Verify after a clean restart still finds work: %+v", rep)
	}
	return rep
}

// Every crash point of a roll recovers without an operator and keeps every
// acknowledged frame.
func TestSegment_rollCrashPoints(t *testing.T) {
	for _, point := range []string{"roll-after-next", "roll-after-link", "roll-after-rename"} {
		t.Run(point, func(t *testing.T) {
			dir := t.TempDir()
			var a armed
			w := openSegWAL(t, dir, MinSegmentBytes, a.inject)
			first := appendN(t, w, 1, 60, 100) // a few rolls already
			want, err := w.ReadFrames(1, first, 1<<20, 64<<20)
			if err != nil {
				t.Fatal(err)
			}
			a.arm(point)
			acked := appendUntilFail(t, w, 1, 100)
			if w.Err() == nil {
				t.Fatal("the failpoint did not fail the WAL")
			}
			w.crash()
			rep, err := Verify(dir, true, 0)
			if err != nil {
				t.Fatalf("Verify after a crash at %s: %v", point, err)
			}
			t.Logf("crash at %s after Seq=%d: repairs %q", point, acked, rep.Repairs)
			w2 := openSegWAL(t, dir, MinSegmentBytes, nil)
			if last, _, _, _ := w2.Positions(); last < acked {
				t.Fatalf("lost acknowledged frames: last %d < acked %d", last, acked)
			}
			got, err := w2.ReadFrames(1, first, 1<<20, 64<<20)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("%d frames after the restart, want %d", len(got), len(want))
			}
			for i := range got {
				if !sameFrame(got[i], want[i]) {
					t.Fatalf("frame Seq=%d changed", got[i].Seq)
				}
			}
			if fileExistsT(t, filepath.Join(dir, NextFile)) {
				t.Fatal("telemetry.wal.next survived the restart")
			}
			appendN(t, w2, 2, 60, 100) // rolls again, onto the same names
			w2.Close()
			verifyClean(t, dir)
		})
	}
}

// A long ingest with a small segment bound: no file grows past the bound
// plus one frame, the directory stays within the retention bound plus one
// segment, trims delete files, and BytesOnDisk is the files' sizes.
func TestSegment_longIngestBounded(t *testing.T) {
	const segBytes, maxBytes, size = 16 << 10, 128 << 10, 700
	dir := t.TempDir()
	w := openSegWAL(t, dir, segBytes, nil)
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.RunRetention(ctx, Retention{MaxBytes: maxBytes, Interval: 5 * time.Millisecond})
	}()
	maxFrame := int64(FrameHeaderSize + size + 40)
	var removedSeen bool
	for batch := 0; batch < 60; batch++ { // 60 × 50 × ~740 B ≈ 2.2 MB, 17 × the bound
		appendN(t, w, 1, 50, size)
		names, total := segFiles(t, dir)
		for _, n := range names {
			st, err := os.Stat(filepath.Join(dir, n))
			if err != nil {
				continue // retention removed it meanwhile
			}
			if st.Size() > segBytes+maxFrame {
				t.Fatalf("%s has %d bytes, bound %d plus one frame", n, st.Size(), segBytes)
			}
		}
		if first, ok := parseSealedName(names[0]); ok && first > 1 {
			removedSeen = true
		}
		_ = total
	}
	waitFor(t, 5*time.Second, "retention to bring the directory within its bound", func() bool {
		_, total := segFiles(t, dir)
		return total <= maxBytes+segBytes+maxFrame
	})
	cancel()
	<-done
	names, total := segFiles(t, dir)
	if !removedSeen || w.Trimmed() == 0 {
		t.Fatalf("retention deleted no segment (files %v)", names)
	}
	if bod := w.BytesOnDisk(); bod != total {
		t.Fatalf("BytesOnDisk %d, the segment files' sizes sum to %d", bod, total)
	}
	if st := w.Status(); st.BytesOnDisk != total || st.Segments != len(names) {
		t.Fatalf("Status %+v, files %v (%d bytes)", st, names, total)
	}
	b, _ := w.Base()
	for _, n := range names {
		if first, ok := parseSealedName(n); ok && first < b {
			t.Fatalf("%s is below the base %d", n, b)
		}
	}
	t.Logf("%d files, %d bytes, base %d, trimmed %d frames", len(names), total, b, w.Trimmed())
}

// segmentLayout returns the first Seq of every segment, the active last.
func segmentLayout(w *WAL) []uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []uint64
	for _, s := range w.segs {
		out = append(out, s.first)
	}
	return out
}

// TruncateAfter into a sealed segment: the sealed segments above the point
// go, the one holding it is cut after it, telemetry.wal begins after it; a
// crash at each step recovers to the same log.
func TestSegment_truncateIntoSealed(t *testing.T) {
	for _, point := range []string{"", "truncate-after-rename", "truncate-before-cut"} {
		t.Run("crash at "+point, func(t *testing.T) {
			dir := t.TempDir()
			var a armed
			w := openSegWAL(t, dir, MinSegmentBytes, a.inject)
			appendN(t, w, 1, 120, 100)
			w.mu.Lock()
			w.safeSeq, w.persistedSafe = 10, 10 // frames above 10 are not committed
			w.mu.Unlock()
			writeSafeSeq(dir, 10)
			layout := segmentLayout(w)
			if len(layout) < 4 {
				t.Fatalf("layout %v: want at least four segments", layout)
			}
			keep := layout[1] + 3 // inside the second segment
			want, _ := w.ReadFrames(1, keep, 1<<20, 64<<20)
			if point != "" {
				a.arm(point)
			}
			err := w.TruncateAfter(keep)
			if point == "" {
				if err != nil {
					t.Fatal(err)
				}
			} else {
				if err == nil {
					t.Fatal("the failpoint did not stop the truncation")
				}
				w.crash()
				if _, err := Verify(dir, true, 0); err != nil {
					t.Fatalf("Verify after a crash at %s: %v", point, err)
				}
				w = openSegWAL(t, dir, MinSegmentBytes, nil)
			}
			defer w.Close()
			if last, _, _, _ := w.Positions(); last != keep {
				t.Fatalf("last Seq %d after truncating to %d", last, keep)
			}
			if got := segmentLayout(w); len(got) != 3 || got[2] != keep+1 {
				t.Fatalf("layout %v after truncating to %d (was %v)", got, keep, layout)
			}
			names, _ := segFiles(t, dir)
			if len(names) != 3 {
				t.Fatalf("files %v", names)
			}
			got, err := w.ReadFrames(1, keep, 1<<20, 64<<20)
			if err != nil || len(got) != len(want) {
				t.Fatalf("read %d frames (%v), want %d", len(got), err, len(want))
			}
			for i := range got {
				if !sameFrame(got[i], want[i]) {
					t.Fatalf("frame Seq=%d changed", got[i].Seq)
				}
			}
			// A new epoch continues from keep+1 and rolls.
			last := appendN(t, w, 5, 80, 100)
			w.Close()
			rep := verifyClean(t, dir)
			if rep.LastSeq != last || rep.LastEpoch != 5 {
				t.Fatalf("Verify: %+v", rep)
			}
		})
	}
}

// Truncating every frame (to base-1) replaces telemetry.wal with a segment
// that begins the log, and the sealed segments go.
func TestSegment_truncateEverything(t *testing.T) {
	dir := t.TempDir()
	w := openSegWAL(t, dir, MinSegmentBytes, nil)
	appendN(t, w, 1, 100, 100)
	w.mu.Lock()
	w.safeSeq, w.persistedSafe = 0, 0
	w.mu.Unlock()
	writeSafeSeq(dir, 0)
	if err := w.TruncateAfter(0); err != nil {
		t.Fatal(err)
	}
	if names, _ := segFiles(t, dir); len(names) != 1 {
		t.Fatalf("files %v", names)
	}
	appendN(t, w, 3, 5, 10)
	w.Close()
	if rep := verifyClean(t, dir); rep.LastSeq != 5 || rep.FirstSeq != 1 {
		t.Fatalf("%+v", rep)
	}
}

// A rebase interrupted after telemetry.wal was replaced finishes at the
// next start: the base is recorded from the segment's BASE flag and the old
// segments go.
func TestSegment_rebaseCrash(t *testing.T) {
	dir := t.TempDir()
	var a armed
	w := openSegWAL(t, dir, MinSegmentBytes, a.inject)
	appendN(t, w, 1, 100, 100)
	a.arm("rebase-after-rename")
	if err := w.Rebase(5000, 7); err == nil {
		t.Fatal("the failpoint did not stop the rebase")
	}
	w.crash()
	rep, err := Verify(dir, true, 0)
	if err != nil || rep.Base != 5000 || rep.LastSeq != 4999 || len(rep.Repairs) == 0 {
		t.Fatalf("Verify after the crash: %+v, %v", rep, err)
	}
	w = openSegWAL(t, dir, MinSegmentBytes, nil)
	if b, e := w.Base(); b != 5000 || e != 7 {
		t.Fatalf("base %d epoch %d", b, e)
	}
	appendN(t, w, 8, 50, 100)
	w.Close()
	bs, _, _ := loadBase(dir)
	if bs.Base != 5000 || bs.PrevEpoch != 7 {
		t.Fatalf("telemetry.base %+v", bs)
	}
	if rep := verifyClean(t, dir); rep.FirstSeq != 5000 || rep.LastSeq != 5049 {
		t.Fatalf("%+v", rep)
	}
}

// Options.SegmentBytes is validated.
func TestSegment_optionsValidate(t *testing.T) {
	o := DefaultOptions(t.TempDir())
	if o.SegmentBytes != DefaultSegmentBytes {
		t.Fatalf("default %d", o.SegmentBytes)
	}
	o.SegmentBytes = MinSegmentBytes - 1
	if err := o.Validate(); err == nil {
		t.Fatal("a segment bound below the minimum was accepted")
	}
}

// A trim while a roll is queued (the next frame begins a segment the
// flusher has not created yet) never deletes telemetry.wal.
func TestSegment_trimWithQueuedRoll(t *testing.T) {
	dir := t.TempDir()
	w := openSegWAL(t, dir, MinSegmentBytes, nil)
	defer w.Close()
	last := appendN(t, w, 1, 100, 100)
	for { // fill telemetry.wal to its bound, every frame durable and committed
		w.mu.Lock()
		full := w.disk.end >= w.opts.SegmentBytes && w.segs[len(w.segs)-1] == w.disk
		w.mu.Unlock()
		if full {
			break
		}
		last = appendN(t, w, 1, 1, 100)
	}
	w.mu.Lock() // the next frame begins a new segment; the roll stays queued
	w.queueLocked(&Frame{Seq: w.lastSeq + 1, Epoch: 1, Type: FrameEvent, Payload: []byte(`{"queued":true}`)})
	if w.segs[len(w.segs)-1] == w.disk {
		t.Fatal("test setup: no roll was queued")
	}
	w.mu.Unlock()
	if _, err := w.TrimTo(last + 1); err != nil {
		t.Fatal(err)
	}
	if !fileExistsT(t, filepath.Join(dir, WALFile)) {
		t.Fatal("telemetry.wal was deleted")
	}
	w.kickFlusher()
	l, _, _, _ := w.Positions()
	if err := w.WaitDurable(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	w.SetSafeSeq(l)
	w.Close()
	if rep, err := Verify(dir, true, 0); err != nil || rep.LastSeq != l {
		t.Fatalf("Verify: %+v, %v", rep, err)
	}
}

// A retention size bound lowered below the configured segment size (a live
// setting) shrinks the segments written from then on to a quarter of it, so
// that trims of whole segments keep the WAL near the bound.
func TestSegment_retentionBoundShrinksSegments(t *testing.T) {
	const segBytes, size = 1 << 20, 500
	dir := t.TempDir()
	w := openSegWAL(t, dir, segBytes, nil)
	defer w.Close()
	var bound atomic.Int64 // none at first
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.RunRetention(ctx, Retention{Interval: 5 * time.Millisecond,
			Bounds: func() (int64, time.Duration) { return bound.Load(), 0 }})
	}()
	appendN(t, w, 1, 400, size) // ~215 KB in telemetry.wal
	bound.Store(128 << 10)
	waitFor(t, 5*time.Second, "the new roll bound", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.rollBytes == 32<<10
	})
	for i := 0; i < 20; i++ {
		appendN(t, w, 1, 50, size)
	}
	maxFrame := int64(FrameHeaderSize + size + 40)
	waitFor(t, 5*time.Second, "the WAL within the lowered bound", func() bool {
		_, total := segFiles(t, dir)
		return total <= 128<<10+32<<10+maxFrame
	})
	cancel()
	<-done
	names, total := segFiles(t, dir)
	for _, n := range names {
		st, err := os.Stat(filepath.Join(dir, n))
		if err == nil && st.Size() > 32<<10+maxFrame {
			t.Fatalf("%s has %d bytes under a 128 KiB retention bound", n, st.Size())
		}
	}
	if len(names) < 3 {
		t.Fatalf("files %v", names)
	}
	t.Logf("%d files, %d bytes, %d frames trimmed", len(names), total, w.Trimmed())
}
