// Command bench is `make bench`: one run that measures, side by side on the
// same machine, the raw fdatasync limit of the disk, a three-member etcd
// cluster doing puts of the same payloads, a three-member NATS JetStream
// cluster publishing them to an R3 file stream with sync_interval always,
// and this cluster's ingest, then prints the ratios against the issues'
// targets and writes the results as JSON (DESIGN §10, issues 7 and 15).
//
//	go run ./test/bench -out bench-results.json [-quick]
//
// Phases run one after another, never two systems at once: raw disk, etcd
// (started, measured, stopped), JetStream (likewise: sync publish at
// concurrency 1, 16 and 64, async publish in windows of 100 at 64), this
// cluster (ingest at concurrency 1, 16 and 64, batches of 100 at 64, the
// streaming endpoint at 64 streams, five kill -9 failovers), peak RSS, then
// issue 15 §4 on the same cluster: its WAL filled to -wal-gib, a cold start
// of all three nodes and of one follower (startup), and an empty follower's
// catch-up under a paced load (catchup). Each load phase runs a closed loop
// for a fixed duration after a warm-up; only requests that start and finish
// inside the measured window count.
//
// Everything runs in one scratch directory on the same disk (never tmpfs:
// fsync is free there): the raw-disk files, the etcd members' data dirs, the
// NATS members' stores and the nodes' data dirs. Every process the run
// starts is stopped and the directory removed on exit, on error and on
// Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// options are the command line.
type options struct {
	out      string
	quick    bool
	bin      string
	dir      string
	keep     bool
	only     string
	warmup   time.Duration
	measure  time.Duration
	rawFor   time.Duration
	failover int
	walGiB   float64
	// retention is the nodes' --wal-retention-bytes (0: their default), to
	// measure them at the retention bound: trimming and checkpointing.
	retention int64
}

func (o *options) phase(name string) bool {
	if o.only == "" {
		return true
	}
	for _, p := range strings.Split(o.only, ",") {
		if strings.TrimSpace(p) == name {
			return true
		}
	}
	return false
}

func main() {
	var o options
	flag.StringVar(&o.out, "out", "bench-results.json", "write the results as JSON to this file")
	flag.BoolVar(&o.quick, "quick", false, "short phases (3 s, 1 s warm-up) for a smoke run; the figures are noisier")
	flag.StringVar(&o.bin, "bin", "", "autonomy-orchestrator binary (default: bin/autonomy-orchestrator if present, else built into the scratch dir)")
	flag.StringVar(&o.dir, "dir", "", "parent of the scratch directory (default: the temp dir, or .cache/ when that is in memory)")
	flag.BoolVar(&o.keep, "keep", false, "keep the scratch directory (logs, data dirs) after the run")
	flag.StringVar(&o.only, "only", "", "comma-separated subset of phases: raw,etcd,jetstream,ingest,stream,failover,startup,catchup (default: all)")
	flag.DurationVar(&o.warmup, "warmup", 0, "warm-up before each load phase (default 2s, -quick 1s)")
	flag.DurationVar(&o.measure, "duration", 0, "measured time of each load phase (default 12s, -quick 3s)")
	flag.IntVar(&o.failover, "failovers", 5, "number of kill -9 failovers")
	flag.Float64Var(&o.walGiB, "wal-gib", 0, "startup and catchup phases: fill the WAL through the API to this many GiB first (default 1, -quick 0.25; the open target needs 1)")
	flag.Int64Var(&o.retention, "wal-retention-bytes", 0, "the nodes' --wal-retention-bytes (0: their default, 8 GiB); small, it measures them trimming at the bound")
	flag.Parse()
	if o.warmup == 0 {
		o.warmup = pick(o.quick, time.Second, 2*time.Second)
	}
	if o.measure == 0 {
		o.measure = pick(o.quick, 3*time.Second, 12*time.Second)
	}
	o.rawFor = pick(o.quick, 2*time.Second, 5*time.Second)
	if o.walGiB == 0 {
		o.walGiB = pick(o.quick, 0.25, 1)
	}
	if o.walGiB < 0 {
		fmt.Fprintf(os.Stderr, "bench: -wal-gib=%g must be positive\n", o.walGiB)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, &o)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "bench: interrupted; everything started was stopped")
			os.Exit(130)
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func pick[T any](cond bool, a, b T) T {
	if cond {
		return a
	}
	return b
}

// logf reports progress on stderr; the table goes to stdout.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func run(ctx context.Context, o *options) (err error) {
	start := time.Now()
	ws, err := newWorkspace(o.dir)
	if err != nil {
		return err
	}
	defer func() {
		if o.keep {
			logf("kept %s", ws.root)
			return
		}
		if rerr := ws.remove(); rerr != nil && err == nil {
			err = rerr
		}
	}()
	logf("scratch dir %s (filesystem %s, device %s)", ws.root, ws.fsName, ws.device)

	res := newResults(o, ws)
	res.Meta.LoadAvg = append(res.Meta.LoadAvg, loadAvg())
	if o.phase("raw") {
		if err := measureRawDisk(ctx, ws, o.rawFor, res); err != nil {
			return fmt.Errorf("raw disk: %w", err)
		}
	}
	if o.phase("etcd") {
		if err := measureEtcd(ctx, ws, o, res); err != nil {
			return fmt.Errorf("etcd: %w", err)
		}
	}
	if o.phase("jetstream") {
		if err := measureJetStream(ctx, ws, o, res); err != nil {
			return fmt.Errorf("jetstream: %w", err)
		}
	}
	if o.phase("ingest") || o.phase("stream") || o.phase("failover") || o.phase("startup") || o.phase("catchup") {
		bin, err := orchestratorBinary(ctx, o.bin, ws)
		if err != nil {
			return err
		}
		if err := measureCluster(ctx, ws, bin, o, res); err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
	}
	res.Meta.LoadAvg = append(res.Meta.LoadAvg, loadAvg())
	res.Meta.TotalSeconds = round(time.Since(start).Seconds(), 1)
	res.computeRatios()
	res.addRSSFlatness()
	printTable(os.Stdout, res)
	if err := res.write(o.out); err != nil {
		return err
	}
	logf("wrote %s", o.out)
	return nil
}
