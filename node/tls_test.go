package node_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/ctl"
	"github.com/autonomyops/orchestrator/node/proctest"
	"github.com/autonomyops/orchestrator/walrepl"
)

type bearer struct {
	base  http.RoundTripper
	token string
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// TestTLS_ClusterWithMutualTLSGossipKeyAndTokens runs three nodes with the
// API over HTTPS, mutual TLS for replication and etcd peers, encrypted gossip
// and RBAC tokens, and shows a peer with a certificate from another CA is
// refused.
func TestTLS_ClusterWithMutualTLSGossipKeyAndTokens(t *testing.T) {
	dir := t.TempDir()
	if _, err := ctl.CertsInit(ctl.CertsOptions{Out: dir, Nodes: []string{"n1", "n2", "n3"}}); err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	c := proctest.NewCluster(t, 3, "--tokens-file", writeTokens(t), "--gossip-key", base64.StdEncoding.EncodeToString(key))
	c.UseTLS()
	for _, n := range c.Nodes {
		crt, k := filepath.Join(dir, n.Name+".crt"), filepath.Join(dir, n.Name+".key")
		n.Extra = append(n.Extra, "--tls-cert", crt, "--tls-key", k, "--peer-tls-cert", crt, "--peer-tls-key", k,
			"--peer-tls-ca", filepath.Join(dir, "ca.crt"))
	}
	caPEM, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	saved := proctest.Client.Transport
	ht := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	proctest.Client.Transport = bearer{base: ht, token: "admin-token"}
	defer func() { proctest.Client.Transport = saved; ht.CloseIdleConnections() }()

	c.Start()
	leader := c.WaitLeader(60 * time.Second)
	w := proctest.NewWriter(c)
	stop := startLoad(w, 2, "tls")
	time.Sleep(time.Second)
	stop()
	waitConverged(t, c, 30*time.Second)
	c.CheckAllNodes(w.Snapshot())
	if len(w.Snapshot()) == 0 {
		t.Fatal("nothing was acknowledged over TLS")
	}

	// Plain HTTP to the HTTPS API fails.
	if resp, err := http.Get(strings.Replace(leader.URL(), "https://", "http://", 1) + "/v1/health"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("the API answered plain HTTP")
		}
	}
	// A peer whose certificate comes from another CA is refused.
	evil := t.TempDir()
	if _, err := ctl.CertsInit(ctl.CertsOptions{Out: evil, Nodes: []string{"n9"}}); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(evil, "n9.crt"), filepath.Join(evil, "n9.key"))
	if err != nil {
		t.Fatal(err)
	}
	tr := walrepl.NewTCPTransport(&tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := tr.Promise(ctx, leader.ReplAddr(), &walrepl.PromiseRequest{Epoch: 1 << 60, Leader: "n9"}); err == nil || !errors.Is(err, walrepl.ErrUnreachable) {
		t.Fatalf("a wrong-CA peer got an answer: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(leader.Logs(), "REPL_PEER_REJECTED") {
		if time.Now().After(deadline) {
			t.Fatalf("no REPL_PEER_REJECTED log line on %s", leader.Name)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The cluster is untouched: no node accepted the evil epoch, and a
	// leader still commits.
	for _, n := range c.Nodes {
		if _, h := n.Health(); h.Epoch >= 1<<60 {
			t.Fatalf("%s accepted the refused peer's epoch %d", n.Name, h.Epoch)
		}
		t.Logf("%s: %d lease revocations", n.Name, strings.Count(n.Logs(), "LEADER_LEASE_REVOKED"))
	}
	c.WaitLeader(30 * time.Second)
}
