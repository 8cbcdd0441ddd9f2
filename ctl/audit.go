package ctl

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/spf13/cobra"
)

// `audit [--limit N]`: operator actions recorded in etcd, newest first
// (GET /v1/audit).

func (in *invocation) auditCmd() *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "audit [--limit N]",
		Short: "Operator actions, newest first: failovers, WAL resets, settings changes, who did them",
		Long: "GET /v1/audit on the leader. Who is the token's name (\"anonymous\" when auth is off).\n" +
			"-o json prints the API's answer unchanged (wire.AuditResponse).",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			if limit < 0 || limit > 10000 {
				return usagef("--limit must be from 0 (the server's default, 100) to 10000, not %d", limit)
			}
			c, err := in.apiClient()
			if err != nil {
				return err
			}
			ar, _, err := c.Audit(in.ctx, limit)
			if err != nil {
				return err
			}
			return in.emit(ar, func(w *tabw) { auditTable(w, ar) })
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "at most N records, the newest (0: the server's default, 100)")
	return cmd
}

func auditTable(w *tabw, ar *wire.AuditResponse) {
	fmt.Fprintln(w, "AT\tWHO\tACTION\tNODE\tDETAILS")
	for _, r := range ar.Records {
		details := "-"
		if len(r.Details) > 0 {
			if b, err := json.Marshal(r.Details); err == nil { // map keys come out sorted
				details = string(b)
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", r.At.UTC().Format(time.RFC3339), dash(r.Who), dash(r.Action), dash(r.Node), details)
	}
	if len(ar.Records) == 0 {
		fmt.Fprintln(w, "(no operator action recorded)")
	}
}
