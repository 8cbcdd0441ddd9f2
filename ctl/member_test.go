package ctl

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
)

func TestCertsInit_caSignsNodeCertificates(t *testing.T) {
	dir := t.TempDir()
	files, err := CertsInit(CertsOptions{Out: dir, Nodes: []string{"n1", "n2"}, Hosts: []string{"10.1.2.3", "appliance.lan"},
		NodeHost: map[string][]string{"n2": {"10.9.9.9"}}})
	if err != nil || len(files) != 6 {
		t.Fatalf("files %v err %v", files, err)
	}
	read := func(name string) *x509.Certificate {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		blk, _ := pem.Decode(b)
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ca := read("ca.crt")
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	n2 := read("n2.crt")
	for _, host := range []string{"n2", "localhost", "127.0.0.1", "10.1.2.3", "appliance.lan", "10.9.9.9"} {
		if _, err := n2.Verify(x509.VerifyOptions{Roots: pool, DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("n2's certificate does not verify for %s: %v", host, err)
		}
	}
	if st, _ := os.Stat(filepath.Join(dir, "n1.key")); st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v", st.Mode().Perm())
	}
	if _, err := CertsInit(CertsOptions{Out: dir, Nodes: []string{"n1"}}); err == nil {
		t.Error("overwrote existing certificates without --force")
	}
	// A node added later is signed by the same CA.
	later := t.TempDir()
	if _, err := CertsInit(CertsOptions{Out: later, Nodes: []string{"n4"}, CACert: filepath.Join(dir, "ca.crt"), CAKey: filepath.Join(dir, "ca.key")}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(later, "n4.crt"))
	blk, _ := pem.Decode(b)
	n4, _ := x509.ParseCertificate(blk.Bytes)
	if _, err := n4.Verify(x509.VerifyOptions{Roots: pool, DNSName: "n4", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("n4 is not signed by the cluster CA: %v", err)
	}
	if _, err := os.Stat(filepath.Join(later, "ca.key")); err == nil {
		t.Error("signing with an existing CA wrote a new CA")
	}
}
