package ctl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/autonomyops/orchestrator/api/client"
	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/spf13/cobra"
)

// The wal group. status and inspect work online (a node's own WAL through
// the API) and offline (--data-dir, the node stopped); verify and reset are
// offline only. Offline code is in wal_offline.go, wal_verify.go and
// wal_reset.go.

// DefaultInspectLimit is how many frames `wal inspect` shows by default (the
// newest).
const DefaultInspectLimit = 100

func (in *invocation) walCmd() *cobra.Command {
	cmd := groupCommand("wal", "Telemetry WAL: status, inspect, verify, reset")
	cmd.AddCommand(in.walStatusCmd(), in.walInspectCmd(), in.walVerifyCmd(), in.walResetCmd())
	return cmd
}

func (in *invocation) walStatusCmd() *cobra.Command {
	var dataDir string
	var all bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show a WAL's first/last/safe Seq, size and fsync latency",
		Long: "Online: GET /v1/wal/status from the first endpoint that answers (every node answers about its own WAL;\n" +
			"--all asks every endpoint). Offline, with --data-dir and the node stopped: the same recovery checks a start\n" +
			"runs, read-only, plus the telemetry files and their sizes. Exits 65 if the WAL violates an invariant.",
		Example: "  autonomyctl wal status\n  autonomyctl wal status --all -o json\n  sudo autonomyctl wal status --data-dir /var/lib/autonomy",
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			if dataDir != "" {
				if all {
					return usagef("--all asks the nodes over the API; it cannot be combined with --data-dir")
				}
				return in.walStatusOffline(dataDir)
			}
			c, err := in.apiClient()
			if err != nil {
				return err
			}
			if all {
				return in.walStatusAll(c)
			}
			st, rep, err := c.WALStatus(in.ctx, "")
			if err != nil {
				return err
			}
			return in.emit(st, func(w *tabw) { walStatusTable(w, st, rep.URL) })
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "read the WAL of a stopped node in this data directory (offline)")
	cmd.Flags().BoolVar(&all, "all", false, "ask every endpoint for its own WAL's status")
	_ = cmd.MarkFlagDirname("data-dir")
	return cmd
}

func walStatusTable(w *tabw, st *wire.WALStatus, from string) {
	fmt.Fprintf(w, "NODE\t%s\t%s\n", dash(st.Node), baseURL(from))
	fmt.Fprintf(w, "DIR\t%s\n", dash(st.Dir))
	fmt.Fprintf(w, "WAL_ID\t%s\n", dash(st.WALID))
	fmt.Fprintf(w, "FIRST_SEQ\t%d\n", st.FirstSeq)
	fmt.Fprintf(w, "LAST_SEQ\t%d\n", st.LastSeq)
	fmt.Fprintf(w, "FSYNCED_SEQ\t%d\n", st.FsyncedSeq)
	fmt.Fprintf(w, "SAFE_SEQ\t%d\t(persisted %d)\n", st.SafeSeq, st.PersistedSafeSeq)
	fmt.Fprintf(w, "BYTES\t%d\n", st.Bytes)
	fmt.Fprintf(w, "FSYNC\t%d calls\tlast %.3fms avg %.3fms max %.3fms\n", st.FsyncCount, st.FsyncLastMs, st.FsyncAvgMs, st.FsyncMaxMs)
	if st.Failed != "" {
		fmt.Fprintf(w, "FAILED\t%s\n", st.Failed)
	}
}

// walStatusNode is one row of `wal status --all -o json`.
type walStatusNode struct {
	Endpoint string          `json:"endpoint"`
	Status   *wire.WALStatus `json:"status,omitempty"`
	Error    string          `json:"error,omitempty"`
}

func (in *invocation) walStatusAll(c *client.Client) error {
	eps := c.Endpoints()
	rows := make([]walStatusNode, len(eps))
	var unreachable []error
	for i, ep := range eps {
		rows[i].Endpoint = ep
		st, _, err := c.WALStatus(in.ctx, ep)
		if err != nil {
			rows[i].Error = err.Error()
			if exitCode(err) == ExitUnreachable {
				unreachable = append(unreachable, err)
			}
			continue
		}
		rows[i].Status = st
	}
	if len(unreachable) == len(eps) {
		return &client.UnreachableError{Errs: unreachable}
	}
	err := in.emit(rows, func(w *tabw) {
		fmt.Fprintln(w, "ENDPOINT\tNODE\tFIRST_SEQ\tLAST_SEQ\tFSYNCED_SEQ\tSAFE_SEQ\tBYTES\tFSYNC_AVG_MS\tFAILED")
		for _, r := range rows {
			if r.Status == nil {
				fmt.Fprintf(w, "%s\t-\t-\t-\t-\t-\t-\t-\t-\n", r.Endpoint)
				continue
			}
			s := r.Status
			fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%.3f\t%s\n", r.Endpoint, dash(s.Node), s.FirstSeq, s.LastSeq,
				s.FsyncedSeq, s.SafeSeq, s.Bytes, s.FsyncAvgMs, dash(s.Failed))
		}
	})
	if err != nil {
		return err
	}
	failed := false
	for _, r := range rows {
		if r.Error != "" {
			failed = true
			if !in.jsonOutput() {
				fmt.Fprintln(in.cli.Stderr, r.Error)
			}
		}
	}
	if failed {
		return &errSilent{code: ExitError}
	}
	return nil
}

func (in *invocation) walInspectCmd() *cobra.Command {
	var (
		dataDir, since, kind string
		limit                int
	)
	cmd := &cobra.Command{
		Use:   "inspect",
		Short: "Show WAL frames, filtered by time and event kind (newest N)",
		Long: "Online: GET /v1/wal/inspect on the first endpoint that answers (its own WAL). Offline, with --data-dir and\n" +
			"the node stopped: reads the WAL read-only after the same checks a start runs.\n" +
			"--since takes a duration (1h, 30m) or an RFC 3339 time; --kind matches the event's \"kind\" field.",
		Example: "  autonomyctl wal inspect --since 1h --kind error\n  sudo autonomyctl wal inspect --data-dir /var/lib/autonomy --limit 20 -o json",
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			if limit < 0 {
				return usagef("--limit must not be negative")
			}
			var cutoff time.Time
			if since != "" {
				t, err := parseSince(since, in.cli.now())
				if err != nil {
					return err
				}
				cutoff = t
			}
			if dataDir != "" {
				return in.walInspectOffline(dataDir, cutoff, kind, limit)
			}
			c, err := in.apiClient()
			if err != nil {
				return err
			}
			ir, rep, err := c.WALInspect(in.ctx, "", client.InspectQuery{Since: since, Kind: kind, Limit: limit})
			if err != nil {
				return err
			}
			return in.emit(ir, func(w *tabw) { inspectTable(w, ir, baseURL(rep.URL), false) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", "", "read the WAL of a stopped node in this data directory (offline)")
	f.StringVar(&since, "since", "", "only frames at or after this time: a duration ago (1h) or an RFC 3339 time")
	f.StringVar(&kind, "kind", "", "only events whose \"kind\" field equals this (e.g. error)")
	f.IntVar(&limit, "limit", DefaultInspectLimit, "show at most this many frames, the newest (0: all)")
	_ = cmd.MarkFlagDirname("data-dir")
	return cmd
}

// parseSince reads --since: a non-negative duration before now, or an RFC
// 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, usagef("--since %q: the duration must not be negative", s)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, usagef("--since %q: want a duration such as 1h or 30m, or an RFC 3339 time such as 2026-01-02T15:04:05Z", s)
}

// eventKind returns the "kind" field of an event, or "".
func eventKind(ev json.RawMessage) string {
	var k struct {
		Kind any `json:"kind"`
	}
	if json.Unmarshal(ev, &k) != nil || k.Kind == nil {
		return ""
	}
	if s, ok := k.Kind.(string); ok {
		return s
	}
	return fmt.Sprint(k.Kind)
}

// maxEventColumn bounds the EVENT column of the inspect table.
const maxEventColumn = 100

func inspectTable(w *tabw, ir *wire.InspectResponse, from string, offline bool) {
	fmt.Fprintln(w, "SEQ\tEPOCH\tTIME\tTYPE\tKIND\tEVENT")
	uncommitted := false
	for _, f := range ir.Frames {
		seq := fmt.Sprint(f.Seq)
		if offline && f.Seq > ir.SafeSeq {
			seq += "*"
			uncommitted = true
		}
		var b bytes.Buffer
		ev := string(f.Event)
		if json.Compact(&b, f.Event) == nil {
			ev = b.String()
		}
		if r := []rune(ev); len(r) > maxEventColumn {
			ev = string(r[:maxEventColumn-1]) + "…"
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", seq, f.Epoch, f.TS.UTC().Format("2006-01-02T15:04:05.000Z"),
			dash(f.Type), dash(eventKind(f.Event)), strings.ReplaceAll(ev, "\t", " "))
	}
	src := from
	if ir.Node != "" {
		src = ir.Node + " (" + from + ")"
	}
	fmt.Fprintf(w, "\n%d frames from %s, safe_seq %d\n", len(ir.Frames), src, ir.SafeSeq)
	if uncommitted {
		fmt.Fprintln(w, "* above safe_seq: not known to be committed; readers are not served them, and a follower drops them if they diverge from the leader's log")
	}
}
