package devca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNewIsP256RootValidTenYears(t *testing.T) {
	ca, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	c := ca.Certificate()
	if c.Subject.CommonName != DefaultCommonName {
		t.Errorf("common name %q, want %q", c.Subject.CommonName, DefaultCommonName)
	}
	if !c.IsCA || c.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("IsCA=%v algorithm=%v", c.IsCA, c.PublicKeyAlgorithm)
	}
	if got := c.NotAfter.Sub(time.Now()); got < CAValidity-2*time.Hour || got > CAValidity {
		t.Errorf("validity left %s, want about %s", got, CAValidity)
	}
	if ca.CertPath() != "" {
		t.Errorf("in-memory CA has path %q", ca.CertPath())
	}
	block, _ := pem.Decode(ca.CertPEM())
	if block == nil || !bytes.Equal(block.Bytes, c.Raw) {
		t.Error("CertPEM does not hold the certificate")
	}
}

func TestIssueLeaf(t *testing.T) {
	ca, err := New("test CA")
	if err != nil {
		t.Fatal(err)
	}
	ips := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::ffff:10.0.0.1"), netip.MustParseAddr("::1")}
	pair, err := ca.Issue([]string{"proxy.example.test"}, ips, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		t.Fatal("Leaf not set")
	}
	if leaf.PublicKeyAlgorithm != x509.ECDSA || leaf.IsCA {
		t.Errorf("algorithm=%v IsCA=%v", leaf.PublicKeyAlgorithm, leaf.IsCA)
	}
	wantEKU := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	if !slices.Equal(leaf.ExtKeyUsage, wantEKU) {
		t.Errorf("EKU %v, want %v", leaf.ExtKeyUsage, wantEKU)
	}
	for _, host := range []string{"proxy.example.test", "127.0.0.1", "10.0.0.1", "::1"} {
		_, err := leaf.Verify(x509.VerifyOptions{
			DNSName:   host,
			Roots:     ca.Pool(),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		})
		if err != nil {
			t.Errorf("verify for %s: %v", host, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("verify as client certificate: %v", err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() || !key.PublicKey.Equal(leaf.PublicKey) {
		t.Errorf("private key %T does not match the P-256 leaf", pair.PrivateKey)
	}
	if got := leaf.NotAfter.Sub(time.Now()); got > time.Hour {
		t.Errorf("validity %s exceeds the hour asked for", got)
	}
}

func TestIssueCutsValidityAtCAExpiry(t *testing.T) {
	ca, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Issue([]string{"a.test"}, nil, 20*CAValidity)
	if err != nil {
		t.Fatal(err)
	}
	if pair.Leaf.NotAfter.After(ca.Certificate().NotAfter) {
		t.Errorf("leaf outlives CA: %s > %s", pair.Leaf.NotAfter, ca.Certificate().NotAfter)
	}
}

func TestIssueRefusesNoNamesAndBadValidity(t *testing.T) {
	ca, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Issue(nil, nil, time.Hour); err == nil {
		t.Error("no names: no error")
	}
	if _, err := ca.Issue([]string{"a.test"}, nil, 0); err == nil {
		t.Error("zero validity: no error")
	}
}

func TestLoadOrCreatePersistsAndReloads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "ca")
	ca, created, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Error("created = false for an empty directory")
	}
	if ca.CertPath() != filepath.Join(dir, CertFile) {
		t.Errorf("CertPath %q", ca.CertPath())
	}
	assertMode(t, dir, 0o700|os.ModeDir)
	assertMode(t, filepath.Join(dir, CertFile), 0o644)
	assertMode(t, filepath.Join(dir, KeyFile), 0o600)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only %s and %s", names, CertFile, KeyFile)
	}
	onDisk, err := os.ReadFile(filepath.Join(dir, CertFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(onDisk, ca.CertPEM()) {
		t.Error("ca.crt differs from CertPEM")
	}
	issued, err := ca.Issue([]string{"a.test"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	again, created, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if created {
		t.Error("created = true on reload")
	}
	if !bytes.Equal(again.CertPEM(), ca.CertPEM()) {
		t.Error("reload gave a different CA")
	}
	if _, err := issued.Leaf.Verify(x509.VerifyOptions{DNSName: "a.test", Roots: again.Pool()}); err != nil {
		t.Errorf("leaf from the first CA does not verify against the reloaded one: %v", err)
	}
	fromReloaded, err := again.Issue([]string{"b.test"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fromReloaded.Leaf.Verify(x509.VerifyOptions{DNSName: "b.test", Roots: ca.Pool()}); err != nil {
		t.Errorf("reloaded key does not sign for the original root: %v", err)
	}
}

func TestLoadOrCreateRefusesBrokenFiles(t *testing.T) {
	other, err := New("other")
	if err != nil {
		t.Fatal(err)
	}
	otherDir := t.TempDir()
	if _, _, err := LoadOrCreate(otherDir); err != nil {
		t.Fatal(err)
	}
	otherKey, err := os.ReadFile(filepath.Join(otherDir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name     string
		file     string // which file is damaged, and must be named in the error
		contents []byte // nil: remove the file
		wantErr  string
	}{
		{"corrupt key", KeyFile, []byte("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"), "load local CA key"},
		{"garbage key", KeyFile, []byte("hello"), "no PEM block"},
		{"mismatched key", KeyFile, otherKey, "does not match"},
		{"corrupt cert", CertFile, []byte("not a certificate"), "no PEM CERTIFICATE block"},
		{"leaf as cert", CertFile, mustLeafPEM(t, other), "not a CA certificate"},
		{"missing cert", CertFile, nil, "is missing"},
		{"missing key", KeyFile, nil, "is missing"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, _, err := LoadOrCreate(dir); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, tc.file)
			partner := filepath.Join(dir, CertFile)
			if tc.file == CertFile {
				partner = filepath.Join(dir, KeyFile)
			}
			partnerBefore, err := os.ReadFile(partner)
			if err != nil {
				t.Fatal(err)
			}
			if tc.contents == nil {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(path, tc.contents, 0o600); err != nil {
				t.Fatal(err)
			}

			_, _, err = LoadOrCreate(dir)
			if err == nil {
				t.Fatal("no error")
			}
			t.Logf("error: %v", err)
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not name %s and say %q", err, path, tc.wantErr)
			}
			if tc.contents == nil {
				if _, err := os.Stat(path); !os.IsNotExist(err) {
					t.Errorf("%s was recreated", path)
				}
			} else if after, err := os.ReadFile(path); err != nil || !bytes.Equal(after, tc.contents) {
				t.Errorf("%s was modified (err %v)", path, err)
			}
			if after, err := os.ReadFile(partner); err != nil || !bytes.Equal(after, partnerBefore) {
				t.Errorf("%s was modified (err %v)", partner, err)
			}
		})
	}
}

func mustLeafPEM(t *testing.T, ca *CA) []byte {
	t.Helper()
	pair, err := ca.Issue([]string{"leaf.test"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return pemCert(pair.Certificate[0])
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != want {
		t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
	}
}
