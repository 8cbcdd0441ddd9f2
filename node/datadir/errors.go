package datadir

import (
	"errors"
	"fmt"
)

// ErrLocked means another process holds the data directory's lock.
var ErrLocked = errors.New("datadir: the data directory is locked by another process")

// LockedError is TryLock's error while another process holds the lock.
type LockedError struct {
	Path   string // <data-dir>/LOCK
	Holder string // the pid the holder wrote into LOCK; "" if unknown
}

func (e *LockedError) Error() string {
	holder := e.Holder
	if holder == "" {
		holder = "unknown"
	}
	return fmt.Sprintf("%s is held by pid %s", e.Path, holder)
}

// Is makes errors.Is(err, ErrLocked) hold.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }
