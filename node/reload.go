package node

import (
	"context"
	"os"
	"time"

	"github.com/autonomyops/orchestrator/api"
	"github.com/sirupsen/logrus"
)

// Reload (SIGHUP, `systemctl reload autonomy-orchestrator`) re-reads the
// --tokens-file and the TLS files (--tls-cert, --tls-key, --tls-ca,
// --peer-tls-cert, --peer-tls-key, --peer-tls-ca) of the paths given at
// start. Each of the two is replaced as a whole, or, when its new files are
// invalid, kept as it was, with the reason logged (RELOAD_REFUSED) and
// recorded in the audit log. Requests and connections already under way keep
// what they started with. etcd's own peer TLS re-reads the certificate and
// key at every new connection by itself; its CA is read at start only.

// serveReloads reloads once per signal on ch until ctx ends. Reloads run one
// at a time, on this goroutine.
func (n *Node) serveReloads(ctx context.Context, ch <-chan os.Signal) {
	if ch == nil {
		return
	}
	for {
		select {
		case <-ch:
			n.reload(ctx, "SIGHUP")
		case <-ctx.Done():
			return
		}
	}
}

// reload re-reads the tokens and TLS files, keeps the old material of
// whichever part is invalid, logs and audits the outcome. It reports whether
// every part was reloaded (or is off).
func (n *Node) reload(ctx context.Context, via string) bool {
	details := map[string]any{"via": via}
	var refused []string
	fields := logrus.Fields{"via": via}

	switch {
	case n.cfg.TokensFile == "":
		details["tokens"] = "off (no --tokens-file)"
	default:
		t, err := api.LoadTokens(n.cfg.TokensFile)
		if err != nil {
			refused = append(refused, "tokens")
			details["tokens"] = "kept the previous tokens: " + err.Error()
			n.log.WithFields(logrus.Fields{"via": via, "file": n.cfg.TokensFile, "kept_tokens": n.tokens.Len(), "error": err.Error()}).
				Error("RELOAD_REFUSED: the new tokens file is invalid; the previous tokens stay in effect")
		} else {
			n.tokens.Replace(t)
			details["tokens"] = "reloaded"
			details["token_count"] = t.Len()
			fields["token_count"] = t.Len()
		}
	}

	if n.tls.cur.Load().api == nil && n.tls.cur.Load().peerServer == nil {
		details["tls"] = "off"
	} else {
		now, err := n.tls.reload(&n.cfg, time.Now())
		for k, v := range now {
			details[k] = v
			fields[k] = v
		}
		if err != nil {
			refused = append(refused, "tls")
			details["tls"] = "kept the previous certificates: " + err.Error()
			n.log.WithFields(logrus.Fields{"via": via, "error": err.Error(), "in_effect": now}).
				Error("RELOAD_REFUSED: the new TLS files are invalid; the previous certificates stay in effect")
		} else {
			details["tls"] = "reloaded"
		}
	}
	if len(refused) > 0 {
		details["refused"] = refused
	}
	fields["refused"] = len(refused)
	// Audited first, so that once RELOADED is in the log, `autonomyctl
	// audit` shows the reload too (a failed audit write logs
	// AUDIT_WRITE_FAILED before it).
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	n.audit(actx, "reload", "operator", details)
	cancel()
	n.log.WithFields(fields).Info("RELOADED")
	return len(refused) == 0
}
