package ctl

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/spf13/cobra"
)

// The fleet group: `fleet summary`, derived by the leader from committed
// frames (GET /v1/fleet/summary).

func (in *invocation) fleetCmd() *cobra.Command {
	cmd := groupCommand("fleet", "The agents that send telemetry")
	cmd.AddCommand(&cobra.Command{
		Use:   "summary",
		Short: "Agents seen, per agent last seen, last Seq, events by kind and errors",
		Long: "GET /v1/fleet/summary on the leader: derived from committed frames only (up to safe_seq).\n" +
			"-o json prints the API's answer unchanged (wire.FleetSummary).",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			c, err := in.apiClient()
			if err != nil {
				return err
			}
			fs, _, err := c.FleetSummary(in.ctx)
			if err != nil {
				return err
			}
			return in.emit(fs, func(w *tabw) { fleetTable(w, fs) })
		},
	})
	return cmd
}

func fleetTable(w *tabw, fs *wire.FleetSummary) {
	fmt.Fprintf(w, "AGENTS\t%d\n", len(fs.Agents))
	fmt.Fprintf(w, "EVENTS\t%d (errors %d)\n", fs.Events, fs.Errors)
	fmt.Fprintf(w, "BY_KIND\t%s\n", kindCounts(fs.ByKind))
	fmt.Fprintf(w, "SAFE_SEQ\t%d\n", fs.SafeSeq)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "AGENT\tEVENTS\tERRORS\tLAST_SEEN\tLAST_SEQ\tBY_KIND")
	agents := append([]wire.FleetAgent(nil), fs.Agents...)
	sort.SliceStable(agents, func(i, j int) bool { return agents[i].Agent < agents[j].Agent })
	for _, a := range agents {
		seen := "-"
		if !a.LastSeen.IsZero() {
			seen = a.LastSeen.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%s\t%d\t%s\n", dash(a.Agent), a.Events, a.Errors, seen, a.LastSeq, kindCounts(a.ByKind))
	}
}

// kindCounts renders {"error":2,"heartbeat":9} as "error=2,heartbeat=9".
func kindCounts(m map[string]uint64) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", dash(k), m[k])
	}
	return strings.Join(parts, ",")
}
