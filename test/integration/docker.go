//go:build integration

package integration

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// Labels and names of everything the suite creates. Stale leftovers are
// found by the label and removed before a run.
const (
	LabelKey   = "com.autonomyops.integration"
	LabelValue = "partition-suite"
	NetName    = "autonomy-it"
	Prefix     = "autonomy-it-"
)

// run runs a command and returns its trimmed stdout; the error carries the
// command line and its stderr.
func run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return strings.TrimSpace(out.String()), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// docker runs the docker CLI with a bound on how long it may take.
func docker(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	return run(ctx, "docker", args...)
}

// nsenter runs a host tool (iptables, tc) inside the network namespace of
// the process pid.
func nsenter(pid int, tool string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return run(ctx, "nsenter", append([]string{"-t", fmt.Sprint(pid), "-n", tool}, args...)...)
}

// removeStale removes containers and networks left by an earlier run that
// did not clean up (killed test binary, -timeout panic), and unmounts the
// tmpfs mounts under the suite's work root.
func removeStale(root string) error {
	ids, err := docker("ps", "-aq", "--filter", "label="+LabelKey+"="+LabelValue)
	if err != nil {
		return err
	}
	if ids != "" {
		if _, err := docker(append([]string{"rm", "-f", "-v"}, strings.Fields(ids)...)...); err != nil {
			return err
		}
	}
	nets, err := docker("network", "ls", "-q", "--filter", "label="+LabelKey+"="+LabelValue)
	if err != nil {
		return err
	}
	for _, n := range strings.Fields(nets) {
		if _, err := docker("network", "rm", n); err != nil {
			return err
		}
	}
	unmountUnder(root)
	return nil
}
