package tls

import (
	gotls "crypto/tls"
	"crypto/x509"
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
)

// originServer is a TLS origin on loopback with a certificate from its own CA.
func originServer(t *testing.T, certPair FilePair, clientCAs *x509.CertPool) *testServer {
	t.Helper()
	pair, err := gotls.LoadX509KeyPair(certPair.Cert, certPair.Key)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &gotls.Config{Certificates: []gotls.Certificate{pair}}
	if clientCAs != nil {
		cfg.ClientAuth = gotls.RequireAndVerifyClientCert
		cfg.ClientCAs = clientCAs
	}
	return startServer(t, "127.0.0.1", cfg)
}

func TestUpstreamClientConfigVerifiesAgainstCAFile(t *testing.T) {
	trusted := newCA(t, "trusted origin CA")
	other := newCA(t, "other CA")
	loopback := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	good := originServer(t, writePair(t, trusted, []string{"origin.example.test"}, loopback), nil)
	foreign := originServer(t, writePair(t, other, []string{"origin.example.test"}, loopback), nil)

	base, err := UpstreamConfig{CAFile: writeCA(t, trusted)}.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if base.InsecureSkipVerify {
		t.Fatal("InsecureSkipVerify set")
	}
	if base.MinVersion != gotls.VersionTLS12 {
		t.Errorf("MinVersion %x", base.MinVersion)
	}

	c := base.Clone()
	c.ServerName = "origin.example.test"
	if _, err := dial(t, good.addr, c); err != nil {
		t.Fatalf("origin with a certificate from ca_file: %v", err)
	}
	good.next(t)

	c = base.Clone()
	c.ServerName = "origin.example.test"
	_, err = dial(t, foreign.addr, c)
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("origin with a certificate from another CA: error %v, want unknown authority", err)
	}
	foreign.next(t)

	c = base.Clone()
	c.ServerName = "wrong.example.test"
	_, err = dial(t, good.addr, c)
	var hostErr x509.HostnameError
	if !errors.As(err, &hostErr) {
		t.Fatalf("wrong ServerName: error %v, want hostname error", err)
	}
	good.next(t)
}

func TestUpstreamClientCertificate(t *testing.T) {
	originCA := newCA(t, "origin CA")
	proxyCA := newCA(t, "proxy client CA")
	origin := originServer(t, writePair(t, originCA, []string{"origin.example.test"}, nil), proxyCA.Pool())
	client := writePair(t, proxyCA, []string{"fixedgate-proxy"}, nil)

	withCert, err := UpstreamConfig{CAFile: writeCA(t, originCA), ClientCert: client.Cert, ClientKey: client.Key, MinVersion: "1.3"}.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	c := withCert.Clone()
	c.ServerName = "origin.example.test"
	cs, err := dial(t, origin.addr, c)
	if err != nil {
		t.Fatalf("with client certificate: %v", err)
	}
	if cs.Version != gotls.VersionTLS13 {
		t.Errorf("version %x", cs.Version)
	}
	h := origin.next(t)
	if h.err != nil || len(h.state.PeerCertificates) == 0 || h.state.PeerCertificates[0].Subject.CommonName != "fixedgate-proxy" {
		t.Fatalf("origin did not see the proxy's certificate: err %v", h.err)
	}

	without, err := UpstreamConfig{CAFile: writeCA(t, originCA)}.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	c = without.Clone()
	c.ServerName = "origin.example.test"
	if _, err := dial(t, origin.addr, c); err == nil {
		t.Fatal("origin requiring mTLS accepted a client without certificate")
	}
	origin.next(t)
}

func TestUpstreamClientConfigSystemRoots(t *testing.T) {
	c, err := UpstreamConfig{}.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if c.RootCAs == nil || c.InsecureSkipVerify || len(c.Certificates) != 0 {
		t.Errorf("RootCAs %v InsecureSkipVerify %v certificates %d", c.RootCAs, c.InsecureSkipVerify, len(c.Certificates))
	}
}

func TestUpstreamClientConfigErrors(t *testing.T) {
	ca := newCA(t, "ca")
	pair := writePair(t, ca, []string{"a.test"}, nil)
	missing := filepath.Join(t.TempDir(), "missing.pem")
	cases := []struct {
		name string
		cfg  UpstreamConfig
		want string
	}{
		{"invalid", UpstreamConfig{ClientCert: pair.Cert}, "client_key: empty"},
		{"ca_file missing", UpstreamConfig{CAFile: missing}, "ca_file: load CA certificates " + missing},
		{"ca_file not PEM", UpstreamConfig{CAFile: pair.Key}, "no PEM certificates found"},
		{"client cert missing", UpstreamConfig{ClientCert: missing, ClientKey: pair.Key}, "client_cert: load client certificate " + missing},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.cfg.ClientConfig()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}
