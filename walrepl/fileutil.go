package walrepl

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// fdatasync flushes f's data (and the metadata needed to read it back, such
// as its size) to stable storage.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}

// syncDir is SyncDir, by the name this package's files call it.
func syncDir(dir string) error { return SyncDir(dir) }

// SyncDir fsyncs a directory so that entries created, renamed or removed in
// it are durable. The one copy: autonomyctl uses it too.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// writeFileAtomic replaces path with data so that a crash leaves either the
// old or the new content, never a mix: write a temporary file, fsync it,
// rename it over path, fsync the directory.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmpName := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()
	if err := tmp.Chmod(perm); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmpName, path); err != nil {
		return err
	}
	ok = true
	return syncDir(dir)
}

// writeSafeSeq persists the watermark: the decimal number and a newline.
func writeSafeSeq(dir string, seq uint64) error {
	return writeFileAtomic(filepath.Join(dir, SafeSeqFile), []byte(strconv.FormatUint(seq, 10)+"\n"), 0o600)
}

// readSafeSeq reads telemetry.safe_seq. It returns fs.ErrNotExist (wrapped)
// when the file is absent and a SAFESEQ_CORRUPT RecoveryError when it does
// not hold a number.
func readSafeSeq(dir string) (uint64, error) {
	path := filepath.Join(dir, SafeSeqFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	v, perr := strconv.ParseUint(s, 10, 64)
	if perr != nil || len(b) > 24 {
		return 0, recErr(CauseSafeSeqCorrupt, dir, 0, -1,
			"%q holds %q, not a decimal Seq; restore it or, to accept telemetry loss, follow the operator reset path", path, truncateForMsg(s))
	}
	return v, nil
}

func truncateForMsg(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}

func exists(path string) (bool, error) {
	_, err := os.Lstat(path)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, fmt.Errorf("walrepl: %w", err)
}
