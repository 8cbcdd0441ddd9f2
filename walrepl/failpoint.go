//go:build !failpoints

package walrepl

import "os"

// failpoint is a named point on the write path where the test-only build
// (tag failpoints) can crash, delay or fail. In normal builds it compiles to
// nothing.
func failpoint(string) error { return nil }

// powerLoss is the test-only build's simulated power cut; never reached here.
func powerLoss(*os.File, int64, int64) {}
