//go:build !failpoints

package walrepl

// failpoint is a named point on the write path where the test-only build
// (tag failpoints) can crash, delay or fail. In normal builds it compiles to
// nothing.
func failpoint(string) error { return nil }
