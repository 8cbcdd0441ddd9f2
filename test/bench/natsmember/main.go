// Command natsmember runs one member of a three-member NATS cluster with
// JetStream on a file store, for the benchmark's JetStream anchor (issue 15).
// test/bench builds it into its scratch directory and starts one process per
// member on loopback; it stops on SIGTERM or SIGINT.
//
// Only what a cluster needs is set (server name, client and route ports,
// routes, store directory) plus the durability under test: sync_interval
// always, so every write to a file store is fsynced before JetStream goes
// on (nats-server's opts.go maps `sync_interval: always` to
// Options.SyncAlways). Everything else is nats-server's default, so the anchor
// is JetStream as users run it with that one setting.
//
// This package is its own Go module (go.mod beside this file), so that
// nats-server and what it requires never enter the product's module graph.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

func main() {
	var (
		name    = flag.String("name", "", "server name (also names the member in stream placement)")
		store   = flag.String("store-dir", "", "JetStream store directory")
		port    = flag.Int("port", 0, "client port on 127.0.0.1")
		cluster = flag.Int("cluster-port", 0, "route port on 127.0.0.1")
		routes  = flag.String("routes", "", "nats://127.0.0.1:PORT,... route URLs of every member")
	)
	flag.Parse()
	if err := run(*name, *store, *port, *cluster, *routes); err != nil {
		fmt.Fprintln(os.Stderr, "natsmember:", err)
		os.Exit(1)
	}
}

func run(name, store string, port, clusterPort int, routes string) error {
	if name == "" || store == "" || port == 0 || clusterPort == 0 || routes == "" {
		return fmt.Errorf("--name, --store-dir, --port, --cluster-port and --routes are required")
	}
	opts := &server.Options{
		ServerName: name,
		Host:       "127.0.0.1",
		Port:       port,
		Cluster:    server.ClusterOpts{Name: "bench", Host: "127.0.0.1", Port: clusterPort},
		Routes:     server.RoutesFromStr(routes),
		JetStream:  true,
		StoreDir:   store,
		// sync_interval: always. Options.SyncInterval is left to its
		// default, as the config parser does for "always".
		SyncAlways: true,
		NoSigs:     true, // this process handles SIGTERM below
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return err
	}
	s.ConfigureLogger()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	s.Start()
	defer func() {
		s.Shutdown()
		s.WaitForShutdown()
	}()
	if !s.ReadyForConnections(time.Minute) {
		return fmt.Errorf("server %s not ready for connections within 1m", name)
	}
	<-ctx.Done()
	return nil
}
