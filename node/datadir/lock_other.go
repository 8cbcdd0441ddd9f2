//go:build !unix

package datadir

import "errors"

// Lock is the flock held on <data-dir>/LOCK (Unix only).
type Lock struct{}

// TryLock needs flock(2): it fails on systems without it.
func TryLock(string) (*Lock, error) {
	return nil, errors.New("datadir: the data-dir lock needs flock(2): Linux and other Unix systems only")
}

// WritePID does nothing here.
func (*Lock) WritePID() error { return nil }

// Unlock does nothing here.
func (*Lock) Unlock() error { return nil }

// ChownLike does nothing here.
func ChownLike(string, string) error { return nil }

// Owner reports no owner here (ok false): files have no Unix owner.
func Owner(string) (uid int, ok bool, err error) { return 0, false, nil }
