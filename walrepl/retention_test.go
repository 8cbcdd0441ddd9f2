package walrepl

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
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

func allocated(t *testing.T, path string) int64 {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// TestRetention_trimAndRestart: trimming moves the base, frees disk space,
// keeps every retained frame byte for byte, and survives a restart.
func TestRetention_trimAndRestart(t *testing.T) {
	dir := t.TempDir()
	w := openTestWAL(t, dir)
	last := appendN(t, w, 1, 2000, 1000)
	path := filepath.Join(dir, WALFile)
	before := allocated(t, path)
	keepFrom := uint64(1281) // a stride boundary (1 + 20*64)
	kept := func(w *WAL) []Frame {
		fs, err := w.ReadFrames(keepFrom, last, 10000, 64<<20)
		if err != nil {
			t.Fatal(err)
		}
		return fs
	}
	want := kept(w)
	base, err := w.TrimTo(keepFrom)
	if err != nil || base != keepFrom {
		t.Fatalf("TrimTo: base %d err %v", base, err)
	}
	if after := allocated(t, path); after > before-1000*1000 {
		t.Fatalf("disk usage %d → %d: the trimmed frames were not freed", before, after)
	}
	if _, err := w.ReadFrames(1, last, 1, 1<<20); err == nil {
		t.Fatal("a trimmed frame is still readable")
	}
	w.Close()
	w = openTestWAL(t, dir)
	defer w.Close()
	got := kept(w)
	if len(got) != len(want) {
		t.Fatalf("after restart %d frames, want %d", len(got), len(want))
	}
	for i := range got {
		if !sameFrame(got[i], want[i]) {
			t.Fatalf("frame Seq=%d changed", got[i].Seq)
		}
	}
	if st := w.Status(); st.Base != keepFrom || st.FirstSeq != keepFrom || st.LastSeq != last {
		t.Fatalf("status after restart: %+v", st)
	}
	// The frames continue at last+1.
	appendN(t, w, 2, 10, 10)
	rep, err := Verify(dir, true, 0)
	if err != nil || rep.Base != keepFrom || rep.LastSeq != last+10 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

// TestRetention_neverAboveSafeSeq: frames above safe_seq are never trimmed.
func TestRetention_neverAboveSafeSeq(t *testing.T) {
	dir := t.TempDir()
	w := openTestWAL(t, dir)
	defer w.Close()
	appendN(t, w, 1, 300, 10)
	w2safe := uint64(100)
	// Raise durability but hold safe_seq back: a fresh WAL at safe 100.
	w.mu.Lock()
	w.safeSeq, w.persistedSafe = w2safe, w2safe
	w.mu.Unlock()
	base, err := w.TrimTo(1000)
	if err != nil {
		t.Fatal(err)
	}
	if base-1 > w2safe {
		t.Fatalf("trimmed up to Seq=%d above safe_seq=%d", base-1, w2safe)
	}
}

// TestRetention_crashDuringTrim: a crash before or after telemetry.base is
// replaced, or before the hole is punched, recovers with every retained frame
// and no fail-hard.
func TestRetention_crashDuringTrim(t *testing.T) {
	for _, point := range []string{"trim-before-base", "trim-before-punch"} {
		t.Run(point, func(t *testing.T) {
			dir := t.TempDir()
			var fail string
			o := DefaultOptions(dir)
			o.Logger = quietLogger()
			o.Inject = func(p string) error {
				if p == fail {
					return fmt.Errorf("injected crash at %s", p)
				}
				return nil
			}
			w, _, err := Open(o)
			if err != nil {
				t.Fatal(err)
			}
			last := appendN(t, w, 1, 500, 100)
			fail = point
			w.TrimTo(257)
			w.crash()
			w2 := openTestWAL(t, dir)
			defer w2.Close()
			st := w2.Status()
			if st.LastSeq != last || (point == "trim-before-base" && st.Base != 1) || (point == "trim-before-punch" && st.Base != 257) {
				t.Fatalf("after a crash at %s: %+v", point, st)
			}
			if _, err := w2.ReadFrames(st.Base, last, 10000, 64<<20); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRetention_halfDeletedRefused: a trimmed WAL whose telemetry.base is
// lost is refused like any other damage, not read from its holes.
func TestRetention_halfDeletedRefused(t *testing.T) {
	dir := t.TempDir()
	w := openTestWAL(t, dir)
	appendN(t, w, 1, 2000, 1000)
	if _, err := w.TrimTo(1025); err != nil {
		t.Fatal(err)
	}
	w.Close()
	os.Remove(filepath.Join(dir, BaseFile))
	if _, err := Verify(dir, true, 0); err == nil {
		t.Fatal("a WAL with its oldest pieces gone and no base was accepted")
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
	w := openTestWAL(t, dir)
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
