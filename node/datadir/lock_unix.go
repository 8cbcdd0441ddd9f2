//go:build unix

package datadir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Lock is the flock held on <data-dir>/LOCK.
type Lock struct {
	f    *os.File
	once sync.Once
	err  error
}

// TryLock takes an exclusive flock on <dir>/LOCK without waiting. While
// another process holds it, it fails with a *LockedError (errors.Is
// ErrLocked). LOCK is created when absent, with the owner of dir when
// running as root (ChownLike), so a node running as its own user can use
// what `sudo autonomyctl wal reset` created.
func TryLock(dir string) (*Lock, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err == nil {
			if cerr := ChownLike(path, dir); cerr != nil {
				f.Close()
				return nil, fmt.Errorf("datadir: giving %s the owner of %s: %w", path, dir, cerr)
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("datadir: opening %s: %w", path, err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if errors.Is(err, syscall.EWOULDBLOCK) {
		f.Close()
		// The node writes its pid into LOCK (WritePID).
		b, _ := os.ReadFile(path)
		holder := strings.TrimSpace(string(b))
		if len(holder) > 20 {
			holder = ""
		}
		return nil, &LockedError{Path: path, Holder: holder}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("datadir: locking %s: %w", path, err)
	}
	return &Lock{f: f}, nil
}

// WritePID replaces LOCK's content with this process's pid, which a
// process that finds the lock held names in its error. The node does this;
// the offline tools do not.
func (l *Lock) WritePID() error {
	if err := l.f.Truncate(0); err != nil {
		return err
	}
	_, err := l.f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return err
}

// Unlock releases the lock; LOCK stays. Idempotent: later calls return the
// first call's result.
func (l *Lock) Unlock() error {
	l.once.Do(func() {
		_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
		l.err = l.f.Close()
	})
	return l.err
}

// ChownLike gives path the owner and group of ref when running as root;
// otherwise it does nothing.
func ChownLike(path, ref string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	st, err := os.Stat(ref)
	if err != nil {
		return err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	return os.Lchown(path, int(sys.Uid), int(sys.Gid))
}

// Owner returns the uid that owns dir. ok is false, with no error, when dir
// does not exist.
func Owner(dir string) (uid int, ok bool, err error) {
	st, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	sys, isUnix := st.Sys().(*syscall.Stat_t)
	if !isUnix {
		return 0, false, nil
	}
	return int(sys.Uid), true, nil
}
