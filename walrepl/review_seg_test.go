package walrepl

// Independent review of the segmented WAL: probes for lost acknowledged
// writes under concurrency and power cuts (memFS).

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// cutFS wraps memFS so that a power cut is atomic with respect to every
// file-system call: calls hold cut.RLock while they run; the cut takes the
// write lock, marks the disk dead (every later call fails with EIO-like
// errors, as a machine that lost power would never complete them) and drops
// what was not synced.
type cutFS struct {
	m     *memFS
	cut   sync.RWMutex
	dead  atomic.Bool
	ops   atomic.Int64
	cutAt atomic.Int64 // the call that finds the power off (0: none)
}

var errDead = fmt.Errorf("cutFS: power is off")

func (c *cutFS) do(f func() error) error {
	c.cut.RLock()
	defer c.cut.RUnlock()
	if c.dead.Load() {
		return errDead
	}
	if n := c.ops.Add(1); n == c.cutAt.Load() {
		c.dead.Store(true)
		return errDead
	}
	return f()
}

func (c *cutFS) powerCut() { c.stopAll(true) }

// stopAll stops every call; with power it is a power cut (unsynced data and
// directory changes are lost), without it a killed process (the page cache
// survives).
func (c *cutFS) stopAll(power bool) {
	c.cut.Lock()
	c.dead.Store(true)
	if power {
		c.m.crash()
	}
	c.cut.Unlock()
}

func (c *cutFS) powerOn() { c.dead.Store(false) }

type cutFile struct {
	c *cutFS
	f segFile
}

func (f *cutFile) ReadAt(b []byte, off int64) (n int, err error) {
	e := f.c.do(func() error { n, err = f.f.ReadAt(b, off); return nil })
	if e != nil {
		return 0, e
	}
	return
}
func (f *cutFile) WriteAt(b []byte, off int64) (n int, err error) {
	e := f.c.do(func() error { n, err = f.f.WriteAt(b, off); return nil })
	if e != nil {
		return 0, e
	}
	return
}
func (f *cutFile) Truncate(n int64) error { return f.c.do(func() error { return f.f.Truncate(n) }) }
func (f *cutFile) Datasync() error        { return f.c.do(func() error { return f.f.Datasync() }) }
func (f *cutFile) Size() (n int64, err error) {
	e := f.c.do(func() error { n, err = f.f.Size(); return nil })
	if e != nil {
		return 0, e
	}
	return
}
func (f *cutFile) Close() error { return nil }

func (c *cutFS) wrap(f segFile, err error) (segFile, error) {
	if err != nil {
		return nil, err
	}
	return &cutFile{c: c, f: f}, nil
}
func (c *cutFS) OpenRead(p string) (r segFile, err error) {
	if e := c.do(func() error { r, err = c.wrap(c.m.OpenRead(p)); return nil }); e != nil {
		return nil, e
	}
	return
}
func (c *cutFS) OpenRW(p string) (r segFile, err error) {
	if e := c.do(func() error { r, err = c.wrap(c.m.OpenRW(p)); return nil }); e != nil {
		return nil, e
	}
	return
}
func (c *cutFS) CreateExcl(p string) (r segFile, err error) {
	if e := c.do(func() error { r, err = c.wrap(c.m.CreateExcl(p)); return nil }); e != nil {
		return nil, e
	}
	return
}
func (c *cutFS) Remove(p string) error    { return c.do(func() error { return c.m.Remove(p) }) }
func (c *cutFS) Rename(a, b string) error { return c.do(func() error { return c.m.Rename(a, b) }) }
func (c *cutFS) Link(a, b string) error   { return c.do(func() error { return c.m.Link(a, b) }) }
func (c *cutFS) SyncDir(d string) error   { return c.do(func() error { return c.m.SyncDir(d) }) }
func (c *cutFS) MkdirAll(d string) error  { return c.do(func() error { return c.m.MkdirAll(d) }) }
func (c *cutFS) List(d string) (n []string, err error) {
	if e := c.do(func() error { n, err = c.m.List(d); return nil }); e != nil {
		return nil, e
	}
	return
}
func (c *cutFS) SameFile(a, b string) (ok bool, err error) {
	if e := c.do(func() error { ok, err = c.m.SameFile(a, b); return nil }); e != nil {
		return false, e
	}
	return
}
func (c *cutFS) Exists(p string) (ok bool, err error) {
	if e := c.do(func() error { ok, err = c.m.Exists(p); return nil }); e != nil {
		return false, e
	}
	return
}

var _ = fs.ErrNotExist

// TestReviewSeg_concurrentPowerCuts: a writer (appends, WaitDurable, safe_seq,
// occasional TruncateAfter above safe_seq), a trimmer (TrimTo) and a reader
// (ReadFrames up to safe_seq, compared with what was acknowledged) run at
// once on 4 KiB segments; the power is cut at a random instant. After every
// restart each frame acknowledged before the cut (at or above the base) must
// be there unchanged.
func TestReviewSeg_concurrentPowerCuts(t *testing.T) {
	for seed := uint64(1); seed <= 10; seed++ {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			dir := t.TempDir()
			cfs := &cutFS{m: newMemFS()}
			var amu sync.Mutex
			acked := map[uint64]string{}
			open := func() *WAL {
				o := DefaultOptions(dir)
				o.Logger = quietLogger()
				amu.Lock()
				o.Initialized = len(acked) > 0
				amu.Unlock()
				o.SegmentBytes = MinSegmentBytes
				o.SafeSeqPersistInterval = time.Millisecond
				o.fs = cfs
				w, _, err := Open(o)
				if err != nil {
					t.Fatalf("restart: %v", err)
				}
				return w
			}
			check := func(w *WAL) {
				t.Helper()
				base, _ := w.Base()
				last, _, _, _ := w.Positions()
				amu.Lock()
				defer amu.Unlock()
				for seq, p := range acked {
					if seq < base {
						continue
					}
					if seq > last {
						t.Fatalf("acknowledged Seq=%d lost: the log ends at %d (base %d)", seq, last, base)
					}
					fs, err := w.ReadFrames(seq, seq, 1, 1<<20)
					if err != nil || len(fs) != 1 || string(fs[0].Payload) != p {
						t.Fatalf("acknowledged Seq=%d reads back as %v, %v", seq, fs, err)
					}
				}
			}
			w := open()
			epoch := uint64(1)
			var nSealedCuts, nRebases, nWholeTrims atomic.Int64
			defer func() {
				t.Logf("truncations into a sealed segment %d, rebases %d, whole trims %d, fs calls %d",
					nSealedCuts.Load(), nRebases.Load(), nWholeTrims.Load(), cfs.ops.Load())
			}()
			for round := 0; round < 25; round++ {
				stop := make(chan struct{})
				var wg sync.WaitGroup
				var bad atomic.Pointer[string]
				wseed := rng.Uint64()
				wg.Add(3)
				go func() { // writer
					defer wg.Done()
					r := rand.New(rand.NewPCG(wseed, 1))
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						var ps [][]byte
						for k := r.IntN(40) + 1; k > 0; k-- {
							ps = append(ps, []byte(fmt.Sprintf(`{"r":%d,"i":%d,"k":%d,"pad":"%0*d"}`, round, i, k, r.IntN(200), 0)))
						}
						first, l, err := w.Append(epoch, FrameEvent, time.Now().UnixNano(), ps)
						if err == nil {
							err = w.WaitDurable(context.Background(), l)
						}
						if err != nil {
							return
						}
						cfs.cut.RLock()
						if !cfs.dead.Load() {
							amu.Lock()
							for s := first; s <= l; s++ {
								acked[s] = string(ps[s-first])
							}
							amu.Unlock()
						}
						cfs.cut.RUnlock()
						if d := uint64(r.IntN(30)); l > d {
							w.SetSafeSeq(l - d)
						}
						if r.IntN(40) == 0 {
							last, _, _, safe := w.Positions()
							nb := safe + 1 + uint64(r.IntN(int(last-safe)+5))
							amu.Lock()
							for s := nb; s <= last; s++ {
								delete(acked, s)
							}
							if w.Rebase(nb, epoch) == nil {
								epoch++
								nRebases.Add(1)
							}
							amu.Unlock()
						} else if r.IntN(8) == 0 {
							last, _, _, safe := w.Positions()
							if last > safe+1 {
								keep := safe + uint64(r.IntN(int(last-safe)))
								// Asked to go (above safe_seq): their loss is
								// allowed whether or not the truncation finishes.
								amu.Lock()
								for s := keep + 1; s <= last; s++ {
									delete(acked, s)
								}
								w.mu.Lock()
								intoSealed := keep+1 < w.disk.first
								w.mu.Unlock()
								if w.TruncateAfter(keep) == nil {
									epoch++
									if intoSealed {
										nSealedCuts.Add(1)
									}
								}
								amu.Unlock()
							}
						}
					}
				}()
				go func() { // trimmer
					defer wg.Done()
					r := rand.New(rand.NewPCG(wseed, 2))
					for {
						select {
						case <-stop:
							return
						default:
						}
						s := w.SafeSeq()
						if r.IntN(10) == 0 {
							last, _, _, _ := w.Positions()
							if b, err := w.TrimTo(^uint64(0)); err == nil && b == last+1 {
								nWholeTrims.Add(1) // everything committed and persisted
							}
						} else if s > 100 {
							w.TrimTo(s - uint64(r.IntN(100)))
						}
						time.Sleep(time.Duration(r.IntN(500)) * time.Microsecond)
					}
				}()
				go func() { // reader: frames at or below safe_seq never change
					defer wg.Done()
					r := rand.New(rand.NewPCG(wseed, 3))
					for {
						select {
						case <-stop:
							return
						default:
						}
						safe := w.SafeSeq()
						base, _ := w.Base()
						if safe < base {
							continue
						}
						from := base + uint64(r.IntN(int(safe-base)+1))
						fr, err := w.ReadFrames(from, safe, r.IntN(200)+1, r.IntN(8<<10)+1)
						if err != nil {
							continue
						}
						amu.Lock()
						for _, f := range fr {
							if p, ok := acked[f.Seq]; ok && p != string(f.Payload) {
								msg := fmt.Sprintf("ReadFrames(%d..%d) gave Seq=%d = %s, acknowledged %s", from, safe, f.Seq, f.Payload, p)
								bad.Store(&msg)
							}
						}
						amu.Unlock()
					}
				}()
				cfs.cutAt.Store(cfs.ops.Load() + int64(rng.IntN(4000)) + 1)
				for deadline := time.Now().Add(300 * time.Millisecond); !cfs.dead.Load() && time.Now().Before(deadline); {
					time.Sleep(100 * time.Microsecond)
				}
				cfs.stopAll(rng.IntN(2) == 0)
				cfs.cutAt.Store(0)
				close(stop)
				wg.Wait()
				if m := bad.Load(); m != nil {
					t.Fatal(*m)
				}
				w.crash()
				cfs.powerOn()
				w = open()
				check(w)
			}
			w.Close()
		})
	}
}

// TestReviewSeg_truncateBelowBaseAfterRebaseCrash: TruncateAfter checks seq
// against the in-memory safe_seq only, never against the base. After a
// Rebase, safe_seq is raised to newBase-1 in memory but telemetry.safe_seq
// follows lazily; a crash before the persist loop runs leaves
// telemetry.safe_seq far below the base. TruncateAfter(seq) with
// safe_seq ≤ seq < base-1 is then accepted: it writes a BASE segment that
// begins below telemetry.base, underflows w.frames, and the next start
// refuses the directory (BASE_CORRUPT: the log begins above telemetry.wal's
// first Seq). No acknowledged frame is lost (none is held), but a call the
// WAL accepted makes the node fail hard at its next start.
//
// Steps: append 1..20 (appendN persists safe_seq=20); Rebase(1000, 1); kill
// the process before telemetry.safe_seq is rewritten; restart (safe_seq=20,
// base=1000, last=999); TruncateAfter(500) — accepted; restart.
func TestReviewSeg_truncateBelowBaseAfterRebaseCrash(t *testing.T) {
	dir := t.TempDir()
	mem := newMemFS()
	open := func() (*WAL, error) {
		o := DefaultOptions(dir)
		o.Logger = quietLogger()
		o.Initialized = true
		o.SegmentBytes = MinSegmentBytes
		o.SafeSeqPersistInterval = time.Hour // the lazy persist has not run yet
		o.fs = mem
		w, _, err := Open(o)
		return w, err
	}
	o := DefaultOptions(dir)
	o.Logger = quietLogger()
	o.SegmentBytes = MinSegmentBytes
	o.SafeSeqPersistInterval = time.Hour
	o.fs = mem
	w, _, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, w, 1, 20, 10)
	if err := w.Rebase(1000, 1); err != nil {
		t.Fatal(err)
	}
	w.crash() // killed: telemetry.safe_seq still says 20
	if w, err = open(); err != nil {
		t.Fatal(err)
	}
	base, _ := w.Base()
	last, _, _, safe := w.Positions()
	t.Logf("after restart: base=%d last=%d safe_seq=%d", base, last, safe)
	err = w.TruncateAfter(500)
	w.mu.Lock()
	frames := w.frames
	w.mu.Unlock()
	w.Close()
	if err == nil {
		t.Errorf("TruncateAfter(500) below base %d was accepted (w.frames is now %d)", base, frames)
	}
	if w2, err := open(); err != nil {
		t.Fatalf("the next start refuses the WAL: %v", err)
	} else {
		w2.Close()
	}
}
