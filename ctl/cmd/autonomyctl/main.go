// Command autonomyctl is the operator's tool for an AutonomyOps HA
// orchestrator cluster. Everything lives in package ctl; main only runs the
// command line and exits with its status (docs/autonomyctl.md lists them).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/autonomyops/orchestrator/ctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := ctl.New().Run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
