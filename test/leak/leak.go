// Package leak is the goroutine-leak check of the test binaries' TestMain
// (go.uber.org/goleak, as etcd's client/pkg/testutil/leak.go): a package
// whose tests leave a goroutine running fails, so every goroutine must have
// an owner that stops and joins it (STYLE "Follow these" 4).
package leak

import (
	"fmt"
	"net/http"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// VerifyTestMain runs the tests and then, if they passed, fails the binary
// when goroutines other than the runtime's are still running. Idle
// keep-alive connections of http.DefaultClient and of clients are closed
// first: they belong to the client, not to the code under test.
func VerifyTestMain(m *testing.M, clients ...*http.Client) {
	code := m.Run()
	if code == 0 {
		http.DefaultClient.CloseIdleConnections()
		for _, c := range clients {
			c.CloseIdleConnections()
		}
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "leak: goroutines outlived the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
