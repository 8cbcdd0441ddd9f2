package ctl

import (
	"fmt"
	"time"

	"github.com/autonomyops/orchestrator/api"
	"github.com/spf13/cobra"
)

// The ha group: `ha status` now; `ha failover [--to NODE] [--dry-run]` joins
// it with issue 4.

func (in *invocation) haCmd() *cobra.Command {
	cmd := groupCommand("ha", "High availability: leader, members, quorum")
	cmd.AddCommand(in.haStatusCmd())
	return cmd
}

func (in *invocation) haStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the leader, every member's role, gossip state and WAL position, and the quorum",
		Long: "GET /v1/ha/status from the leader, or from the first node that answers when no leader is known.\n" +
			"-o json prints the API's answer unchanged.",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			c, err := in.apiClient()
			if err != nil {
				return err
			}
			st, rep, err := c.HAStatus(in.ctx)
			if err != nil {
				return err
			}
			return in.emit(st, func(w *tabw) { haStatusTable(w, st, rep.URL) })
		},
	}
}

func haStatusTable(w *tabw, st *api.HAStatus, from string) {
	if l := st.Leader; l != nil {
		since := "-"
		if !l.Since.IsZero() {
			since = l.Since.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(w, "LEADER\t%s at %s, epoch %d, since %s\n", dash(l.Name), dash(l.APIURL), l.Epoch, since)
	} else {
		fmt.Fprintln(w, "LEADER\t(none known)")
	}
	fmt.Fprintf(w, "SAFE_SEQ\t%d\n", st.SafeSeq)
	fmt.Fprintf(w, "QUORUM\tsize %d, healthy %d\n", st.Quorum.Size, st.Quorum.Healthy)
	fmt.Fprintf(w, "ANSWERED_BY\t%s (%s) at %s\n", dash(st.Node), dash(st.Role), baseURL(from))
	fmt.Fprintln(w)
	fmt.Fprintln(w, "NAME\tROLE\tGOSSIP\tLAST_SEQ\tFSYNCED_SEQ\tLAG\tLEARNER\tAPI_URL\tFAIL_HARD")
	for _, m := range st.Members {
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%t\t%s\t%s\n", m.Name, dash(m.Role), dash(m.GossipState),
			m.LastSeq, m.FsyncedSeq, m.Lag, m.Learner, dash(m.APIURL), dash(m.FailHard))
	}
}
