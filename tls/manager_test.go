package tls

import (
	"context"
	gotls "crypto/tls"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/fixedgate/fixedgate/tls/devca"
)

func TestSelfSigned(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "fixedgate-data")
	m := newManager(t, Config{SelfSigned: &SelfSignedConfig{Dir: dir}})
	if want := filepath.Join(dir, devca.CertFile); m.CAPath() != want {
		t.Fatalf("CAPath %q, want %q", m.CAPath(), want)
	}
	pool := poolFromFile(t, m.CAPath())
	srv := startServer(t, "127.0.0.1", m.ServerConfig([]string{"h2", "http/1.1"}))

	t.Run("SNI localhost", func(t *testing.T) {
		cs, err := dial(t, srv.addr, clientFor(pool, "localhost"))
		if err != nil {
			t.Fatal(err)
		}
		h := srv.next(t)
		if h.err != nil || h.serverName != "localhost" {
			t.Fatalf("server: sni %q err %v", h.serverName, h.err)
		}
		if cs.Version != gotls.VersionTLS13 {
			t.Errorf("version %x", cs.Version)
		}
	})
	t.Run("IP without SNI", func(t *testing.T) {
		if _, err := dial(t, srv.addr, clientFor(pool, "127.0.0.1")); err != nil {
			t.Fatal(err)
		}
		if h := srv.next(t); h.err != nil || h.serverName != "" {
			t.Fatalf("server: sni %q (want none) err %v", h.serverName, h.err)
		}
	})
	t.Run("ALPN", func(t *testing.T) {
		c := clientFor(pool, "localhost")
		c.NextProtos = []string{"h2"}
		cs, err := dial(t, srv.addr, c)
		if err != nil {
			t.Fatal(err)
		}
		srv.next(t)
		if cs.NegotiatedProtocol != "h2" {
			t.Errorf("negotiated %q, want h2", cs.NegotiatedProtocol)
		}
	})
	t.Run("unknown SNI refused", func(t *testing.T) {
		if _, err := dial(t, srv.addr, clientFor(pool, "elsewhere.example.test")); err == nil {
			t.Fatal("handshake for a name without certificate succeeded")
		}
		if h := srv.next(t); h.err == nil {
			t.Fatal("server accepted a name without certificate")
		}
	})

	t.Run("IPv6 loopback", func(t *testing.T) {
		ln, err := net.Listen("tcp", "[::1]:0")
		if err != nil {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		_ = ln.Close()
		srv6 := startServer(t, "::1", m.ServerConfig(nil))
		if _, err := dial(t, srv6.addr, clientFor(pool, "::1")); err != nil {
			t.Fatal(err)
		}
		srv6.next(t)
	})
}

// TestSelfSignedReusesCA checks that a restart keeps the root that clients
// already trust.
func TestSelfSignedReusesCA(t *testing.T) {
	dir := t.TempDir()
	first := newManager(t, Config{SelfSigned: &SelfSignedConfig{Dir: dir}})
	before, err := os.ReadFile(first.CAPath())
	if err != nil {
		t.Fatal(err)
	}
	first.Close()
	second := newManager(t, Config{SelfSigned: &SelfSignedConfig{Dir: dir}})
	after, err := os.ReadFile(second.CAPath())
	if err != nil {
		t.Fatal(err)
	}
	if string(before) != string(after) {
		t.Fatal("restart replaced the local CA")
	}
}

func TestSelfSignedDefaultNameAndListenerIPs(t *testing.T) {
	dir := t.TempDir()
	fixedIP := netip.MustParseAddr("127.0.0.2")
	m := newManager(t, Config{SelfSigned: &SelfSignedConfig{Dir: dir}, DefaultName: "Proxy.Example.Test"}, fixedIP)
	pool := poolFromFile(t, m.CAPath())
	srv := startServer(t, "127.0.0.3", m.ServerConfig(nil)) // an address the certificate does not name
	srvFixed := startServer(t, fixedIP.String(), m.ServerConfig(nil))

	t.Run("no SNI gets default_name", func(t *testing.T) {
		if _, err := dial(t, srv.addr, noSNIClient(pool, "proxy.example.test")); err != nil {
			t.Fatal(err)
		}
		if h := srv.next(t); h.err != nil || h.serverName != "" {
			t.Fatalf("server: sni %q err %v", h.serverName, h.err)
		}
	})
	t.Run("SNI default_name", func(t *testing.T) {
		if _, err := dial(t, srv.addr, clientFor(pool, "proxy.example.test")); err != nil {
			t.Fatal(err)
		}
		srv.next(t)
	})
	t.Run("fixed IP without SNI", func(t *testing.T) {
		if _, err := dial(t, srvFixed.addr, clientFor(pool, fixedIP.String())); err != nil {
			t.Fatal(err)
		}
		srvFixed.next(t)
	})
}

// TestIPLiteralSNI covers clients that put the IP address into SNI, which
// Go's client never does: certmagic alone matches the IP as a name only and
// does not fall back to the default name.
func TestIPLiteralSNI(t *testing.T) {
	ca := newCA(t, "files CA")
	fp := writePair(t, ca, []string{"proxy.example.test"}, nil)
	m := newManager(t, Config{Files: []FilePair{fp}, DefaultName: "proxy.example.test"})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	serverSide, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer serverSide.Close()

	hello := &gotls.ClientHelloInfo{ServerName: "127.0.0.1", Conn: serverSide}
	if _, err := m.magic.GetCertificate(hello); err == nil {
		t.Log("certmagic now falls back for IP-literal SNI by itself; the wrapper is harmless but may be dropped")
	}
	cert, err := m.ServerConfig(nil).GetCertificate(hello)
	if err != nil {
		t.Fatalf("IP-literal SNI: %v", err)
	}
	if err := cert.Leaf.VerifyHostname("proxy.example.test"); err != nil {
		t.Errorf("served the wrong certificate: %v", err)
	}
}

func TestFiles(t *testing.T) {
	ca := newCA(t, "files CA")
	pool := ca.Pool()
	fp := writePair(t, ca, []string{"files.example.test"}, nil)
	m := newManager(t, Config{Files: []FilePair{fp}})
	if m.CAPath() != "" {
		t.Errorf("CAPath %q in files mode", m.CAPath())
	}
	srv := startServer(t, "127.0.0.1", m.ServerConfig(nil))

	if _, err := dial(t, srv.addr, clientFor(pool, "files.example.test")); err != nil {
		t.Fatalf("SNI: %v", err)
	}
	srv.next(t)
	// One certificate and no default_name: clients without SNI get it.
	if _, err := dial(t, srv.addr, noSNIClient(pool, "files.example.test")); err != nil {
		t.Fatalf("no SNI: %v", err)
	}
	srv.next(t)
}

func TestFilesSeveralWithWildcardDefault(t *testing.T) {
	ca := newCA(t, "files CA")
	pool := ca.Pool()
	wild := writePair(t, ca, []string{"*.api.example.test"}, nil)
	other := writePair(t, ca, []string{"other.example.test"}, nil)
	m := newManager(t, Config{Files: []FilePair{other, wild}, DefaultName: "proxy.api.example.test"})
	srv := startServer(t, "127.0.0.1", m.ServerConfig(nil))

	for _, name := range []string{"other.example.test", "proxy.api.example.test"} {
		if _, err := dial(t, srv.addr, clientFor(pool, name)); err != nil {
			t.Errorf("SNI %s: %v", name, err)
		}
		srv.next(t)
	}
	if _, err := dial(t, srv.addr, noSNIClient(pool, "proxy.api.example.test")); err != nil {
		t.Errorf("no SNI: %v", err)
	}
	srv.next(t)
}

func TestFilesSeveralWithoutDefaultName(t *testing.T) {
	ca := newCA(t, "files CA")
	pool := ca.Pool()
	a := writePair(t, ca, []string{"a.example.test"}, nil)
	b := writePair(t, ca, []string{"b.example.test"}, []netip.Addr{netip.MustParseAddr("127.0.0.1")})
	m := newManager(t, Config{Files: []FilePair{a, b}})
	srv := startServer(t, "127.0.0.1", m.ServerConfig(nil))
	// The certificate naming the listener address serves clients without SNI.
	if _, err := dial(t, srv.addr, clientFor(pool, "127.0.0.1")); err != nil {
		t.Fatalf("no SNI: %v", err)
	}
	srv.next(t)

	srvOther := startServer(t, "127.0.0.4", m.ServerConfig(nil))
	if _, err := dial(t, srvOther.addr, noSNIClient(pool, "a.example.test")); err == nil {
		t.Fatal("no SNI on an address no certificate names: a certificate was chosen without default_name")
	}
	if h := srvOther.next(t); h.err == nil {
		t.Fatal("server completed the handshake")
	}
}

func TestNewErrors(t *testing.T) {
	ca := newCA(t, "files CA")
	good := writePair(t, ca, []string{"files.example.test"}, nil)
	otherKey := writePair(t, ca, []string{"files.example.test"}, nil).Key
	missing := filepath.Join(t.TempDir(), "missing.crt")
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	writeFile(t, notPEM, []byte("nothing here"))

	cases := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"acme without a challenge", Config{ACME: &ACMEConfig{Domains: []string{"proxy.example.com"}, Storage: t.TempDir()}},
			[]string{"tls.acme: no challenge can be answered"}},
		{"acme ca_root missing", Config{ACME: &ACMEConfig{Domains: []string{"proxy.example.com"}, CARoot: missing, Storage: t.TempDir()}, ListenerAddress: "127.0.0.1:443"},
			[]string{"tls.acme.ca_root: load CA certificates " + missing}},
		{"acme default_name not a domain", Config{ACME: &ACMEConfig{Domains: []string{"proxy.example.com"}, Storage: t.TempDir()}, ListenerAddress: "127.0.0.1:443", DefaultName: "other.example.com"},
			[]string{`tls.default_name: "other.example.com" is not one of tls.acme.domains`}},
		{"no source", Config{}, []string{"tls: no certificate source"}},
		{"invalid", Config{Files: []FilePair{{Cert: good.Cert}}}, []string{"tls config: files[0].key: empty"}},
		{"missing cert", Config{Files: []FilePair{good, {Cert: missing, Key: good.Key}}},
			[]string{"tls.files[1]: load certificate " + missing}},
		{"mismatched key", Config{Files: []FilePair{{Cert: good.Cert, Key: otherKey}}},
			[]string{"tls.files[0]: load certificate " + good.Cert + " with key " + otherKey}},
		{"default_name not covered", Config{Files: []FilePair{good}, DefaultName: "proxy.example.test"},
			[]string{`tls.default_name: "proxy.example.test" is not covered`}},
		{"client_ca missing", Config{Files: []FilePair{good}, ClientCA: missing},
			[]string{"tls.client_ca: load CA certificates " + missing}},
		{"client_ca empty", Config{Files: []FilePair{good}, ClientCA: notPEM},
			[]string{"tls.client_ca: load CA certificates " + notPEM + ": no PEM certificates found"}},
		{"self_signed dir is a file", Config{SelfSigned: &SelfSignedConfig{Dir: notPEM}}, []string{"tls.self_signed: ", notPEM}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(context.Background(), tc.cfg, nil, zap.NewNop())
			if err == nil {
				m.Close()
				t.Fatalf("no error, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestCurves(t *testing.T) {
	dir := t.TempDir()
	pq := newManager(t, Config{SelfSigned: &SelfSignedConfig{Dir: dir}})
	pool := poolFromFile(t, pq.CAPath())
	classic := newManager(t, Config{SelfSigned: &SelfSignedConfig{Dir: dir}, Curves: []string{"x25519", "P256"}})
	p256Only := newManager(t, Config{SelfSigned: &SelfSignedConfig{Dir: dir}, Curves: []string{"P256"}})

	onlyX25519 := clientFor(pool, "localhost")
	onlyX25519.CurvePreferences = []gotls.CurveID{gotls.X25519}

	cases := []struct {
		name   string
		server *Manager
		client *gotls.Config
		want   gotls.CurveID // 0: handshake must fail
	}{
		{"default server, default client", pq, clientFor(pool, "localhost"), gotls.X25519MLKEM768},
		{"default server, X25519 client", pq, onlyX25519, gotls.X25519},
		{"classic server, default client", classic, clientFor(pool, "localhost"), gotls.X25519},
		{"classic server, X25519 client", classic, onlyX25519, gotls.X25519},
		{"P256 server, X25519 client", p256Only, onlyX25519, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, "127.0.0.1", tc.server.ServerConfig(nil))
			cs, err := dial(t, srv.addr, tc.client)
			h := srv.next(t)
			if tc.want == 0 {
				if err == nil || h.err == nil {
					t.Fatalf("handshake succeeded with curve %v", cs.CurveID)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cs.CurveID != tc.want || h.state.CurveID != tc.want {
				t.Errorf("curve client %v server %v, want %v", cs.CurveID, h.state.CurveID, tc.want)
			}
		})
	}
}

func TestMinVersion(t *testing.T) {
	dir := t.TempDir()
	v13 := newManager(t, Config{SelfSigned: &SelfSignedConfig{Dir: dir}, MinVersion: "1.3"})
	v12 := newManager(t, Config{SelfSigned: &SelfSignedConfig{Dir: dir}})
	pool := poolFromFile(t, v13.CAPath())
	tls12Only := clientFor(pool, "localhost")
	tls12Only.MaxVersion = gotls.VersionTLS12
	tls11Only := clientFor(pool, "localhost")
	tls11Only.MinVersion = gotls.VersionTLS10
	tls11Only.MaxVersion = gotls.VersionTLS11

	srv13 := startServer(t, "127.0.0.1", v13.ServerConfig(nil))
	if _, err := dial(t, srv13.addr, tls12Only); err == nil {
		t.Error("min_version 1.3 accepted a TLS 1.2 client")
	}
	if h := srv13.next(t); h.err == nil || !strings.Contains(h.err.Error(), "version") {
		t.Errorf("server error %v, want a version error", h.err)
	}
	if cs, err := dial(t, srv13.addr, clientFor(pool, "localhost")); err != nil || cs.Version != gotls.VersionTLS13 {
		t.Errorf("TLS 1.3 client: version %x err %v", cs.Version, err)
	}
	srv13.next(t)

	srv12 := startServer(t, "127.0.0.1", v12.ServerConfig(nil))
	if cs, err := dial(t, srv12.addr, tls12Only); err != nil || cs.Version != gotls.VersionTLS12 {
		t.Errorf("TLS 1.2 client on default min_version: version %x err %v", cs.Version, err)
	}
	srv12.next(t)
	if _, err := dial(t, srv12.addr, tls11Only); err == nil {
		t.Error("default min_version accepted a TLS 1.1 client")
	}
	srv12.next(t)
}

func TestClientCA(t *testing.T) {
	clientCA := newCA(t, "client CA")
	strangerCA := newCA(t, "stranger CA")
	m := newManager(t, Config{SelfSigned: &SelfSignedConfig{Dir: t.TempDir()}, ClientCA: writeCA(t, clientCA)})
	pool := poolFromFile(t, m.CAPath())
	cfg := m.ServerConfig(nil)
	if cfg.ClientAuth != gotls.RequireAndVerifyClientCert {
		t.Fatalf("ClientAuth %v", cfg.ClientAuth)
	}
	srv := startServer(t, "127.0.0.1", cfg)

	issue := func(ca *devca.CA) gotls.Certificate {
		c, err := ca.Issue([]string{"acme-corp"}, nil, 3600e9)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	t.Run("no client certificate", func(t *testing.T) {
		if _, err := dial(t, srv.addr, clientFor(pool, "localhost")); err == nil {
			t.Fatal("client without certificate was accepted")
		}
		if h := srv.next(t); h.err == nil {
			t.Fatal("server completed the handshake")
		}
	})
	t.Run("certificate from another CA", func(t *testing.T) {
		c := clientFor(pool, "localhost")
		stranger := issue(strangerCA)
		c.GetClientCertificate = func(*gotls.CertificateRequestInfo) (*gotls.Certificate, error) { return &stranger, nil }
		if _, err := dial(t, srv.addr, c); err == nil {
			t.Fatal("client with a foreign certificate was accepted")
		}
		if h := srv.next(t); h.err == nil {
			t.Fatal("server completed the handshake")
		}
	})
	t.Run("certificate from client_ca", func(t *testing.T) {
		c := clientFor(pool, "localhost")
		c.Certificates = []gotls.Certificate{issue(clientCA)}
		if _, err := dial(t, srv.addr, c); err != nil {
			t.Fatal(err)
		}
		h := srv.next(t)
		if h.err != nil {
			t.Fatal(h.err)
		}
		if len(h.state.PeerCertificates) == 0 || h.state.PeerCertificates[0].Subject.CommonName != "acme-corp" {
			t.Errorf("server did not see the client identity: %v", h.state.PeerCertificates)
		}
	})
}

func TestServerConfigIsFresh(t *testing.T) {
	m := newManager(t, Config{SelfSigned: &SelfSignedConfig{Dir: t.TempDir()}, Curves: []string{"X25519"}})
	a := m.ServerConfig([]string{"h2"})
	a.NextProtos[0] = "changed"
	a.CurvePreferences[0] = gotls.CurveP521
	b := m.ServerConfig([]string{"h2"})
	if !slices.Equal(b.NextProtos, []string{"h2"}) || !slices.Equal(b.CurvePreferences, []gotls.CurveID{gotls.X25519}) {
		t.Errorf("a change to one config leaked into the next: %v %v", b.NextProtos, b.CurvePreferences)
	}
	if b.MinVersion != gotls.VersionTLS12 || b.ClientAuth != gotls.NoClientCert {
		t.Errorf("MinVersion %x ClientAuth %v", b.MinVersion, b.ClientAuth)
	}
	m.Close()
	m.Close()
}
