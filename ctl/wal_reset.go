package ctl

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/autonomyops/orchestrator/node/datadir"
	"github.com/autonomyops/orchestrator/walrepl"
	"github.com/spf13/cobra"
)

// resetResult is what `wal reset -o json` prints.
type resetResult struct {
	DataDir      string    `json:"data_dir"`
	TelemetryDir string    `json:"telemetry_dir"`
	Backup       string    `json:"backup"` // "" when there was no telemetry directory to move
	Marker       string    `json:"marker"`
	By           string    `json:"by"`
	At           time.Time `json:"at"`
	Previous     *walCheck `json:"previous"` // what verify said about the WAL before the reset
}

func (in *invocation) walResetCmd() *cobra.Command {
	var (
		dataDir string
		yes     bool
	)
	cmd := &cobra.Command{
		Use:   "reset --data-dir DIR [--yes]",
		Short: "Accept telemetry loss on a stopped node: back the WAL up and start it empty next time",
		Long: "The runbook's Path 2 (operator reset), done safely. With the node stopped:\n" +
			"  1. refuses while a node holds the data-dir lock (DIR/LOCK);\n" +
			"  2. moves DIR/telemetry to DIR/telemetry.corrupt-YYYYMMDD (the runbook's name; a later reset the same day\n" +
			"     takes telemetry.corrupt-YYYYMMDD.2, .3, ...) for post-mortem analysis;\n" +
			"  3. creates an empty DIR/telemetry holding the one-shot reset marker telemetry.reset.\n" +
			"The next start begins with an empty WAL and logs WAL_RESET_BY_OPERATOR at WARN (and an audit event); in a\n" +
			"cluster the node then re-replicates the committed history from the leader. Without --yes it asks for\n" +
			"confirmation on a terminal, and refuses when stdin is not one.",
		Example: "  sudo systemctl stop autonomy-orchestrator\n  sudo -u autonomy autonomyctl wal reset --data-dir /var/lib/autonomy\n  sudo systemctl start autonomy-orchestrator",
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			return in.walReset(dataDir, yes)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the stopped node's data directory (required), e.g. /var/lib/autonomy")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	_ = cmd.MarkFlagDirname("data-dir")
	return cmd
}

func (in *invocation) walReset(dataDir string, yes bool) error {
	tdir, err := telemetryDirOf(dataDir)
	if err != nil {
		return err
	}
	// The lock the running node holds (package datadir): held for the whole
	// reset, it also keeps a node from starting half-way through.
	lock, err := datadir.TryLock(dataDir)
	if err != nil {
		var le *datadir.LockedError
		if errors.As(err, &le) {
			by := ""
			if le.Holder != "" {
				by = " (pid " + le.Holder + ")"
			}
			return fmt.Errorf("refusing to reset the WAL: a running node holds the data-dir lock %s%s: stop it first (sudo systemctl stop autonomy-orchestrator)", le.Path, by)
		}
		return err
	}
	defer lock.Unlock()

	st, err := os.Lstat(tdir)
	haveDir := err == nil
	if err != nil && !isNotExist(err) {
		return err
	}
	if haveDir && !st.IsDir() {
		return fmt.Errorf("refusing to reset: %s is not a directory (a symlink to another disk?); move it aside by hand", tdir)
	}
	prev, err := checkWAL(dataDir)
	if err != nil {
		return err
	}
	local := in.cli.now()
	now := local.UTC().Truncate(time.Second)
	backup := ""
	if haveDir {
		backup = uniqueBackup(dataDir, local)
	}
	if !yes {
		if err := in.confirmReset(tdir, backup, prev); err != nil {
			return err
		}
	}

	if haveDir {
		if err := os.Rename(tdir, backup); err != nil {
			return fmt.Errorf("backing up %s: %w", tdir, err)
		}
	}
	if err := os.Mkdir(tdir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w (the old telemetry is at %s)", tdir, err, backup)
	}
	ref := dataDir
	if haveDir {
		ref = backup
	}
	if err := datadir.ChownLike(tdir, ref); err != nil {
		return fmt.Errorf("giving %s the owner of %s: %w", tdir, ref, err)
	}
	if err := walrepl.SyncDir(dataDir); err != nil {
		return fmt.Errorf("fsync %s: %w", dataDir, err)
	}
	by := in.cli.getenv("SUDO_USER")
	if by == "" {
		by = in.cli.getenv("USER")
	}
	if by == "" {
		by = "unknown"
	}
	if err := walrepl.WriteResetMarker(tdir, walrepl.ResetMarker{At: now, By: by, Backup: backup}); err != nil {
		return fmt.Errorf("writing the reset marker in %s: %w", tdir, err)
	}
	marker := filepath.Join(tdir, walrepl.ResetMarkerFile)
	if err := datadir.ChownLike(marker, tdir); err != nil {
		return fmt.Errorf("giving %s the owner of %s: %w", marker, tdir, err)
	}

	res := resetResult{DataDir: dataDir, TelemetryDir: tdir, Backup: backup, Marker: marker, By: by, At: now, Previous: prev}
	return in.emit(res, func(w *tabw) {
		fmt.Fprintf(w, "WAL reset prepared in %s:\n", dataDir)
		if backup != "" {
			fmt.Fprintf(w, "  backed up\t%s -> %s\n", tdir, backup)
		} else {
			fmt.Fprintf(w, "  backed up\tnothing (%s did not exist)\n", tdir)
		}
		fmt.Fprintf(w, "  created\t%s (empty) with the one-shot marker %s (by %s at %s)\n", tdir, walrepl.ResetMarkerFile, by, now.Format(time.RFC3339))
		w.Flush()
		fmt.Fprintln(w, "Next: start the node (sudo systemctl start autonomy-orchestrator). It starts with an empty WAL and logs")
		fmt.Fprintln(w, "WAL_RESET_BY_OPERATOR at WARN; in a cluster it rejoins as a learner and re-replicates the committed history")
		fmt.Fprintln(w, "from the leader, so nothing the cluster committed is lost.")
		if backup != "" {
			fmt.Fprintf(w, "Keep %s for post-mortem analysis; delete it when you no longer need it.\n", backup)
		}
	})
}

// uniqueBackup returns DIR/telemetry.corrupt-YYYYMMDD, the runbook's name
// (`telemetry.corrupt-$(date +%Y%m%d)`: t's date in its own time zone, local
// time as date(1) prints it), or, when that is taken by an earlier reset of
// the same day (by this command or by hand), the first free one of
// telemetry.corrupt-YYYYMMDD.2, .3, ...
func uniqueBackup(dataDir string, t time.Time) string {
	base := filepath.Join(dataDir, datadir.BackupPrefix+t.Format("20060102"))
	p := base
	for n := 2; fileExists(p); n++ {
		p = fmt.Sprintf("%s.%d", base, n)
	}
	return p
}

// confirmReset asks on the terminal. Without one it refuses: a script must
// say --yes.
func (in *invocation) confirmReset(tdir, backup string, prev *walCheck) error {
	if in.cli.StdinIsTerminal == nil || !in.cli.StdinIsTerminal() || in.cli.Stdin == nil {
		return usagef("refusing to reset the WAL without confirmation: stdin is not a terminal; re-run with --yes")
	}
	w := in.cli.Stderr
	fmt.Fprintf(w, "This discards the telemetry WAL of this node:\n")
	if backup != "" {
		fmt.Fprintf(w, "  - %s is moved to %s\n", tdir, backup)
	}
	fmt.Fprintf(w, "  - the next start begins with an empty WAL (WAL_RESET_BY_OPERATOR)\n")
	switch {
	case !prev.OK:
		fmt.Fprintf(w, "The WAL now: %s\n", prev.Error)
	case prev.WALExists:
		fmt.Fprintf(w, "The WAL now passes every check (%d frames, safe_seq %d): a reset is not needed to start this node.\n", prev.Frames, prev.SafeSeq)
	}
	fmt.Fprintf(w, "Telemetry that no other node holds is lost. Type \"yes\" to continue: ")
	line, err := bufio.NewReader(in.cli.Stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if strings.TrimSpace(line) != "yes" {
		fmt.Fprintln(w)
		return &exitError{code: ExitError, err: errors.New("aborted: nothing was changed")}
	}
	return nil
}
