package node

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/autonomyops/orchestrator/cluster"
)

// tlsConfigs are the node's TLS settings, built once from the files.
type tlsConfigs struct {
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

// buildTLS checks the TLS flags belong together and loads the files.
func buildTLS(cfg *Config) (*tlsConfigs, error) {
	out := &tlsConfigs{}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errors.New("--tls-cert and --tls-key go together: set both (API over HTTPS) or neither")
	}
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		out.api = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
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
	cert, err := tls.LoadX509KeyPair(cfg.PeerTLSCert, cfg.PeerTLSKey)
	if err != nil {
		return nil, fmt.Errorf("--peer-tls-cert/--peer-tls-key: %w", err)
	}
	pool, err := loadCA("--peer-tls-ca", cfg.PeerTLSCA)
	if err != nil {
		return nil, err
	}
	out.peerServer = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	out.peerClient = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}
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
