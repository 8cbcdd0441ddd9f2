package ctl

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/autonomyops/orchestrator/api/client"
	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/spf13/cobra"
)

// The ha group: `ha status` (etcd's view and gossip's side by side) and
// `ha failover [--to NODE] [--dry-run]`.

// FailoverTimeout is the request timeout of `ha failover` unless --timeout
// is given: the leader bounds a handoff to 30s and answers only after it.
const FailoverTimeout = 45 * time.Second

func (in *invocation) haCmd() *cobra.Command {
	cmd := groupCommand("ha", "High availability: leader, members, quorum, planned failover")
	cmd.AddCommand(in.haStatusCmd(), in.haFailoverCmd())
	return cmd
}

func (in *invocation) haStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the leader, etcd's and gossip's view of every member side by side, WAL positions and the quorum",
		Long: "GET /v1/ha/status from the leader, or from the first node that answers when no leader is known.\n" +
			"Each member shows etcd's view (voter or learner, holder of the leader key) next to gossip's (alive, dead,\n" +
			"or unknown if never seen) and replication's (role, fsynced Seq, lag); every disagreement the node found is printed as a\n" +
			"WARNING line. -o json prints the API's answer unchanged.\n\n" +
			"Under quorum loss the answering node shows no leader (and the last one it saw), and every member it knows\n" +
			"from its last copy of etcd's registry, each marked alive or unreachable. Exit 0 when a leader can commit,\n" +
			"7 when the answering node cannot tell that any leader can commit, 3 when no endpoint answered.",
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
			if err := in.emit(st, func(w *tabw) { haStatusTable(w, st, rep.URL) }); err != nil {
				return err
			}
			if st.Leader == nil {
				fmt.Fprintf(in.cli.Stderr, "ha status: no leader can commit, as %s can tell\n", dash(st.Node))
				printHints(in.cli.Stderr, hintNoCommittingLeader, hintWaitingForVoter)
				return &errSilent{code: ExitNoLeader}
			}
			return nil
		},
	}
}

func haStatusTable(w *tabw, st *wire.HAStatus, from string) {
	if l := st.Leader; l != nil {
		since := "-"
		if !l.Since.IsZero() {
			since = l.Since.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(w, "LEADER\t%s at %s, epoch %d, since %s\n", dash(l.Name), dash(l.APIURL), l.Epoch, since)
	} else if e := st.Etcd; e != nil && !e.Stale && e.Leader != "" {
		// etcd has a quorum and a key holder, which does not serve.
		fmt.Fprintf(w, "LEADER\tnone can commit, as %s can tell: %s holds the leader key (epoch %d) but does not serve (taking over, or waiting for every voter after a restart)\n",
			dash(st.Node), e.Leader, e.Epoch)
	} else if l := st.LastLeader; l != nil {
		fmt.Fprintf(w, "LEADER\tnone can commit (no quorum, as %s can tell); last seen %s at %s, epoch %d\n", dash(st.Node),
			dash(l.Name), dash(l.APIURL), l.Epoch)
	} else {
		fmt.Fprintln(w, "LEADER\tnone can commit (none known)")
	}
	if e := st.Etcd; e != nil && e.Stale {
		fmt.Fprintf(w, "ETCD\tno quorum: leader key holder unknown; %d members in this node's last copy\n", len(e.Members))
	} else if e != nil {
		holder := "nobody"
		if e.Leader != "" {
			holder = e.Leader
		}
		fmt.Fprintf(w, "ETCD\tleader key held by %s, epoch %d, %d members\n", holder, e.Epoch, len(e.Members))
	} else {
		fmt.Fprintln(w, "ETCD\t(this node did not report etcd's view)")
	}
	fmt.Fprintf(w, "SAFE_SEQ\t%d\n", st.SafeSeq)
	fmt.Fprintf(w, "QUORUM\tsize %d, healthy %d\n", st.Quorum.Size, st.Quorum.Healthy)
	fmt.Fprintf(w, "ANSWERED_BY\t%s (%s) at %s\n", dash(st.Node), dash(st.Role), baseURL(from))
	fmt.Fprintln(w)
	fmt.Fprintln(w, "MEMBER\tSTATE\tETCD\tGOSSIP\tROLE\tLAST_SEQ\tFSYNCED_SEQ\tLAG\tWAL_LEARNER\tVERSION\tAPI_URL\tFAIL_HARD")
	for _, r := range joinViews(st) {
		if r.m == nil {
			fmt.Fprintf(w, "%s\t-\t%s\tabsent\t-\t-\t-\t-\t-\t-\t-\t-\n", r.name, r.etcd)
			continue
		}
		m := r.m
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%t\t%s\t%s\t%s\n", m.Name, dash(m.State), r.etcd, dash(m.GossipState), dash(m.Role),
			m.LastSeq, m.FsyncedSeq, m.Lag, m.Learner, dash(m.Version), dash(m.APIURL), dash(m.FailHard))
	}
	if len(st.Disagreements) > 0 {
		fmt.Fprintln(w)
	}
	for _, d := range st.Disagreements {
		fmt.Fprintf(w, "WARNING: %s\n", d)
	}
}

// viewRow is one member as etcd and gossip see it.
type viewRow struct {
	name string
	etcd string       // voter, learner (+ ",leader-key"), absent, or ? when etcd's view is missing
	m    *wire.Member // gossip's and replication's view; nil when gossip does not know the node
}

// joinViews lines up gossip's members and etcd's by name: gossip's order
// first, then members only etcd knows.
func joinViews(st *wire.HAStatus) []viewRow {
	etcdRole := func(name string) string {
		if st.Etcd == nil {
			return "?"
		}
		for _, em := range st.Etcd.Members {
			if em.Name != name {
				continue
			}
			role := "voter"
			if em.Learner {
				role = "learner"
			}
			if st.Etcd.Leader != "" && st.Etcd.Leader == name {
				role += ",leader-key"
			}
			return role
		}
		return "absent"
	}
	var rows []viewRow
	seen := map[string]bool{}
	for i := range st.Members {
		m := &st.Members[i]
		seen[m.Name] = true
		rows = append(rows, viewRow{name: m.Name, etcd: etcdRole(m.Name), m: m})
	}
	if st.Etcd != nil {
		for _, em := range st.Etcd.Members {
			name := em.Name
			if name == "" {
				name = "(unnamed " + em.ID + ")"
			}
			if seen[name] {
				continue
			}
			seen[name] = true
			rows = append(rows, viewRow{name: name, etcd: etcdRole(em.Name)})
		}
	}
	return rows
}

func (in *invocation) haFailoverCmd() *cobra.Command {
	var req wire.FailoverRequest
	cmd := &cobra.Command{
		Use:   "failover [--to NODE] [--dry-run]",
		Short: "Hand leadership over to another node without losing an acknowledged write",
		Long: "POST /v1/ha/failover on the leader (admin role). The leader stops taking writes, waits until the target has\n" +
			"fsynced everything, and resigns; the target takes over. Without --to the leader picks the best candidate.\n\n" +
			"--dry-run changes nothing and lists every candidate with each reason that blocks it (lagging, not healthy in\n" +
			"gossip, learner, not answering replication). A refused failover prints the leader's reason and exits 6.\n" +
			"The request waits up to " + FailoverTimeout.String() + " unless --timeout is given, and is never sent to a second node.",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("timeout") {
				in.flags.timeout = FailoverTimeout
			}
			c, err := in.apiClient()
			if err != nil {
				return err
			}
			fr, _, err := c.Failover(in.ctx, req)
			if err != nil {
				return in.failoverError(req, err)
			}
			return in.emit(fr, func(w *tabw) { failoverTable(w, fr, req) })
		},
	}
	cmd.Flags().StringVar(&req.To, "to", "", "the node to hand over to (default: the best candidate)")
	cmd.Flags().BoolVar(&req.DryRun, "dry-run", false, "only list the candidates and what blocks each")
	return cmd
}

func failoverTable(w *tabw, fr *wire.FailoverResponse, req wire.FailoverRequest) {
	if !fr.DryRun {
		fmt.Fprintf(w, "leader moved from %s to %s (epoch %d) in %s\n", dash(fr.From), dash(fr.NewLeader), fr.NewEpoch,
			(time.Duration(fr.TookMs) * time.Millisecond).String())
		return
	}
	fmt.Fprintf(w, "dry run: nothing changed. Leader: %s\n\n", dash(fr.From))
	fmt.Fprintln(w, "CANDIDATE\tELIGIBLE\tFSYNCED_SEQ\tLAG\tGOSSIP\tBLOCKERS")
	for _, c := range fr.Candidates {
		el := "no"
		if c.Eligible {
			el = "yes"
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%s\t%s\n", c.Name, el, c.FsyncedSeq, c.Lag, dash(c.Gossip), dash(strings.Join(c.Blockers, "; ")))
	}
	fmt.Fprintln(w)
	switch {
	case fr.To != "":
		fmt.Fprintf(w, "a failover would hand over to %s: autonomyctl ha failover --to %s\n", fr.To, fr.To)
	case req.To != "":
		fmt.Fprintf(w, "a failover to %s would be refused\n", req.To)
	default:
		fmt.Fprintln(w, "no candidate is eligible: a failover would be refused")
	}
}

// failoverError explains a failed failover request.
func (in *invocation) failoverError(req wire.FailoverRequest, err error) error {
	w := in.cli.Stderr
	var he *client.HTTPError
	if errors.As(err, &he) && he.Status == http.StatusConflict {
		msg := he.Message
		if msg == "" {
			msg = he.Code
		}
		fmt.Fprintf(w, "failover refused: %s\n", msg)
		if !req.DryRun {
			dry := "autonomyctl ha failover --dry-run"
			if req.To != "" {
				dry += " --to " + req.To
			}
			printHints(w, fmt.Sprintf(hintFailoverDryRun, dry))
		}
		return &errSilent{code: ExitConflict}
	}
	var ue *url.Error
	var op *net.OpError
	if !req.DryRun && errors.As(err, &ue) && !(errors.As(err, &op) && op.Op == "dial") {
		// The request may have reached the leader: the handoff may be under
		// way or done. It was not sent anywhere else.
		fmt.Fprintln(w, err)
		printHints(w, hintFailoverMayHaveHappened)
		printHints(w, in.hints(err)...)
		return &errSilent{code: exitCode(err)}
	}
	return err
}
