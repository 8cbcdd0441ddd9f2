package ctl

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// CertsOptions configures `autonomyctl certs init`.
type CertsOptions struct {
	Out      string              // directory to write into (created 0700)
	Nodes    []string            // node names: one certificate each
	Hosts    []string            // extra SANs on every node certificate (IPs or DNS names)
	NodeHost map[string][]string // per-node SANs, from "n1=10.0.0.1,n2=10.0.0.2"
	Validity time.Duration       // certificate lifetime
	Force    bool                // overwrite existing files
	// CACert and CAKey, when set, sign the node certificates with an existing
	// CA (adding a node later) instead of creating a new one.
	CACert, CAKey string
}

// CertsInit creates a cluster CA and one certificate per node, ECDSA P-256,
// usable both as TLS server and client (the API, and mutual TLS between
// peers). Files: ca.crt, ca.key, <node>.crt, <node>.key. Keys are 0600.
func CertsInit(o CertsOptions) ([]string, error) {
	if o.Out == "" || len(o.Nodes) == 0 {
		return nil, errors.New("certs init needs --out DIR and --nodes n1,n2,n3")
	}
	if o.Validity <= 0 {
		o.Validity = 5 * 365 * 24 * time.Hour
	}
	if err := os.MkdirAll(o.Out, 0o700); err != nil {
		return nil, err
	}
	if !o.Force {
		files := nodeFiles(o.Nodes)
		if o.CACert == "" {
			files = append(files, "ca.crt", "ca.key")
		}
		for _, f := range files {
			if _, err := os.Stat(filepath.Join(o.Out, f)); err == nil {
				return nil, fmt.Errorf("%s already exists; use --force to overwrite (existing nodes would need the new files)", filepath.Join(o.Out, f))
			}
		}
	}
	now := time.Now()
	var written []string
	write := func(name string, blockType string, der []byte, mode os.FileMode) error {
		path := filepath.Join(o.Out, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), mode); err != nil {
			return err
		}
		written = append(written, path)
		return nil
	}
	keyDER := func(k *ecdsa.PrivateKey) []byte { b, _ := x509.MarshalECPrivateKey(k); return b }
	var caKey *ecdsa.PrivateKey
	var caCert *x509.Certificate
	if o.CACert != "" || o.CAKey != "" {
		var err error
		if caCert, caKey, err = loadCA(o.CACert, o.CAKey); err != nil {
			return nil, err
		}
	} else {
		var err error
		if caKey, caCert, err = newCA(o.Validity, now); err != nil {
			return nil, err
		}
		if err := write("ca.crt", "CERTIFICATE", caCert.Raw, 0o644); err != nil {
			return nil, err
		}
		if err := write("ca.key", "EC PRIVATE KEY", keyDER(caKey), 0o600); err != nil {
			return nil, err
		}
	}
	for _, node := range o.Nodes {
		if err := issue(o, node, caCert, caKey, now, write, keyDER); err != nil {
			return nil, err
		}
	}
	return written, nil
}

func newCA(validity time.Duration, now time.Time) (*ecdsa.PrivateKey, *x509.Certificate, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "autonomy cluster CA", Organization: []string{"AutonomyOps"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	return caKey, caCert, err
}

func loadCA(certPath, keyPath string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	if certPath == "" || keyPath == "" {
		return nil, nil, errors.New("--ca-cert and --ca-key go together")
	}
	cb, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	kb, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	cblk, _ := pem.Decode(cb)
	kblk, _ := pem.Decode(kb)
	if cblk == nil || kblk == nil {
		return nil, nil, fmt.Errorf("%s or %s is not PEM", certPath, keyPath)
	}
	cert, err := x509.ParseCertificate(cblk.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("--ca-cert %s: %w", certPath, err)
	}
	key, err := x509.ParseECPrivateKey(kblk.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("--ca-key %s: %w (expected an EC key as certs init writes)", keyPath, err)
	}
	if !cert.IsCA {
		return nil, nil, fmt.Errorf("--ca-cert %s is not a CA certificate", certPath)
	}
	return cert, key, nil
}

func issue(o CertsOptions, node string, caCert *x509.Certificate, caKey *ecdsa.PrivateKey, now time.Time,
	write func(string, string, []byte, os.FileMode) error, keyDER func(*ecdsa.PrivateKey) []byte) error {
	{
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial(),
			Subject:      pkix.Name{CommonName: node, Organization: []string{"AutonomyOps"}},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(o.Validity),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			DNSNames:     []string{node, "localhost"},
			IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
		}
		for _, h := range append(append([]string{}, o.Hosts...), o.NodeHost[node]...) {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else if h != "" {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		if err := write(node+".crt", "CERTIFICATE", der, 0o644); err != nil {
			return err
		}
		return write(node+".key", "EC PRIVATE KEY", keyDER(key), 0o600)
	}
}

func nodeFiles(nodes []string) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n+".crt", n+".key")
	}
	return out
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// ParseNodeHosts reads "n1=10.0.0.1;n2=10.0.0.2,n2.lan" style per-node SANs:
// entries separated by ';', a node's hosts by ','.
func ParseNodeHosts(s string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, hosts, ok := strings.Cut(part, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("--node-hosts entry %q is not name=host[,host]", part)
		}
		out[name] = strings.Split(hosts, ",")
	}
	return out, nil
}
