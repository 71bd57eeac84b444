package tls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// withPollInterval shortens FilesPollInterval for managers created in the test.
func withPollInterval(t *testing.T, d time.Duration) {
	old := FilesPollInterval
	FilesPollInterval = d
	t.Cleanup(func() { FilesPollInterval = old })
}

// writeSelfSignedPair writes a self-signed certificate for name valid in [notBefore, notAfter].
func writeSelfSignedPair(t *testing.T, name string, notBefore, notAfter time.Time) FilePair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	fp := FilePair{Cert: filepath.Join(dir, "tls.crt"), Key: filepath.Join(dir, "tls.key")}
	writeFile(t, fp.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	writeFile(t, fp.Key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	return fp
}

// TestFilesWatchReloadsOnChange: rewriting the files on disk replaces the served certificate
// without SIGHUP; a broken pair (cert and key that do not match, an expired certificate)
// leaves the previous one in use, and a good pair after it is picked up again.
func TestFilesWatchReloadsOnChange(t *testing.T) {
	withPollInterval(t, 20*time.Millisecond)
	ca := newCA(t, "files CA")
	fp := writePair(t, ca, []string{"a.example.test"}, nil)
	m := newManager(t, Config{Files: []FilePair{fp}, DefaultName: "a.example.test"})
	srv := startServer(t, "127.0.0.1", m.ServerConfig(nil))
	serial := func() string {
		t.Helper()
		cs, err := dial(t, srv.addr, clientFor(ca.Pool(), "a.example.test"))
		if err != nil {
			t.Fatal(err)
		}
		srv.next(t)
		return cs.PeerCertificates[0].SerialNumber.String()
	}
	waitSerial := func(not string) string {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			if s := serial(); s != not {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatal("the certificate changed on disk but the served one did not")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	first := serial()

	next := writePair(t, ca, []string{"a.example.test"}, nil)
	copyFile(t, next.Cert, fp.Cert)
	copyFile(t, next.Key, fp.Key)
	second := waitSerial(first)

	// A new certificate with the old key: the pair does not match.
	mismatched := writePair(t, ca, []string{"a.example.test"}, nil)
	copyFile(t, mismatched.Cert, fp.Cert)
	time.Sleep(200 * time.Millisecond) // several polls
	if got := serial(); got != second {
		t.Fatalf("after a mismatched pair: serial %s, want the previous %s", got, second)
	}
	// An expired certificate is not taken either.
	expired := writeSelfSignedPair(t, "a.example.test", time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	copyFile(t, expired.Cert, fp.Cert)
	copyFile(t, expired.Key, fp.Key)
	time.Sleep(200 * time.Millisecond)
	if got := serial(); got != second {
		t.Fatalf("after an expired pair: serial %s, want the previous %s", got, second)
	}
	if err := m.Ready(); err != nil {
		t.Fatalf("Ready with the previous, valid certificate: %v", err)
	}
	// The key catches up with the certificate: now it loads.
	copyFile(t, mismatched.Cert, fp.Cert)
	copyFile(t, mismatched.Key, fp.Key)
	if third := waitSerial(second); third == first {
		t.Fatal("served the first certificate again")
	}
}

// TestReadyFiles: /readyz's check fails while a files certificate has expired or is not
// valid yet, and names the file.
func TestReadyFiles(t *testing.T) {
	withPollInterval(t, 0)
	now := time.Now()
	ca := newCA(t, "files CA")
	good := writePair(t, ca, []string{"a.example.test"}, nil)
	if err := newManager(t, Config{Files: []FilePair{good}}).Ready(); err != nil {
		t.Fatalf("valid certificate: %v", err)
	}
	for _, c := range []struct {
		name      string
		from, to  time.Time
		wantError string
	}{
		{"expired", now.Add(-48 * time.Hour), now.Add(-time.Hour), "expired at"},
		{"not valid yet", now.Add(time.Hour), now.Add(48 * time.Hour), "not valid before"},
	} {
		bad := writeSelfSignedPair(t, "b.example.test", c.from, c.to)
		m := newManager(t, Config{Files: []FilePair{good, bad}, DefaultName: "a.example.test"})
		err := m.Ready()
		if err == nil || !strings.Contains(err.Error(), c.wantError) || !strings.Contains(err.Error(), bad.Cert) {
			t.Errorf("%s: Ready() = %v", c.name, err)
		}
	}
	if err := newManager(t, Config{SelfSigned: &SelfSignedConfig{Dir: t.TempDir()}}).Ready(); err != nil {
		t.Errorf("self_signed: %v", err)
	}
}
