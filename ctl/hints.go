package ctl

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/autonomyops/orchestrator/api/client"
)

// Every hint autonomyctl prints ("hint: ..." on stderr, after an error) is
// one of these, formatted where it has verbs, and printed by printHints.
// hints_commands_test.go checks that every command they name exists, with
// its flags (autonomyctl's in the cobra tree, the daemon's in its serve
// flags, the systemd unit's name), and that no hint is printed from
// anywhere else. Hints name commands an operator can run as they stand:
// systemctl and journalctl for a packaged node, never `serve` by hand (run as
// root on /var/lib/autonomy it is refused, SERVE_REFUSED_AS_ROOT).
const (
	// An unreachable orchestrator (runbook section 4).
	hintTLSFailed     = "the TLS handshake with %s failed%s: pass the CA that signed the nodes' certificates with --cacert FILE or %s=FILE, and check that the URL's host name is in the certificate"
	hintTimeout       = "the orchestrator at %s did not answer within %s%s: it may be overloaded, stopped (SIGSTOP) or behind a firewall, or the address is wrong; raise --timeout if the node is just slow"
	hintNotRunning    = "cannot reach the orchestrator at %s%s: the autonomy-orchestrator process is not running, or it is listening on a different address than the CLI is configured to use"
	hintRedirected    = "a node redirected the request to the leader's address above; if it is not reachable from here, the nodes advertise an API URL you cannot route to"
	hintCheckHealth   = "check its health: curl %s/v1/health"
	hintCheckBoth     = "check its health: curl %s/v1/health (default listen address 0.0.0.0:8888: curl %s/v1/health)"
	hintServiceState  = "on that node, `systemctl status autonomy-orchestrator` says whether the service runs and how it last exited (status=65: a WAL fail-hard, which is not restarted; `journalctl -u autonomy-orchestrator -p err` says why); start it with `sudo systemctl start autonomy-orchestrator`"
	hintPointCLI      = "point the CLI at the right address: export %s=http://HOST:8888 (comma-separated for several nodes), or persist it: autonomyctl config set orchestrator.url http://HOST:8888"
	hintListEveryNode = "in an HA cluster a refused connection to a follower is expected when the leader has moved: list every node (--endpoints http://a:8888,http://b:8888,http://c:8888) and autonomyctl finds the leader; `autonomyctl ha status` shows which node holds the leader token"

	// An error status from a node.
	hintToken       = "the node wants a bearer token: pass --token TOKEN or set %s"
	hintRole        = "the token's role is too small for this command (roles: viewer < operator < admin)"
	hintNoLeader    = "no leader is known right now (election in progress, or quorum lost): `autonomyctl status` shows every node's view"
	hintLeaderNamed = "the node names the leader: %s"
	hintRetryAfter  = "the node asks to retry after %ss"

	// status and ha status: no leader can commit.
	hintNoCommittingLeader = "a majority of the voters must be up and reach each other: start the stopped nodes (`sudo systemctl start autonomy-orchestrator` on each; `systemctl status autonomy-orchestrator` says why one stopped), then check `autonomyctl ha status`"
	hintWaitingForVoter    = "if a leader holds the token but waits for a voter that will never come back (LEADER_WAITING_FOR_CONFIRMED_VOTERS in `journalctl -u autonomy-orchestrator`), remove that voter: `autonomyctl member remove NAME` (docs/operations.md)"

	// ha failover.
	hintFailoverDryRun          = "`%s` lists every candidate and what blocks it"
	hintFailoverMayHaveHappened = "the leader may have received the request and the failover may have happened: check `autonomyctl ha status` before trying again"

	// logs (runbook section 4, "During log streaming").
	hintLogsFollowAgain = "re-run 'autonomyctl logs --follow' to reconnect"
	hintLogsAgain       = "re-run 'autonomyctl logs' to read the rest"
	hintLogsResume      = "to resume right after the last event printed (Seq %d): %s --after-seq %d"
	hintLogsLastAttempt = "no leader could be streamed from for %s; the last attempt said: %s"

	// settings.
	hintSettingsList    = "`autonomyctl settings list` shows every key with its value, default and bounds"
	hintSettingsChanged = "the key changed since you read it: `autonomyctl settings get %s` shows its value and revision; pass that revision to --if-revision"

	// demo (runbook section 4, its words).
	hintDemoLocal = "if Docker Compose fails to start the orchestrator service, re-run with --local for an in-process demo"

	// snapshot status and restore: a file that cannot be used.
	hintSnapshotDamaged    = "the file is damaged (a changed byte on disk or in transfer): use another copy, or take a new snapshot with `autonomyctl snapshot save`"
	hintSnapshotIncomplete = "the file is incomplete (a save or a copy that was cut short): copy it again from where it is kept, or take a new snapshot with `autonomyctl snapshot save`"
	hintSnapshotVersion    = "the file was written in another format version: use the autonomyctl of the release that wrote it (`autonomyctl version` names this one)"

	// WAL checks (runbook section 3).
	hintWALCause      = "cause %s: the node refuses to start on this WAL (WAL_RECOVERY_FAIL_HARD, exit %d) until it is resolved"
	hintWALStorage    = `if you suspect the storage, check it before anything else: sudo fsck -n /dev/sdXY; sudo dmesg | grep -E "I/O error|ata|scsi|blk_update_request"`
	hintWALReset      = "to accept telemetry loss on this node: sudo systemctl stop autonomy-orchestrator; sudo -u autonomy autonomyctl wal reset --data-dir %s; sudo systemctl start autonomy-orchestrator"
	hintWALReplicates = "in a cluster the reset node re-replicates the committed history from the leader, so the reset loses nothing the cluster committed"
)

// printHints prints each hint on its own line, prefixed "hint: ".
func printHints(w io.Writer, hints ...string) {
	for _, h := range hints {
		fmt.Fprintln(w, "hint: "+h)
	}
}

// hints returns the lines printed after an error, each prefixed "hint: ".
// For an unreachable orchestrator they follow the runbook's section 4
// ("Orchestrator Unreachable").
func (in *invocation) hints(err error) []string {
	var (
		unr *client.UnreachableError
		ue  *url.Error
		he  *client.HTTPError
	)
	switch {
	case errors.As(err, &unr):
		return in.unreachableHints(unr.Errs)
	case errors.As(err, &ue):
		return in.unreachableHints([]error{ue})
	case errors.As(err, &he):
		return httpHints(he)
	}
	var bad *badSnapshotError
	if errors.As(err, &bad) {
		return []string{bad.todo}
	}
	return nil
}

func (in *invocation) unreachableHints(errs []error) []string {
	var bases []string
	timeout, tlsFail, redirected := false, false, false
	for _, err := range errs {
		var ue *url.Error
		if !errors.As(err, &ue) {
			continue
		}
		b := ""
		for _, ep := range in.eps.URLs {
			if ue.URL == ep || strings.HasPrefix(ue.URL, ep+"/") || strings.HasPrefix(ue.URL, ep+"?") {
				b = ep
				break
			}
		}
		if b == "" {
			b = baseURL(ue.URL)
			redirected = in.eps.URLs != nil
		}
		if !slices.Contains(bases, b) {
			bases = append(bases, b)
		}
		switch {
		case ue.Timeout():
			timeout = true
		case isTLSError(ue.Err):
			tlsFail = true
		}
	}
	if len(bases) == 0 {
		return nil
	}
	where := strings.Join(bases, ", ")
	src := ""
	if in.eps.Source != "" {
		src = " (from " + in.eps.Source + ")"
	}
	var h []string
	switch {
	case tlsFail:
		h = append(h, fmt.Sprintf(hintTLSFailed, where, src, EnvCACert))
	case timeout:
		h = append(h, fmt.Sprintf(hintTimeout, where, in.flags.timeout, src))
	default:
		h = append(h, fmt.Sprintf(hintNotRunning, where, src))
	}
	if redirected {
		h = append(h, hintRedirected)
	}
	check := fmt.Sprintf(hintCheckHealth, bases[0])
	if bases[0] != DefaultListenURL {
		check = fmt.Sprintf(hintCheckBoth, bases[0], DefaultListenURL)
	}
	h = append(h, check)
	if !tlsFail {
		h = append(h, hintServiceState)
	}
	h = append(h, fmt.Sprintf(hintPointCLI, EnvOrchestratorURL))
	if len(in.eps.URLs) == 1 {
		h = append(h, hintListEveryNode)
	}
	return h
}

func httpHints(he *client.HTTPError) []string {
	var h []string
	switch he.Status {
	case http.StatusUnauthorized:
		h = append(h, fmt.Sprintf(hintToken, EnvToken))
	case http.StatusForbidden:
		h = append(h, hintRole)
	case http.StatusServiceUnavailable:
		if he.Code == "no_leader" {
			h = append(h, hintNoLeader)
		}
	}
	if he.Leader != "" {
		h = append(h, fmt.Sprintf(hintLeaderNamed, he.Leader))
	}
	if he.RetryAfter != "" {
		h = append(h, fmt.Sprintf(hintRetryAfter, he.RetryAfter))
	}
	return h
}

func isTLSError(err error) bool {
	var (
		cv  *tls.CertificateVerificationError
		ua  x509.UnknownAuthorityError
		hn  x509.HostnameError
		ci  x509.CertificateInvalidError
		rh  tls.RecordHeaderError
		alt tls.AlertError
	)
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn) ||
		errors.As(err, &ci) || errors.As(err, &rh) || errors.As(err, &alt)
}

// baseURL returns scheme://host of a URL, or the URL itself if unparsable.
func baseURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return s
	}
	return u.Scheme + "://" + u.Host
}
