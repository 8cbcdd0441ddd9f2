package ctl

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/autonomyops/orchestrator/api/client"
)

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
		h = append(h, fmt.Sprintf("the TLS handshake with %s failed%s: pass the CA that signed the nodes' certificates with --cacert FILE or %s=FILE, and check that the URL's host name is in the certificate", where, src, EnvCACert))
	case timeout:
		h = append(h, fmt.Sprintf("the orchestrator at %s did not answer within %s%s: it may be overloaded, stopped (SIGSTOP) or behind a firewall, or the address is wrong; raise --timeout if the node is just slow", where, in.flags.timeout, src))
	default:
		h = append(h, fmt.Sprintf("cannot reach the orchestrator at %s%s: the autonomy-orchestrator process is not running, or it is listening on a different address than the CLI is configured to use", where, src))
	}
	if redirected {
		h = append(h, "a node redirected the request to the leader's address above; if it is not reachable from here, the nodes advertise an API URL you cannot route to")
	}
	check := "check its health: curl " + bases[0] + "/v1/health"
	if bases[0] != DefaultListenURL {
		check += " (default listen address 0.0.0.0:8888: curl " + DefaultListenURL + "/v1/health)"
	}
	h = append(h, check)
	if !tlsFail {
		h = append(h, "start it: sudo systemctl start autonomy-orchestrator, or autonomy-orchestrator serve --data-dir /var/lib/autonomy")
	}
	h = append(h, fmt.Sprintf("point the CLI at the right address: export %s=http://HOST:8888 (comma-separated for several nodes), or persist it: autonomyctl config set orchestrator.url http://HOST:8888", EnvOrchestratorURL))
	if len(in.eps.URLs) == 1 {
		h = append(h, "in an HA cluster a refused connection to a follower is expected when the leader has moved: list every node (--endpoints http://a:8888,http://b:8888,http://c:8888) and autonomyctl finds the leader; `autonomyctl ha status` shows which node holds the leader token")
	}
	return h
}

func httpHints(he *client.HTTPError) []string {
	var h []string
	switch he.Status {
	case http.StatusUnauthorized:
		h = append(h, "the node wants a bearer token: pass --token TOKEN or set "+EnvToken)
	case http.StatusForbidden:
		h = append(h, "the token's role is too small for this command (roles: viewer < operator < admin)")
	case http.StatusServiceUnavailable:
		if he.Code == "no_leader" {
			h = append(h, "no leader is known right now (election in progress, or quorum lost): `autonomyctl status` shows every node's view")
		}
	}
	if he.Leader != "" {
		h = append(h, "the node names the leader: "+he.Leader)
	}
	if he.RetryAfter != "" {
		h = append(h, "the node asks to retry after "+he.RetryAfter+"s")
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
