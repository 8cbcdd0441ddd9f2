// Command etcdmember runs one member of a three-member etcd cluster with
// etcd's default settings, for the benchmark's etcd anchor. test/bench builds
// it into a temporary directory and starts one process per member on
// loopback; it stops on SIGTERM or SIGINT.
//
// Only what a cluster needs is set (name, data dir, URLs, initial cluster);
// heartbeat, election timeout, snapshot count, quotas and fsync behaviour are
// embed.NewConfig()'s defaults, so the anchor is etcd as users run it.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

func main() {
	var (
		name    = flag.String("name", "", "member name")
		dir     = flag.String("data-dir", "", "member data directory")
		client  = flag.String("client-url", "", "client URL, listened on and advertised")
		peer    = flag.String("peer-url", "", "peer URL, listened on and advertised")
		initial = flag.String("initial-cluster", "", "name=peerURL,... of every member")
	)
	flag.Parse()
	if err := run(*name, *dir, *client, *peer, *initial); err != nil {
		fmt.Fprintln(os.Stderr, "etcdmember:", err)
		os.Exit(1)
	}
}

func run(name, dir, client, peer, initial string) error {
	if name == "" || dir == "" || client == "" || peer == "" || initial == "" {
		return fmt.Errorf("--name, --data-dir, --client-url, --peer-url and --initial-cluster are required")
	}
	cu, err := url.Parse(client)
	if err != nil {
		return fmt.Errorf("--client-url=%q: %w", client, err)
	}
	pu, err := url.Parse(peer)
	if err != nil {
		return fmt.Errorf("--peer-url=%q: %w", peer, err)
	}
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = name, dir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = initial
	cfg.InitialClusterToken = "bench"
	cfg.ClusterState = embed.ClusterStateFlagNew

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return err
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		return err
	case <-ctx.Done():
		return nil
	case <-time.After(2 * time.Minute):
		return fmt.Errorf("member %s not ready within 2m", name)
	}
	select {
	case err := <-e.Err():
		return err
	case <-ctx.Done():
		return nil
	}
}
