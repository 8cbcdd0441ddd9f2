//go:build !failpoints

package walrepl

// failpoint is a named point on the write path where the test-only build
// (tag failpoints) can crash, delay or fail. In normal builds it compiles to
// nothing.
func failpoint(string) error { return nil }

// Failpoint is failpoint for the packages above walrepl (node): a test-only
// seam outside the write path, nothing in normal builds.
func Failpoint(name string) error { return failpoint(name) }

// powerLoss is the test-only build's simulated power cut; never reached here.
func powerLoss(segFile, int64, int64) {}
