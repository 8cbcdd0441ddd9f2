package node_test

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/autonomyops/orchestrator/ctl"
	"github.com/autonomyops/orchestrator/node/proctest"
)

// replaceFile writes content to path atomically (tmp + rename), as an
// operator's tooling should.
func replaceFile(t *testing.T, path string, content []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, content, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// waitLog waits until n's log holds want count times or more.
func waitLog(t *testing.T, n *proctest.Node, want string, count int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(n.Logs(), want) < count {
		if time.Now().After(deadline) {
			t.Fatalf("%s: the log does not hold %q %d times:\n%s", n.Name, want, count, n.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestReload_SighupSwapsTheTokensFile: under a running three-node cluster
// the tokens file is replaced and every node gets SIGHUP: the old token is
// refused and the new one accepted on every node, and each reload is in the
// audit log. An invalid tokens file is then refused with the reason logged,
// and the tokens in effect stay.
func TestReload_SighupSwapsTheTokensFile(t *testing.T) {
	path := writeTokens(t)
	c := proctest.NewCluster(t, 3, "--tokens-file", path)
	c.Start()
	c.WaitLeader(60 * time.Second)
	for _, n := range c.Nodes {
		if code, _, b := do(t, "GET", n.URL()+"/v1/wal/status", "view-token", "", nil); code != 200 {
			t.Fatalf("%s: the old token before the reload: %d %s", n.Name, code, b)
		}
	}

	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	replaceFile(t, path, []byte(fmt.Sprintf("tokens:\n  - {name: ro2, role: viewer, sha256: %s}\n  - {name: bob, role: admin, sha256: %s}\n",
		sum("view-token-2"), sum("admin-token-2"))))
	for _, n := range c.Nodes {
		n.Signal(syscall.SIGHUP)
	}
	for _, n := range c.Nodes {
		waitLog(t, n, `"msg":"RELOADED"`, 1)
		if code, _, b := do(t, "GET", n.URL()+"/v1/wal/status", "view-token", "", nil); code != http.StatusUnauthorized {
			t.Errorf("%s: the old token after the reload: %d %s", n.Name, code, b)
		}
		if code, _, b := do(t, "GET", n.URL()+"/v1/wal/status", "view-token-2", "", nil); code != 200 {
			t.Errorf("%s: the new token after the reload: %d %s", n.Name, code, b)
		}
		if !n.Running() {
			t.Fatalf("%s stopped on SIGHUP", n.Name)
		}
	}
	l := c.WaitLeader(30 * time.Second)
	code, _, b := do(t, "GET", l.URL()+"/v1/audit", "admin-token-2", "", nil)
	var ar wire.AuditResponse
	json.Unmarshal(b, &ar)
	reloaded := map[string]bool{}
	for _, r := range ar.Records {
		if r.Action == "reload" && r.Details["tokens"] == "reloaded" && r.Details["via"] == "SIGHUP" {
			reloaded[r.Node] = true
		}
	}
	if code != 200 || len(reloaded) != 3 {
		t.Fatalf("audit: %d, reloads recorded for %v\n%s", code, reloaded, b)
	}

	// An invalid file: refused, logged with the reason, old tokens kept.
	replaceFile(t, path, []byte("tokens:\n  - {name: broken, role: superuser, sha256: 00}\n"))
	for _, n := range c.Nodes {
		n.Signal(syscall.SIGHUP)
	}
	for _, n := range c.Nodes {
		waitLog(t, n, `"msg":"RELOADED"`, 2)
		waitLog(t, n, "RELOAD_REFUSED: the new tokens file is invalid; the previous tokens stay in effect", 1)
		if !strings.Contains(n.Logs(), `role \"superuser\" is not viewer, operator or admin`) {
			t.Errorf("%s: the refusal does not say why:\n%s", n.Name, n.Logs())
		}
		if code, _, b := do(t, "GET", n.URL()+"/v1/wal/status", "view-token-2", "", nil); code != 200 {
			t.Errorf("%s: the tokens in effect after a refused reload: %d %s", n.Name, code, b)
		}
	}
	code, _, b = do(t, "GET", c.WaitLeader(30*time.Second).URL()+"/v1/audit", "admin-token-2", "", nil)
	if code != 200 || !strings.Contains(string(b), `"refused":["tokens"]`) {
		t.Fatalf("audit of the refused reload: %d %s", code, b)
	}
}

// serial returns the serial number of the certificate n's API presents.
func serial(t *testing.T, n *proctest.Node, pool *x509.CertPool) string {
	t.Helper()
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", n.Ports.API), &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatalf("%s: %v", n.Name, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
}

func leafSerial(t *testing.T, path string) string {
	t.Helper()
	c, err := tls.LoadX509KeyPair(path, strings.TrimSuffix(path, ".crt")+".key")
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(c.Certificate[0])
	return leaf.SerialNumber.Text(16)
}

// TestReload_SighupSwapsTLSCertificates: a node's certificate (API and peer
// mutual TLS) is replaced by a new one from the same CA and the node gets
// SIGHUP: new connections get the new certificate and replication goes on.
// A certificate from another CA, and a file that is not PEM, are refused
// with the reason logged, and the certificate in effect stays.
func TestReload_SighupSwapsTLSCertificates(t *testing.T) {
	dir := t.TempDir()
	if _, err := ctl.CertsInit(ctl.CertsOptions{Out: dir, Nodes: []string{"n1", "n2", "n3"}}); err != nil {
		t.Fatal(err)
	}
	c := proctest.NewCluster(t, 3)
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
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	proctest.Client.Transport = tr
	defer func() { proctest.Client.Transport = saved; tr.CloseIdleConnections() }()
	c.Start()
	c.WaitLeader(60 * time.Second)
	n1 := c.Node("n1")
	old := serial(t, n1, pool)

	install := func(from string) {
		t.Helper()
		for _, ext := range []string{".key", ".crt"} {
			b, err := os.ReadFile(filepath.Join(from, "n1"+ext))
			if err != nil {
				t.Fatal(err)
			}
			replaceFile(t, filepath.Join(dir, "n1"+ext), b)
		}
	}
	fresh := t.TempDir()
	if _, err := ctl.CertsInit(ctl.CertsOptions{Out: fresh, Nodes: []string{"n1"}, Hosts: []string{"127.0.0.1"},
		CACert: filepath.Join(dir, "ca.crt"), CAKey: filepath.Join(dir, "ca.key")}); err != nil {
		t.Fatal(err)
	}
	want := leafSerial(t, filepath.Join(fresh, "n1.crt"))
	install(fresh)
	n1.Signal(syscall.SIGHUP)
	waitLog(t, n1, `"msg":"RELOADED"`, 1)
	if got := serial(t, n1, pool); got != want || got == old {
		t.Fatalf("after the reload n1 presents serial %s, want the new %s (old %s)", got, want, old)
	}
	w := proctest.NewWriter(c)
	stop := startLoad(w, 2, "tls-reload")
	time.Sleep(time.Second)
	stop()
	waitConverged(t, c, 30*time.Second)
	if len(w.Snapshot()) == 0 {
		t.Fatal("nothing was acknowledged after the reload")
	}
	c.CheckAllNodes(w.Snapshot())

	// From another CA: every peer would refuse it.
	evil := t.TempDir()
	if _, err := ctl.CertsInit(ctl.CertsOptions{Out: evil, Nodes: []string{"n1"}}); err != nil {
		t.Fatal(err)
	}
	install(evil)
	n1.Signal(syscall.SIGHUP)
	waitLog(t, n1, "RELOAD_REFUSED: the new TLS files are invalid", 1)
	if !strings.Contains(n1.Logs(), "--peer-tls-cert is not signed by --peer-tls-ca") {
		t.Errorf("the refusal does not say why:\n%s", n1.Logs())
	}
	if got := serial(t, n1, pool); got != want {
		t.Fatalf("after a refused reload n1 presents %s, want %s still", got, want)
	}
	// Not PEM at all.
	replaceFile(t, filepath.Join(dir, "n1.crt"), []byte("not a certificate\n"))
	n1.Signal(syscall.SIGHUP)
	waitLog(t, n1, "RELOAD_REFUSED: the new TLS files are invalid", 2)
	if got := serial(t, n1, pool); got != want {
		t.Fatalf("after a refused reload n1 presents %s, want %s still", got, want)
	}
	install(fresh) // etcd re-reads the peer files at each new connection
	code, _, b := do(t, "GET", c.WaitLeader(30*time.Second).URL()+"/v1/audit", "", "", nil)
	if code != 200 || strings.Count(string(b), `"refused":["tls"]`) != 2 || !strings.Contains(string(b), `"tls":"reloaded"`) {
		t.Fatalf("audit: %d %s", code, b)
	}
}
