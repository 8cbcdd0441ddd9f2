package walrepl

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// fileSystem is every file-system call the segment layer (segment.go,
// scan.go, the segment parts of recover.go, wal.go and retention.go) makes on
// segment files and their directory. osFS is the real one. It is small on
// purpose: a later in-memory disk that loses unsynced writes at a simulated
// crash can implement it and run this WAL inside the simulator.
//
// The small state files beside the segments (telemetry.safe_seq,
// telemetry.state, telemetry.base, the reset marker) still go through
// writeFileAtomic and os directly.
type fileSystem interface {
	// OpenRead opens an existing file read-only.
	OpenRead(path string) (segFile, error)
	// OpenRW opens an existing file for reading and writing.
	OpenRW(path string) (segFile, error)
	// CreateExcl creates a new, empty file (mode 0600) for reading and
	// writing; it fails if path exists.
	CreateExcl(path string) (segFile, error)
	Remove(path string) error
	// Rename replaces newpath atomically.
	Rename(oldpath, newpath string) error
	// Link gives the file at oldpath a second name; it fails if newpath exists.
	Link(oldpath, newpath string) error
	// List returns the names in dir (not paths), in no particular order.
	List(dir string) ([]string, error)
	// SyncDir makes the directory's entries (creations, renames, removals)
	// durable.
	SyncDir(dir string) error
	// SameFile reports whether two paths name one file (hard links).
	SameFile(a, b string) (bool, error)
	// Exists reports whether path exists (without following a symlink).
	Exists(path string) (bool, error)
	MkdirAll(dir string) error
}

// segFile is an open segment file.
type segFile interface {
	io.ReaderAt
	io.WriterAt
	// Truncate changes the file's size.
	Truncate(size int64) error
	// Datasync flushes the file's data and the metadata needed to read it
	// back (fdatasync).
	Datasync() error
	// Size is the file's size in bytes.
	Size() (int64, error)
	Close() error
}

// osFS is fileSystem on the operating system's files.
type osFS struct{}

type osFile struct{ *os.File }

func (f osFile) Datasync() error { return fdatasync(f.File) }

func (f osFile) Size() (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

func (osFS) OpenRead(path string) (segFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) OpenRW(path string) (segFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) CreateExcl(path string) (segFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) Remove(path string) error             { return os.Remove(path) }
func (osFS) Rename(oldpath, newpath string) error { return os.Rename(oldpath, newpath) }
func (osFS) Link(oldpath, newpath string) error   { return os.Link(oldpath, newpath) }
func (osFS) SyncDir(dir string) error             { return SyncDir(dir) }
func (osFS) MkdirAll(dir string) error            { return os.MkdirAll(dir, 0o700) }
func (osFS) Exists(path string) (bool, error)     { return exists(path) }
func (osFS) List(dir string) ([]string, error)    { return listNames(dir) }
func (osFS) SameFile(a, b string) (bool, error)   { return sameFile(a, b) }
func listNames(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(ents))
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out, nil
}

func sameFile(a, b string) (bool, error) {
	sa, err := os.Lstat(a)
	if err != nil {
		return false, err
	}
	sb, err := os.Lstat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(sa, sb), nil
}

// isNotExist is errors.Is(err, fs.ErrNotExist).
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// joinDir is filepath.Join, named for the segment layer.
func joinDir(dir, name string) string { return filepath.Join(dir, name) }
