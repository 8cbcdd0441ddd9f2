package walrepl

// memFS is an in-memory fileSystem that loses what was not synced at a
// simulated power cut: file data written since the file's last Datasync,
// and directory entries changed since the directory's last SyncDir. It is a
// first use of the segment layer's seam (segfs.go); the state files beside
// the segments stay on the real disk, where every write of them is already
// atomic and synced.

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

type memInode struct {
	data, synced []byte
}

type memFS struct {
	mu      sync.Mutex
	entries map[string]*memInode // path → file, as the running system sees it
	durable map[string]*memInode // ... as the disk holds it (at the last SyncDir)
	dirs    map[string]bool
}

func newMemFS() *memFS {
	return &memFS{entries: map[string]*memInode{}, durable: map[string]*memInode{}, dirs: map[string]bool{}}
}

// crash is a power cut: unsynced data and directory changes are gone.
func (m *memFS) crash() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.entries = map[string]*memInode{}
	for p, ino := range m.durable {
		ino.data = append([]byte(nil), ino.synced...)
		m.entries[p] = ino
	}
}

type memFile struct {
	m   *memFS
	ino *memInode
	rw  bool
}

func (f *memFile) ReadAt(b []byte, off int64) (int, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if off >= int64(len(f.ino.data)) {
		return 0, io.EOF
	}
	n := copy(b, f.ino.data[off:])
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) WriteAt(b []byte, off int64) (int, error) {
	if !f.rw {
		return 0, fs.ErrPermission
	}
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if end := off + int64(len(b)); end > int64(len(f.ino.data)) {
		f.ino.data = append(f.ino.data, make([]byte, end-int64(len(f.ino.data)))...)
	}
	copy(f.ino.data[off:], b)
	return len(b), nil
}

func (f *memFile) Truncate(n int64) error {
	if !f.rw {
		return fs.ErrPermission
	}
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if n <= int64(len(f.ino.data)) {
		f.ino.data = f.ino.data[:n]
	} else {
		f.ino.data = append(f.ino.data, make([]byte, n-int64(len(f.ino.data)))...)
	}
	return nil
}

func (f *memFile) Datasync() error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	f.ino.synced = append([]byte(nil), f.ino.data...)
	return nil
}

func (f *memFile) Size() (int64, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	return int64(len(f.ino.data)), nil
}

func (f *memFile) Close() error { return nil }

func (m *memFS) open(path string, rw bool) (segFile, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ino := m.entries[path]
	if ino == nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
	}
	return &memFile{m: m, ino: ino, rw: rw}, nil
}

func (m *memFS) OpenRead(path string) (segFile, error) { return m.open(path, false) }
func (m *memFS) OpenRW(path string) (segFile, error)   { return m.open(path, true) }

func (m *memFS) CreateExcl(path string) (segFile, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.entries[path] != nil {
		return nil, &fs.PathError{Op: "create", Path: path, Err: fs.ErrExist}
	}
	ino := &memInode{}
	m.entries[path] = ino
	return &memFile{m: m, ino: ino, rw: true}, nil
}

func (m *memFS) Remove(path string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.entries[path] == nil {
		return &fs.PathError{Op: "remove", Path: path, Err: fs.ErrNotExist}
	}
	delete(m.entries, path)
	return nil
}

func (m *memFS) Rename(oldpath, newpath string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ino := m.entries[oldpath]
	if ino == nil {
		return &fs.PathError{Op: "rename", Path: oldpath, Err: fs.ErrNotExist}
	}
	delete(m.entries, oldpath)
	m.entries[newpath] = ino
	return nil
}

func (m *memFS) Link(oldpath, newpath string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ino := m.entries[oldpath]
	if ino == nil {
		return &fs.PathError{Op: "link", Path: oldpath, Err: fs.ErrNotExist}
	}
	if m.entries[newpath] != nil {
		return &fs.PathError{Op: "link", Path: newpath, Err: fs.ErrExist}
	}
	m.entries[newpath] = ino
	return nil
}

func (m *memFS) List(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for p := range m.entries {
		if filepath.Dir(p) == filepath.Clean(dir) {
			out = append(out, filepath.Base(p))
		}
	}
	return out, nil
}

// SyncDir makes dir's current entries durable (all of them: one directory
// per WAL here).
func (m *memFS) SyncDir(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for p := range m.durable {
		if filepath.Dir(p) == filepath.Clean(dir) {
			delete(m.durable, p)
		}
	}
	for p, ino := range m.entries {
		if filepath.Dir(p) == filepath.Clean(dir) {
			m.durable[p] = ino
		}
	}
	return nil
}

func (m *memFS) SameFile(a, b string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ia, ib := m.entries[a], m.entries[b]
	if ia == nil || ib == nil {
		return false, &fs.PathError{Op: "stat", Path: a, Err: fs.ErrNotExist}
	}
	return ia == ib, nil
}

func (m *memFS) Exists(path string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.entries[path] != nil || m.dirs[path], nil
}

func (m *memFS) MkdirAll(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dirs[filepath.Clean(dir)] = true
	return nil
}

// TestSegment_powerCutsOnMemFS runs the WAL on the in-memory disk through
// appends (rolling 4 KiB segments), trims and truncations, cutting the power
// at random points — some inside a roll, by failpoint — and checks after
// every restart that every acknowledged frame is there, unchanged.
func TestSegment_powerCutsOnMemFS(t *testing.T) {
	for seed := uint64(1); seed <= 8; seed++ {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 14))
			dir := t.TempDir() // the state files; the segments live in mem
			mem := newMemFS()
			acked := map[uint64]string{}
			var fail armed
			open := func() *WAL {
				o := DefaultOptions(dir)
				o.Logger = quietLogger()
				o.Initialized = len(acked) > 0
				o.SegmentBytes = MinSegmentBytes
				o.SafeSeqPersistInterval = time.Millisecond
				o.fs = mem
				o.Inject = fail.inject
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
				for seq, p := range acked {
					if seq < base {
						continue
					}
					if seq > last {
						t.Fatalf("acknowledged Seq=%d lost: the log ends at %d", seq, last)
					}
					fs, err := w.ReadFrames(seq, seq, 1, 1<<20)
					if err != nil || len(fs) != 1 || string(fs[0].Payload) != p {
						t.Fatalf("acknowledged Seq=%d reads back as %v, %v", seq, fs, err)
					}
				}
			}
			w := open()
			epoch := uint64(1)
			points := []string{"roll-after-next", "roll-after-link", "roll-after-rename", "trim-before-delete", "truncate-after-rename"}
			for round := 0; round < 30; round++ {
				if rng.IntN(4) == 0 {
					fail.arm(points[rng.IntN(len(points))])
				}
				for i := 0; i < rng.IntN(20)+1 && w.Err() == nil; i++ {
					// Batches of up to 60 frames: one flush then spans
					// a roll (frames for the old and the new segment).
					var ps [][]byte
					for k := rng.IntN(60) + 1; k > 0; k-- {
						ps = append(ps, []byte(fmt.Sprintf(`{"r":%d,"i":%d,"k":%d,"pad":"%0*d"}`, round, i, k, rng.IntN(200), 0)))
					}
					first, l, err := w.Append(epoch, FrameEvent, time.Now().UnixNano(), ps)
					if err == nil {
						err = w.WaitDurable(context.Background(), l)
					}
					if err == nil {
						for s := first; s <= l; s++ {
							acked[s] = string(ps[s-first])
						}
						w.SetSafeSeq(l - uint64(rng.IntN(3)))
					}
				}
				switch rng.IntN(3) {
				case 0:
					w.persistSafeSeq()
					w.TrimTo(w.SafeSeq() - uint64(rng.IntN(50)))
				case 1:
					// A follower's truncation of frames above safe_seq,
					// then a new epoch writes on.
					last, _, _, safe := w.Positions()
					if last > safe+1 {
						keep := safe + uint64(rng.IntN(int(last-safe)))
						if w.TruncateAfter(keep) == nil {
							for s := keep + 1; s <= last; s++ {
								delete(acked, s) // not committed: the protocol allows their loss
							}
							epoch++
						}
					}
				}
				if rng.IntN(3) == 0 || w.Err() != nil {
					w.crash()
					mem.crash()
					fail.arm("")
					w = open()
					check(w)
					// Frames above the persisted safe_seq may be
					// truncated by a later leader; keep tracking them.
				}
			}
			w.Close()
			mem.crash()
			w = open()
			check(w)
			w.Close()
		})
	}
}
