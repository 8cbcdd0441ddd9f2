package walrepl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func appendN(t *testing.T, w *WAL, epoch uint64, n int, size int) uint64 {
	t.Helper()
	pad := make([]byte, size)
	for i := range pad {
		pad[i] = 'x'
	}
	var last uint64
	for i := 0; i < n; i++ {
		var err error
		_, last, err = w.Append(epoch, FrameEvent, time.Now().UnixNano(), [][]byte{[]byte(fmt.Sprintf(`{"i":%d,"pad":%q}`, i, pad))})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.WaitDurable(context.Background(), last); err != nil {
		t.Fatal(err)
	}
	w.SetSafeSeq(last)
	w.persistSafeSeq()
	return last
}

// testSegmentBytes is the segment bound of the package's tests: small, so
// that every test crosses segment boundaries.
const testSegmentBytes = 16 << 10

func openSegWAL(t *testing.T, dir string, segBytes int64, inject func(string) error) *WAL {
	t.Helper()
	o := DefaultOptions(dir)
	o.Logger = quietLogger()
	o.SegmentBytes = segBytes
	o.Inject = inject
	w, _, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return w
}

// segFiles lists the sealed segments and telemetry.wal in dir, with the sum
// of their sizes.
func segFiles(t *testing.T, dir string) (names []string, total int64) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if _, ok := parseSealedName(e.Name()); ok || e.Name() == WALFile {
			st, err := os.Stat(filepath.Join(dir, e.Name()))
			if errors.Is(err, os.ErrNotExist) {
				continue // retention removed it meanwhile
			}
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, e.Name())
			total += st.Size()
		}
	}
	return names, total
}

// TestRetention_trimAndRestart: trimming deletes whole sealed segments below
// the new base (rounded down to a segment boundary), keeps every retained
// frame byte for byte, and survives a restart.
func TestRetention_trimAndRestart(t *testing.T) {
	dir := t.TempDir()
	w := openSegWAL(t, dir, 64<<10, nil)
	last := appendN(t, w, 1, 2000, 1000)
	names, before := segFiles(t, dir)
	if len(names) < 20 {
		t.Fatalf("%d segment files for 2 MB at 64 KiB each", len(names))
	}
	if bod := w.BytesOnDisk(); bod != before {
		t.Fatalf("BytesOnDisk %d, the files' sizes sum to %d", bod, before)
	}
	const asked = uint64(1281)
	w.mu.Lock()
	want := w.segs[w.segIndexLocked(asked)].first
	w.mu.Unlock()
	if want == asked || want == 1 {
		t.Fatalf("test setup: Seq=%d should fall inside a later segment (it starts at %d)", asked, want)
	}
	kept := func(w *WAL) []Frame {
		fs, err := w.ReadFrames(want, last, 10000, 64<<20)
		if err != nil {
			t.Fatal(err)
		}
		return fs
	}
	wantFrames := kept(w)
	if len(wantFrames) != int(last-want+1) {
		t.Fatalf("a read across segments returned %d frames, want %d", len(wantFrames), last-want+1)
	}
	base, err := w.TrimTo(asked)
	if err != nil || base != want {
		t.Fatalf("TrimTo(%d): base %d err %v, want the first Seq %d of the segment holding it", asked, base, err, want)
	}
	after, size := segFiles(t, dir)
	if len(after) >= len(names) || size > before-int64(want-1)*1000 {
		t.Fatalf("files %d → %d, bytes %d → %d: the trimmed segments were not deleted", len(names), len(after), before, size)
	}
	for _, n := range after {
		if first, ok := parseSealedName(n); ok && first < want {
			t.Fatalf("%s is still there below the base %d", n, want)
		}
	}
	if bod := w.BytesOnDisk(); bod != size {
		t.Fatalf("BytesOnDisk %d after the trim, the files' sizes sum to %d", bod, size)
	}
	if _, err := w.ReadFrames(1, last, 1, 1<<20); err == nil {
		t.Fatal("a trimmed frame is still readable")
	}
	w.Close()
	w = openTestWAL(t, dir)
	defer w.Close()
	got := kept(w)
	if len(got) != len(wantFrames) {
		t.Fatalf("after restart %d frames, want %d", len(got), len(wantFrames))
	}
	for i := range got {
		if !sameFrame(got[i], wantFrames[i]) {
			t.Fatalf("frame Seq=%d changed", got[i].Seq)
		}
	}
	if st := w.Status(); st.Base != want || st.FirstSeq != want || st.LastSeq != last {
		t.Fatalf("status after restart: %+v", st)
	}
	// The frames continue at last+1.
	appendN(t, w, 2, 10, 10)
	rep, err := Verify(dir, true, 0)
	if err != nil || rep.Base != want || rep.LastSeq != last+10 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

// TestRetention_neverAboveSafeSeq: frames above safe_seq are never trimmed.
func TestRetention_neverAboveSafeSeq(t *testing.T) {
	dir := t.TempDir()
	w := openSegWAL(t, dir, MinSegmentBytes, nil)
	defer w.Close()
	appendN(t, w, 1, 300, 100)
	w2safe := uint64(100)
	// Raise durability but hold safe_seq back: a fresh WAL at safe 100.
	w.mu.Lock()
	w.safeSeq, w.persistedSafe = w2safe, w2safe
	w.mu.Unlock()
	base, err := w.TrimTo(1000)
	if err != nil {
		t.Fatal(err)
	}
	if base == 1 || base-1 > w2safe {
		t.Fatalf("trimmed up to Seq=%d with safe_seq=%d", base-1, w2safe)
	}
}

// TestRetention_crashDuringTrim: a crash before or after telemetry.base is
// replaced, before the segments below it are deleted, recovers with every
// retained frame and no fail-hard; the next start deletes the leftovers.
func TestRetention_crashDuringTrim(t *testing.T) {
	for _, point := range []string{"trim-before-base", "trim-before-delete"} {
		t.Run(point, func(t *testing.T) {
			dir := t.TempDir()
			var fail string
			w := openSegWAL(t, dir, MinSegmentBytes, func(p string) error {
				if p == fail {
					return fmt.Errorf("injected crash at %s", p)
				}
				return nil
			})
			last := appendN(t, w, 1, 500, 100)
			w.mu.Lock()
			want := w.segs[w.segIndexLocked(257)].first
			w.mu.Unlock()
			fail = point
			w.TrimTo(257)
			w.crash()
			before, _ := segFiles(t, dir)
			rep, err := Verify(dir, true, 0)
			if err != nil {
				t.Fatalf("Verify after a crash at %s: %v", point, err)
			}
			if point == "trim-before-delete" && len(rep.Repairs) == 0 {
				t.Fatalf("Verify reports no leftover segments below the base: %+v", rep)
			}
			w2 := openTestWAL(t, dir)
			defer w2.Close()
			st := w2.Status()
			if st.LastSeq != last || (point == "trim-before-base" && st.Base != 1) || (point == "trim-before-delete" && st.Base != want) {
				t.Fatalf("after a crash at %s: %+v (want base %d)", point, st, want)
			}
			if _, err := w2.ReadFrames(st.Base, last, 10000, 64<<20); err != nil {
				t.Fatal(err)
			}
			after, _ := segFiles(t, dir)
			for _, n := range after {
				if first, ok := parseSealedName(n); ok && first < st.Base {
					t.Fatalf("%s below the base %d survived the restart (files before %v)", n, st.Base, before)
				}
			}
		})
	}
}

// TestRetention_halfDeletedRefused: a trimmed WAL whose telemetry.base is
// lost, or whose middle segment is gone, is refused (SEGMENT_MISSING), not
// read from the next segment on.
func TestRetention_halfDeletedRefused(t *testing.T) {
	dir := t.TempDir()
	w := openSegWAL(t, dir, MinSegmentBytes, nil)
	appendN(t, w, 1, 2000, 100)
	if _, err := w.TrimTo(1025); err != nil {
		t.Fatal(err)
	}
	w.Close()
	os.Remove(filepath.Join(dir, BaseFile))
	_, err := Verify(dir, true, 0)
	var re *RecoveryError
	if !errors.As(err, &re) || re.Cause != CauseSegmentMissing {
		t.Fatalf("a WAL with its oldest segments gone and no base: %v", err)
	}
}

// TestRetention_followerRebasedFromTrimmedLeader: a follower that was down
// while the leader trimmed past what it holds restarts from the new base and
// converges (issue 8).
func TestRetention_followerRebasedFromTrimmedLeader(t *testing.T) {
	c := makeCluster(t, 3)
	c.elect("n1")
	c.waitStarted("n1", 5*time.Second)
	c.mustPropose("n1", "early", 10)
	c.crash("n3")
	for i := 0; i < 40; i++ {
		c.mustPropose("n1", "while-n3-down", 50)
	}
	w1 := c.walOf("n1")
	waitFor(t, 5*time.Second, "n1 to persist safe_seq", func() bool { return w1.Status().PersistedSafeSeq >= w1.SafeSeq() })
	base, err := w1.TrimTo(w1.SafeSeq())
	if err != nil || base < 100 {
		t.Fatalf("leader trim: base %d err %v", base, err)
	}
	c.start("n3", false)
	_, l := c.mustPropose("n1", "after", 1)
	waitFor(t, 10*time.Second, "n3 to catch up from the new base", func() bool {
		w := c.walOf("n3")
		if w == nil {
			return false
		}
		_, _, durable, safe := w.Positions()
		return safe >= l && durable >= l
	})
	if b, _ := c.walOf("n3").Base(); b != base {
		t.Fatalf("n3's base is %d, want the leader's %d", b, base)
	}
	ref := c.frames("n1")
	got := c.frames("n3")
	if len(got) != len(ref) {
		t.Fatalf("n3 holds %d frames from the base, the leader %d", len(got), len(ref))
	}
	for i := range got {
		if !sameFrame(got[i], ref[i]) {
			t.Fatalf("frame Seq=%d differs", got[i].Seq)
		}
	}
}

// Trimming everything (a base one past the last frame, which retentionBase
// asks for when even the newest stride is over the byte bound) with a frame
// count that is a multiple of the index stride indexed one past the index.
// Found by review (issue 12's second reviewer); it panicked before.
func TestRetention_trimEverythingAtAStrideBoundary(t *testing.T) {
	dir := t.TempDir()
	w := openSegWAL(t, dir, MinSegmentBytes, nil)
	last := appendN(t, w, 1, 2*indexStride, 100)
	nb, err := w.TrimTo(last + 1)
	if err != nil {
		t.Fatal(err)
	}
	if nb != last+1 {
		t.Fatalf("base %d after trimming everything, want %d", nb, last+1)
	}
	next := appendN(t, w, 1, 3, 100)
	if next != last+3 {
		t.Fatalf("appended up to %d, want %d", next, last+3)
	}
	w.Close()
	w2 := openTestWAL(t, dir)
	if b, _ := w2.Base(); b != last+1 {
		t.Fatalf("base %d after restart, want %d", b, last+1)
	}
	got, err := w2.ReadFrames(last+1, last+3, 10, 1<<20)
	if err != nil || len(got) != 3 {
		t.Fatalf("read %d frames after the trimmed head (err %v), want 3", len(got), err)
	}
}
