//go:build failpoints

package walrepl

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// EnvFailpoints configures the test-only failpoints, e.g.
// AUTONOMY_FAILPOINTS="wal-before-fsync=sleep(200ms);wal-after-fsync=crash".
// Actions: crash (SIGKILL to self), error, sleep(DURATION).
const EnvFailpoints = "AUTONOMY_FAILPOINTS"

var (
	fpOnce    sync.Once
	fpActions map[string]string
)

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
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
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
