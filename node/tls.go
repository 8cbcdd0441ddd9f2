package node

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/autonomyops/orchestrator/cluster"
)

// tlsMaterial is what the TLS flags' files hold, loaded: the server
// configurations built from it once, and the peer client's certificate and CA.
type tlsMaterial struct {
	api        *tls.Config // API server; nil: plain HTTP
	peerServer *tls.Config // replication listener: mutual TLS; nil: off
	peerCert   *tls.Certificate
	peerCA     *x509.CertPool
	apiLeaf    *x509.Certificate // for reload checks and the audit record
	peerLeaf   *x509.Certificate
}

// tlsConfigs are the node's TLS settings. The certificates and CAs are those
// of the material in effect at each handshake: a reload (SIGHUP) swaps the
// material and new connections use it; established ones keep theirs.
type tlsConfigs struct {
	cur        atomic.Pointer[tlsMaterial]
	api        *tls.Config // API server; nil: plain HTTP
	peerServer *tls.Config // replication listener: mutual TLS
	peerClient *tls.Config // replication dialer: mutual TLS
}

func loadCA(flag, path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s %s holds no PEM certificate", flag, path)
	}
	return pool, nil
}

func loadPair(flags, cert, key string) (*tls.Certificate, *x509.Certificate, error) {
	c, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", flags, err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", flags, err)
	}
	c.Leaf = leaf
	return &c, leaf, nil
}

// loadTLS checks the TLS flags belong together and loads the files.
func loadTLS(cfg *Config) (*tlsMaterial, error) {
	out := &tlsMaterial{}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errors.New("--tls-cert and --tls-key go together: set both (API over HTTPS) or neither")
	}
	if cfg.TLSCert != "" {
		cert, leaf, err := loadPair("--tls-cert/--tls-key", cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, err
		}
		out.apiLeaf = leaf
		out.api = &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12}
		if cfg.TLSCA != "" {
			pool, err := loadCA("--tls-ca", cfg.TLSCA)
			if err != nil {
				return nil, err
			}
			out.api.ClientCAs, out.api.ClientAuth = pool, tls.VerifyClientCertIfGiven
		}
	} else if cfg.TLSCA != "" {
		return nil, errors.New("--tls-ca needs --tls-cert and --tls-key")
	}
	set := 0
	for _, v := range []string{cfg.PeerTLSCert, cfg.PeerTLSKey, cfg.PeerTLSCA} {
		if v != "" {
			set++
		}
	}
	switch set {
	case 0:
		return out, nil
	case 3:
	default:
		return nil, errors.New("--peer-tls-cert, --peer-tls-key and --peer-tls-ca go together: set all three (mutual TLS between peers) or none")
	}
	cert, leaf, err := loadPair("--peer-tls-cert/--peer-tls-key", cfg.PeerTLSCert, cfg.PeerTLSKey)
	if err != nil {
		return nil, err
	}
	pool, err := loadCA("--peer-tls-ca", cfg.PeerTLSCA)
	if err != nil {
		return nil, err
	}
	out.peerCert, out.peerCA, out.peerLeaf = cert, pool, leaf
	out.peerServer = &tls.Config{Certificates: []tls.Certificate{*cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	// etcd's peer traffic uses the same files and must be https.
	if !strings.HasPrefix(cfg.EtcdPeerURL, "https://") {
		return nil, fmt.Errorf("--etcd-peer-url=%s must be https:// when peer TLS is on", cfg.EtcdPeerURL)
	}
	if cfg.InitialCluster != "" {
		ic, err := cluster.ParseInitialCluster(cfg.InitialCluster)
		if err != nil {
			return nil, err
		}
		for name, u := range ic {
			if !strings.HasPrefix(u, "https://") {
				return nil, fmt.Errorf("--initial-cluster entry %s=%s must be https:// when peer TLS is on", name, u)
			}
		}
	}
	return out, nil
}

// checkReload refuses new material a running node must not switch to: a
// certificate that is expired or not yet valid, or a peer certificate that
// its own --peer-tls-ca does not sign (every peer would refuse it).
func (m *tlsMaterial) checkReload(now time.Time) error {
	for _, c := range []struct {
		flag string
		leaf *x509.Certificate
	}{{"--tls-cert", m.apiLeaf}, {"--peer-tls-cert", m.peerLeaf}} {
		if c.leaf == nil {
			continue
		}
		if now.After(c.leaf.NotAfter) {
			return fmt.Errorf("%s expired at %s", c.flag, c.leaf.NotAfter.UTC().Format(time.RFC3339))
		}
		if now.Before(c.leaf.NotBefore) {
			return fmt.Errorf("%s is not valid before %s", c.flag, c.leaf.NotBefore.UTC().Format(time.RFC3339))
		}
	}
	if m.peerLeaf != nil {
		inter := x509.NewCertPool()
		for _, der := range m.peerCert.Certificate[1:] {
			if c, err := x509.ParseCertificate(der); err == nil {
				inter.AddCert(c)
			}
		}
		if _, err := m.peerLeaf.Verify(x509.VerifyOptions{Roots: m.peerCA, Intermediates: inter, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return fmt.Errorf("--peer-tls-cert is not signed by --peer-tls-ca: %v", err)
		}
	}
	return nil
}

// buildTLS loads the TLS files and returns configurations that follow later
// reloads.
func buildTLS(cfg *Config) (*tlsConfigs, error) {
	m, err := loadTLS(cfg)
	if err != nil {
		return nil, err
	}
	t := &tlsConfigs{}
	t.cur.Store(m)
	if m.api != nil {
		t.api = &tls.Config{MinVersion: tls.VersionTLS12,
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return t.cur.Load().api, nil }}
	}
	if m.peerServer != nil {
		t.peerServer = &tls.Config{MinVersion: tls.VersionTLS12,
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return t.cur.Load().peerServer, nil }}
		// The dialer verifies the peer itself, against the CA in effect at
		// this handshake: the same checks as crypto/tls's own (chain to the
		// CA, the dialled host in the certificate), with a CA that a reload
		// can replace. VerifyConnection also runs on resumed sessions.
		t.peerClient = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return t.cur.Load().peerCert, nil },
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return errors.New("node: the peer presented no certificate")
				}
				inter := x509.NewCertPool()
				for _, c := range cs.PeerCertificates[1:] {
					inter.AddCert(c)
				}
				_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: t.cur.Load().peerCA, Intermediates: inter,
					DNSName: cs.ServerName})
				return err
			}}
	}
	return t, nil
}

// reload re-reads the TLS files. Invalid new material is refused and the
// material in effect stays. It returns what is in effect afterwards.
func (t *tlsConfigs) reload(cfg *Config, now time.Time) (map[string]any, error) {
	m, err := loadTLS(cfg)
	if err == nil {
		err = m.checkReload(now)
	}
	if err != nil {
		return t.describe(), err
	}
	t.cur.Store(m)
	return t.describe(), nil
}

// describe names the certificates in effect (serial and expiry).
func (t *tlsConfigs) describe() map[string]any {
	m := t.cur.Load()
	out := map[string]any{}
	for name, leaf := range map[string]*x509.Certificate{"api_cert": m.apiLeaf, "peer_cert": m.peerLeaf} {
		if leaf != nil {
			out[name] = fmt.Sprintf("serial %s, expires %s", leaf.SerialNumber.Text(16), leaf.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	return out
}
