package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/autonomyops/orchestrator/api/client"
	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/autonomyops/orchestrator/walrepl"
	"github.com/spf13/cobra"
)

// `logs [--follow]`: committed events from GET /v1/logs (NDJSON), resumable
// by Seq. The follow loop survives a leader change: when the stream breaks,
// ends, or a node answers 503, it rediscovers the leader among the endpoints
// and reconnects with after_seq = the last Seq it printed. It never prints a
// Seq at or below the last one printed, so nothing is printed twice, and the
// server sends every committed event after after_seq, so nothing is lost.
// It gives up, with the runbook's message, only after --retry-for without a
// working stream.

// Defaults of the logs command.
const (
	// DefaultLogsRetryFor bounds how long `logs` keeps trying to resume.
	DefaultLogsRetryFor = 30 * time.Second
	// DefaultLogsIdleTimeout: a stream silent for this long (the server sends
	// a keepalive line every 5s) is taken as broken and reconnected.
	DefaultLogsIdleTimeout = 15 * time.Second
	// logsBackoffMin and logsBackoffMax bound the pause between attempts.
	logsBackoffMin = 100 * time.Millisecond
	logsBackoffMax = 2 * time.Second
	// logsProgressAfter: a stream that stayed open this long counts as
	// working even if it brought no line, so the retry clock restarts.
	logsProgressAfter = time.Second
)

type logsOptions struct {
	follow   bool
	afterSeq uint64
	kind     string
	agent    string
	retryFor time.Duration
	idle     time.Duration
}

func (in *invocation) logsCmd() *cobra.Command {
	var o logsOptions
	cmd := &cobra.Command{
		Use:   "logs [--follow] [--kind K] [--agent A] [--after-seq N]",
		Short: "Print committed events; with --follow, keep printing them as they commit, across leader changes",
		Long: "GET /v1/logs on the leader: every committed event after --after-seq, one line each (SEQ, TIME, KIND,\n" +
			"AGENT, EVENT); -o json prints the server's NDJSON lines unchanged (one wire.Event per line).\n\n" +
			"With --follow the command keeps the stream open. When the leader changes or the stream breaks, it finds the\n" +
			"new leader among the endpoints and resumes after the last Seq it printed: no event is lost or printed twice.\n" +
			"It gives up only when no leader could be streamed from for --retry-for.",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			if o.retryFor < 0 || o.idle < 0 {
				return usagef("--retry-for and --idle-timeout must not be negative")
			}
			return in.runLogs(o)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.follow, "follow", "f", false, "keep streaming events as they commit")
	f.Uint64Var(&o.afterSeq, "after-seq", 0, "print events with a larger Seq only (resume after the last one seen)")
	f.StringVar(&o.kind, "kind", "", "only events whose \"kind\" field is K")
	f.StringVar(&o.agent, "agent", "", "only events whose \"agent\" field is A")
	f.DurationVar(&o.retryFor, "retry-for", DefaultLogsRetryFor, "how long to keep trying to resume a broken stream before giving up")
	f.DurationVar(&o.idle, "idle-timeout", DefaultLogsIdleTimeout, "reconnect when the stream brings nothing, not even a keepalive, for this long (0: never)")
	return cmd
}

// errStreamEnded: the server ended a follow stream (it stopped leading).
var errStreamEnded = errors.New("the node ended the stream (it no longer leads)")

// logsPrinter prints events, never one whose Seq is at or below the last.
type logsPrinter struct {
	in      *invocation
	last    uint64
	printed int
	header  bool
}

func (p *logsPrinter) print(ev wire.Event, line []byte) error {
	if ev.Seq <= p.last {
		return nil // already printed (a resumed stream may repeat its start)
	}
	w := p.in.cli.Stdout
	var err error
	if p.in.jsonOutput() {
		_, err = fmt.Fprintf(w, "%s\n", line)
	} else {
		if !p.header {
			p.header = true
			if _, err := fmt.Fprintf(w, "%-8s %-24s %-12s %-14s %s\n", "SEQ", "TIME", "KIND", "AGENT", "EVENT"); err != nil {
				return err
			}
		}
		_, err = fmt.Fprintf(w, "%-8d %-24s %-12s %-14s %s\n", ev.Seq, ev.TS.UTC().Format("2006-01-02T15:04:05.000Z"),
			dash(eventKind(ev.Event)), dash(eventAgent(ev.Event)), compactEvent(ev.Event))
	}
	if err != nil {
		return fmt.Errorf("writing the output: %w", err)
	}
	p.last = ev.Seq
	p.printed++
	return nil
}

// stdoutError is a failure to write our own output: never retried.
type stdoutError struct{ err error }

func (e *stdoutError) Error() string { return e.err.Error() }
func (e *stdoutError) Unwrap() error { return e.err }

func (in *invocation) runLogs(o logsOptions) error {
	c, err := in.apiClient()
	if err != nil {
		return err
	}
	p := &logsPrinter{in: in, last: o.afterSeq}
	stderr := in.cli.Stderr
	var (
		connected  bool      // a stream was opened at least once
		failing    time.Time // when the current run of failures began; zero while streaming
		firstCause string    // why the stream was interrupted, for the give-up message
		lastErr    error
		backoff    = logsBackoffMin
		from       string // the URL of the last stream
	)
	for {
		q := client.LogsQuery{AfterSeq: p.last, Follow: o.follow, Kind: o.kind, Agent: o.agent}
		s, err := c.Logs(in.ctx, q, o.idle)
		if err == nil {
			if connected && !failing.IsZero() {
				fmt.Fprintf(stderr, "logs: resumed from %s after Seq %d\n", baseURL(s.URL), p.last)
			}
			connected, from = true, s.URL
			progress := false
			t0 := time.Now()
			err = in.pumpLogs(s, p, &progress)
			s.Close()
			if err == nil {
				if !o.follow {
					return nil
				}
				err = errStreamEnded
			}
			if progress || time.Since(t0) >= logsProgressAfter {
				failing, backoff = time.Time{}, logsBackoffMin
			}
		}
		if in.ctx.Err() != nil {
			return in.ctx.Err()
		}
		var se *stdoutError
		if errors.As(err, &se) || !resumable(err, connected) {
			return err
		}
		lastErr = err
		if failing.IsZero() {
			failing = time.Now()
			firstCause = interruptCause(err)
			if connected {
				fmt.Fprintf(stderr, "logs: stream from %s interrupted (%s); finding the leader to resume after Seq %d\n",
					baseURL(from), firstCause, p.last)
			} else {
				fmt.Fprintf(stderr, "logs: %s; retrying for up to %s\n", interruptCause(err), o.retryFor)
			}
		}
		if time.Since(failing) >= o.retryFor {
			return in.logsGiveUp(o, p, firstCause, lastErr)
		}
		wait := min(backoff, o.retryFor-time.Since(failing))
		if err := walrepl.Sleep(in.ctx, max(wait, 0)); err != nil {
			return err
		}
		backoff = min(backoff*2, logsBackoffMax)
	}
}

// pumpLogs prints s's events until it ends (nil) or fails.
func (in *invocation) pumpLogs(s *client.LogStream, p *logsPrinter, progress *bool) error {
	for {
		ev, line, err := s.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		*progress = true
		if err := p.print(ev, line); err != nil {
			return &stdoutError{err}
		}
	}
}

// resumable reports whether a logs attempt that failed with err is worth
// retrying: the leader may be moving. Before any stream was opened, only an
// election in progress (503, a redirect chase) is; a cluster nobody can reach
// fails at once, with the usual hints.
func resumable(err error, connected bool) bool {
	var he *client.HTTPError
	if errors.As(err, &he) {
		switch he.Status {
		case http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusBadGateway, http.StatusGatewayTimeout:
			return true
		}
		return he.Code == "redirect_without_location" && connected
	}
	if errors.Is(err, client.ErrTooManyRedirects) {
		return true
	}
	if !connected {
		return false
	}
	var (
		unr *client.UnreachableError
		ne  net.Error
	)
	return errors.Is(err, errStreamEnded) || errors.Is(err, client.ErrStreamIdle) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.As(err, &unr) || errors.As(err, &ne) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, context.Canceled)
}

// interruptCause words why a stream stopped, as the runbook does:
// "connection reset by peer".
func interruptCause(err error) string {
	var (
		errno syscall.Errno
		he    *client.HTTPError
	)
	switch {
	case errors.Is(err, errStreamEnded):
		return "the leader ended the stream"
	case errors.Is(err, client.ErrStreamIdle):
		return "no data, not even a keepalive, within --idle-timeout"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected EOF"
	case errors.As(err, &he):
		if he.Code == "no_leader" {
			return "no leader"
		}
		return fmt.Sprintf("%d %s", he.Status, he.Code)
	case errors.As(err, &errno):
		return errno.Error()
	case errors.Is(err, client.ErrTooManyRedirects):
		return "leadership is moving"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return err.Error()
}

// logsGiveUp prints the runbook's message (section 4, "During log
// streaming") and returns the exit status.
func (in *invocation) logsGiveUp(o logsOptions, p *logsPrinter, cause string, last error) error {
	w := in.cli.Stderr
	fmt.Fprintf(w, "logs: stream interrupted (%s)\n", cause)
	if o.follow {
		printHints(w, hintLogsFollowAgain)
	} else {
		printHints(w, hintLogsAgain)
	}
	if p.last > 0 {
		again := "autonomyctl logs"
		if o.follow {
			again += " --follow"
		}
		if o.kind != "" {
			again += " --kind " + shellQuote(o.kind)
		}
		if o.agent != "" {
			again += " --agent " + shellQuote(o.agent)
		}
		printHints(w, fmt.Sprintf(hintLogsResume, p.last, again, p.last))
	}
	printHints(w, fmt.Sprintf(hintLogsLastAttempt, o.retryFor, strings.ReplaceAll(last.Error(), "\n", "; ")))
	printHints(w, in.hints(last)...)
	code := ExitUnreachable
	var he *client.HTTPError
	if errors.As(last, &he) {
		code = ExitHTTP
	}
	return &errSilent{code: code}
}

func shellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n'\"\\$`!*?[]{}()<>|&;#~") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// eventAgent returns the "agent" field of an event, or "".
func eventAgent(ev json.RawMessage) string {
	var a struct {
		Agent any `json:"agent"`
	}
	if json.Unmarshal(ev, &a) != nil || a.Agent == nil {
		return ""
	}
	if s, ok := a.Agent.(string); ok {
		return s
	}
	return fmt.Sprint(a.Agent)
}

// compactEvent returns an event as one line of compact JSON.
func compactEvent(ev json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, ev) == nil {
		return b.String()
	}
	return strings.Join(strings.Fields(string(ev)), " ")
}
