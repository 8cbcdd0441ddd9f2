package ctl

import (
	"fmt"
	"strings"

	"github.com/autonomyops/orchestrator/api/client"
	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/spf13/cobra"
)

// statusNode is one endpoint's answer to GET /v1/health.
type statusNode struct {
	Endpoint   string       `json:"endpoint"`
	HTTPStatus int          `json:"http_status"` // 0 when the node did not answer
	Health     *wire.Health `json:"health,omitempty"`
	Error      string       `json:"error,omitempty"`
}

// statusResult is `status -o json`.
type statusResult struct {
	Source string `json:"source"` // where the endpoints came from
	Leader string `json:"leader"` // the endpoint that answered 200, or ""
	// CanCommit: an endpoint answered 200, or a node that answered names a
	// leader that can commit (it does not report no_quorum). False makes
	// the exit status ExitNoLeader.
	CanCommit bool         `json:"can_commit"`
	Nodes     []statusNode `json:"nodes"`
}

// reportsCommittingLeader: h names a leader and does not say no_quorum.
// (A node names a leader in /v1/health only while one can commit as it can
// tell.)
func reportsCommittingLeader(h *wire.Health) bool {
	if h == nil || h.Leader == "" {
		return false
	}
	for _, r := range h.Reasons {
		if r == "no_quorum" {
			return false
		}
	}
	return true
}

func (in *invocation) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Ask every endpoint for its health: role, leader, epoch, safe_seq",
		Long: "Ask every endpoint for GET /v1/health and show each node's view. The leader that can commit answers 200,\n" +
			"every other node 503 with its reasons (no_quorum, not_leader, learner, ...). Like `etcdctl endpoint health` it\n" +
			"can gate a script: exit 0 when a leader can commit (an endpoint answered 200, or a node names a leader that\n" +
			"can commit), 7 when nodes answered but no leader can commit, 3 when no endpoint answered.",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			c, err := in.apiClient()
			if err != nil {
				return err
			}
			results := c.HealthAll(in.ctx)
			res := statusResult{Source: in.eps.Source, Nodes: make([]statusNode, len(results))}
			answered := 0
			var unreachable []error
			for i, r := range results {
				n := statusNode{Endpoint: r.Endpoint, HTTPStatus: r.Status, Health: r.Health}
				if r.Err != nil {
					n.Error = r.Err.Error()
				}
				if r.Status != 0 {
					answered++
				} else if r.Err != nil {
					unreachable = append(unreachable, r.Err)
				}
				if r.Leading() && res.Leader == "" {
					res.Leader = r.Endpoint
				}
				if r.Leading() || (r.Status != 0 && reportsCommittingLeader(r.Health)) {
					res.CanCommit = true
				}
				res.Nodes[i] = n
			}
			if answered == 0 {
				return &client.UnreachableError{Errs: unreachable}
			}
			if err := in.emit(res, func(w *tabw) { statusTable(w, res) }); err != nil {
				return err
			}
			if !in.jsonOutput() {
				for _, n := range res.Nodes {
					if n.Error != "" {
						fmt.Fprintln(in.cli.Stderr, n.Error)
					}
				}
			}
			if !res.CanCommit {
				fmt.Fprintln(in.cli.Stderr, "status: no leader can commit: no endpoint answered 200 and no node that answered names a leader that can commit")
				printHints(in.cli.Stderr, hintNoCommittingLeader, hintWaitingForVoter)
				return &errSilent{code: ExitNoLeader}
			}
			return nil
		},
	}
}

func statusTable(w *tabw, res statusResult) {
	fmt.Fprintln(w, "ENDPOINT\tNODE\tROLE\tLEADER\tEPOCH\tSAFE_SEQ\tLAST_SEQ\tWAL\tHTTP\tREASONS")
	for _, n := range res.Nodes {
		httpCol := fmt.Sprint(n.HTTPStatus)
		if n.HTTPStatus == 0 {
			httpCol = "unreachable"
		}
		h := n.Health
		if h == nil {
			fmt.Fprintf(w, "%s\t-\t-\t-\t-\t-\t-\t-\t%s\t-\n", n.Endpoint, httpCol)
			continue
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\n", n.Endpoint, dash(h.Node), dash(h.Role), dash(h.Leader),
			h.Epoch, h.SafeSeq, h.LastSeq, dash(h.WAL), httpCol, dash(strings.Join(h.Reasons, ",")))
	}
	switch {
	case res.Leader != "":
		fmt.Fprintf(w, "\nleader: %s (answers 200 and can commit)\n", res.Leader)
	case res.CanCommit:
		for _, n := range res.Nodes {
			if n.HTTPStatus != 0 && reportsCommittingLeader(n.Health) {
				fmt.Fprintf(w, "\nno endpoint answered 200, but %s reports leader %s (%s) can commit: the leader is not in the endpoint list\n",
					dash(n.Health.Node), n.Health.Leader, dash(n.Health.LeaderURL))
				break
			}
		}
	default:
		fmt.Fprintln(w, "\nno endpoint answered 200 and no node names a leader that can commit: no leader can commit right now")
	}
}
