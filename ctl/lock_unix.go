//go:build unix

package ctl

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// lockedError: a running node holds the data-dir lock.
type lockedError struct{ path, holder string }

func (e *lockedError) Error() string {
	by := ""
	if e.holder != "" {
		by = " (pid " + e.holder + ")"
	}
	return fmt.Sprintf("a running node holds the data-dir lock %s%s: stop it first (sudo systemctl stop autonomy-orchestrator)", e.path, by)
}

// lockDataDir takes the data directory's flock (DESIGN §3: held by the
// running node) without waiting. It fails with *lockedError while a node
// holds it. Holding it for the whole operation keeps a node from starting
// half-way through. LOCK is created when absent, owned like the data dir.
func lockDataDir(dataDir string) (release func(), err error) {
	path := filepath.Join(dataDir, LockFileName)
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if isNotExist(err) {
		f, err = os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600)
		if err == nil {
			err = chownLike(path, dataDir)
		}
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		return nil, fmt.Errorf("opening the data-dir lock: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if errors.Is(err, syscall.EWOULDBLOCK) {
		f.Close()
		// The node writes its pid into LOCK.
		b, _ := os.ReadFile(path)
		holder := strings.TrimSpace(string(b))
		if len(holder) > 20 {
			holder = ""
		}
		return nil, &lockedError{path: path, holder: holder}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// chownLike gives path the owner and group of ref when running as root, so
// that a node running as its own user (autonomy) can use what `sudo
// autonomyctl wal reset` created. Otherwise it does nothing.
func chownLike(path, ref string) error {
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
