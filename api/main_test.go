package api

import (
	"testing"

	"github.com/autonomyops/orchestrator/test/leak"
)

// TestMain fails the package when a goroutine outlives the tests.
func TestMain(m *testing.M) { leak.VerifyTestMain(m) }
