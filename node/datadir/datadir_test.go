//go:build unix

package datadir

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestTryLock_secondHolderRefused: while one holder has the lock, a second
// TryLock (another open file description, as another process has) fails
// with a LockedError naming the pid the first wrote; after Unlock it
// succeeds. Unlock is idempotent and LOCK stays.
func TestTryLock_secondHolderRefused(t *testing.T) {
	dir := t.TempDir()
	first, err := TryLock(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.WritePID(); err != nil {
		t.Fatal(err)
	}
	_, err = TryLock(dir)
	var le *LockedError
	if !errors.As(err, &le) || !errors.Is(err, ErrLocked) {
		t.Fatalf("second TryLock: %v, want a LockedError", err)
	}
	if le.Path != filepath.Join(dir, LockFile) || le.Holder != strconv.Itoa(os.Getpid()) {
		t.Fatalf("LockedError %+v, want path %s and pid %d", le, filepath.Join(dir, LockFile), os.Getpid())
	}
	if err := first.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := first.Unlock(); err != nil {
		t.Fatalf("second Unlock: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, LockFile)); err != nil {
		t.Fatalf("LOCK must stay after Unlock: %v", err)
	}
	again, err := TryLock(dir)
	if err != nil {
		t.Fatalf("after Unlock: %v", err)
	}
	again.Unlock()
}

// TestTryLock_unknownHolder: a holder that wrote no pid (a tool) is named
// "unknown".
func TestTryLock_unknownHolder(t *testing.T) {
	dir := t.TempDir()
	l, err := TryLock(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	_, err = TryLock(dir)
	if err == nil || err.Error() != filepath.Join(dir, LockFile)+" is held by pid unknown" {
		t.Fatalf("got %v", err)
	}
}

func TestIdentity_roundTrip(t *testing.T) {
	dir := t.TempDir()
	if _, ok, err := ReadIdentity(dir); ok || err != nil {
		t.Fatalf("absent node.json: ok=%t err=%v", ok, err)
	}
	want := Identity{ClusterName: "c", Name: "n1", CreatedAt: time.Unix(1700000000, 0).UTC()}
	if err := WriteIdentity(dir, want); err != nil {
		t.Fatal(err)
	}
	got, ok, err := ReadIdentity(dir)
	if !ok || err != nil || got != want {
		t.Fatalf("got %+v ok=%t err=%v, want %+v", got, ok, err, want)
	}
	os.WriteFile(filepath.Join(dir, IdentityFile), []byte("{"), 0o600)
	if _, ok, err := ReadIdentity(dir); !ok || err == nil {
		t.Fatalf("corrupt node.json: ok=%t err=%v", ok, err)
	}
}
