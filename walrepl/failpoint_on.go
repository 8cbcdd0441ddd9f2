//go:build failpoints

package walrepl

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// EnvFailpoints configures the test-only failpoints, e.g.
// AUTONOMY_FAILPOINTS="wal-before-fsync=sleep(200ms);wal-after-fsync=crash".
// Actions: crash (SIGKILL to self), error, sleep(DURATION), and powerloss at
// wal-before-fsync: the unsynced bytes of the write are lost from a random
// point inside them on (a torn write, as after a power cut), then crash.
const EnvFailpoints = "AUTONOMY_FAILPOINTS"

var (
	fpOnce    sync.Once
	fpActions map[string]string
)

// Failpoint is failpoint for the packages above walrepl (node).
func Failpoint(name string) error { return failpoint(name) }

func failpoint(name string) error {
	fpOnce.Do(func() {
		fpActions = map[string]string{}
		for _, kv := range strings.Split(os.Getenv(EnvFailpoints), ";") {
			if k, v, ok := strings.Cut(strings.TrimSpace(kv), "="); ok {
				fpActions[k] = v
			}
		}
	})
	act, ok := fpActions[name]
	if !ok {
		return nil
	}
	switch {
	case act == "crash":
		fmt.Fprintf(os.Stderr, "failpoint %s: crash\n", name)
		die()
	case act == "powerloss" && name == "wal-before-fsync":
		return errPowerLoss
	case act == "powerloss":
		fmt.Fprintf(os.Stderr, "failpoint %s: powerloss is only simulated at wal-before-fsync; crash\n", name)
		die()
	case act == "error":
		return fmt.Errorf("failpoint %s: injected error", name)
	case strings.HasPrefix(act, "sleep(") && strings.HasSuffix(act, ")"):
		d, err := time.ParseDuration(act[len("sleep(") : len(act)-1])
		if err == nil {
			time.Sleep(d)
		}
	}
	return nil
}

// die ends the process at once, like kill -9: no deferred code, no flush.
// As PID 1 of a container a signal to itself is ignored, so it then exits
// with the status a SIGKILL would give.
func die() {
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	syscall.Exit(137)
}

// powerLoss loses the n bytes of this write (at off, not yet fsynced) from a
// random point inside them on (a torn write) and dies: what a power cut
// between write and fdatasync leaves on disk. Bytes written unsynced before
// off (a truncation's pending write) are kept: the loss is a lower bound.
func powerLoss(f segFile, off, n int64) {
	cut := off
	if n > 1 {
		cut += 1 + rand.Int64N(n-1)
	}
	f.Truncate(cut)
	f.Datasync()
	fmt.Fprintf(os.Stderr, "failpoint: power loss: kept %d of %d unsynced bytes\n", cut-off, n)
	die()
}
