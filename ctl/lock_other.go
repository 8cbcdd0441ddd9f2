//go:build !unix

package ctl

import "errors"

type lockedError struct{ path, holder string }

func (e *lockedError) Error() string { return "a running node holds the data-dir lock " + e.path }

func lockDataDir(string) (func(), error) {
	return nil, errors.New("wal reset needs flock(2): it runs on Linux and other Unix systems only")
}

func chownLike(string, string) error { return nil }
