// Command autonomy-orchestrator is the appliance daemon: `autonomy-orchestrator serve`.
package main

import (
	"os"

	"github.com/autonomyops/orchestrator/node"
)

func main() {
	os.Exit(node.Main(os.Args[1:], os.Stderr))
}
