package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"syscall"

	"github.com/autonomyops/orchestrator/walrepl"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
)

// Exit statuses of autonomy-orchestrator.
const (
	ExitOK       = 0
	ExitError    = 1                    // any other failure; systemd may restart
	ExitUsage    = 2                    // bad flags or config; also SERVE_REFUSED_AS_ROOT
	ExitFailHard = walrepl.ExitFailHard // WAL recovery refused to start (65); no restart
)

// Main runs the daemon's command line and returns the exit status.
func Main(args []string, stderr io.Writer) int {
	// SIGHUP (systemctl reload) re-reads the tokens file and the TLS
	// files. Caught from the start: its default action would end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	f, _ := stderr.(*os.File)
	journal := JournalStream(f)
	errOut := errorWriter{w: stderr, journal: journal}
	cfg := DefaultConfig()
	var configFile string
	code := ExitOK
	root := &cobra.Command{
		Use:           "autonomy-orchestrator",
		Short:         "AutonomyOps HA orchestrator node",
		Version:       Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	serve := &cobra.Command{
		Use:   "serve",
		Short: "run this node: WAL, etcd member, replication and the REST API",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configFile != "" {
				if err := LoadFile(configFile, cmd.Flags()); err != nil {
					code = ExitUsage
					return err
				}
			}
			if err := cfg.Validate(); err != nil {
				code = ExitUsage
				return err
			}
			log := newLogger(stderr, cfg, journal)
			// Process-wide, so here and not in run (which tests call in
			// one process for several nodes).
			limit, source := applyMemoryLimit(cfg, os.Getenv)
			f := log.WithField("source", source)
			if limit != math.MaxInt64 {
				f = f.WithField("limit_bytes", limit)
			}
			f.Info("MEMORY_LIMIT")
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			err := run(ctx, cfg, log, hup)
			var root *ServeAsRootError
			if errors.As(err, &root) {
				root.Args = args
				fmt.Fprintln(errOut, root.Error())
				log.WithFields(logrus.Fields{"data_dir": root.DataDir, "owner_uid": root.OwnerUID, "owner": root.Owner,
					"error": root.Error()}).Error(MsgServeRefusedAsRoot)
				code = ExitUsage
				return nil
			}
			var rerr *walrepl.RecoveryError
			if errors.As(err, &rerr) {
				fmt.Fprintln(errOut, rerr.Error())
				log.WithFields(logrus.Fields{"cause": string(rerr.Cause), "dir": rerr.Dir, "error": rerr.Error()}).
					Error("WAL_RECOVERY_FAIL_HARD")
				code = ExitFailHard
				return nil
			}
			if err != nil {
				log.WithError(err).Error("NODE_FAILED")
				code = ExitError
				return nil
			}
			return nil
		},
	}
	cfg.BindFlags(serve.Flags())
	serve.Flags().StringVar(&configFile, "config", "", "YAML file whose keys are these flags' names (command-line flags win)")
	root.AddCommand(serve)
	// The same form as `autonomyctl --version`: the name, then the package's
	// version (the Makefile links packaging/pkgversion's output into both).
	root.SetVersionTemplate("autonomy-orchestrator {{.Version}}\n")
	root.SetArgs(args)
	root.SetOut(os.Stdout)
	root.SetErr(stderr)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(errOut, "autonomy-orchestrator:", err)
		if code == ExitOK {
			code = ExitUsage
		}
	}
	return code
}
