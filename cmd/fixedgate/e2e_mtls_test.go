package main

import (
	"bufio"
	gotls "crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fixedgate/fixedgate/tls/devca"
)

// startMTLSProxy starts the usual e2e proxy with tls.client_ca set to the PEM of clientCA.
func startMTLSProxy(t *testing.T, f *fixture, clientCA *devca.CA, extra string) *proc {
	t.Helper()
	caFile := filepath.Join(t.TempDir(), "client-ca.pem")
	if err := os.WriteFile(caFile, clientCA.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return f.startProxyWith(t, extra, func(cfg string) string {
		if !strings.Contains(cfg, "tls:\n  self_signed:") {
			t.Fatal("fixture config has no tls.self_signed to extend")
		}
		return strings.Replace(cfg, "tls:\n  self_signed:", fmt.Sprintf("tls:\n  client_ca: %q\n  self_signed:", caFile), 1)
	})
}

func issueClient(t *testing.T, ca *devca.CA, name string) gotls.Certificate {
	t.Helper()
	c, err := ca.Issue([]string{name}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func proxyPool(t *testing.T, p *proc) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(p.caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if blk, _ := pem.Decode(b); blk == nil || !pool.AppendCertsFromPEM(b) {
		t.Fatalf("no CA in %s", p.caFile)
	}
	return pool
}

// mtlsHandshake dials the proxy's TLS listener and completes the handshake, including the
// server's verdict on the client certificate (TLS 1.3 reports it on the first read).
func mtlsHandshake(t *testing.T, p *proc, cfg *gotls.Config) (*gotls.Conn, error) {
	t.Helper()
	c, err := gotls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", p.tlsAddr, cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c, nil
}

// connectNoAuth sends a CONNECT to the origin without Proxy-Authorization over c.
func connectNoAuth(t *testing.T, f *fixture, c net.Conn) (*http.Response, *bufio.Reader, error) {
	t.Helper()
	target := fmt.Sprintf("api.test:%d", f.origin.port)
	if _, err := fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target); err != nil {
		return nil, nil, err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	return resp, br, err
}

// requestLogUser returns the user field of the request log lines for door connect.
func requestLogUsers(p *proc) []string {
	var users []string
	for _, line := range strings.Split(p.log(), "\n") {
		if !strings.Contains(line, `"msg":"request"`) {
			continue
		}
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil || m["door"] != "connect" {
			continue
		}
		u, _ := m["user"].(string)
		users = append(users, fmt.Sprintf("%s/%v", u, m["status"]))
	}
	return users
}

func TestMTLSClientIdentity(t *testing.T) {
	f := newFixture(t)
	clientCA := newTestCA(t, "e2e client CA")
	strangerCA := newTestCA(t, "e2e stranger CA")
	p := startMTLSProxy(t, f, clientCA, "")
	pool := proxyPool(t, p)
	base := func() *gotls.Config {
		return &gotls.Config{ServerName: "localhost", RootCAs: pool, NextProtos: []string{"http/1.1"}}
	}

	refused := func(t *testing.T, cfg *gotls.Config) {
		t.Helper()
		c, err := mtlsHandshake(t, p, cfg)
		if err != nil {
			return // refused during the handshake (TLS 1.2, or the client saw the alert)
		}
		// TLS 1.3: the server's verdict on the client certificate arrives after the client's
		// handshake is done; the first read sees it, and no CONNECT is answered.
		resp, _, err := connectNoAuth(t, f, c)
		if err == nil {
			t.Fatalf("handshake accepted: CONNECT answered %s", resp.Status)
		}
		if !strings.Contains(err.Error(), "certificate") {
			t.Logf("refused with: %v", err)
		}
	}

	t.Run("no client certificate", func(t *testing.T) { refused(t, base()) })
	t.Run("certificate from another CA", func(t *testing.T) {
		cfg := base()
		cfg.Certificates = []gotls.Certificate{issueClient(t, strangerCA, testUser)}
		refused(t, cfg)
	})
	t.Run("certificate from another CA, TLS 1.2", func(t *testing.T) {
		cfg := base()
		cfg.MaxVersion = gotls.VersionTLS12
		cfg.Certificates = []gotls.Certificate{issueClient(t, strangerCA, testUser)}
		if _, err := mtlsHandshake(t, p, cfg); err == nil {
			t.Fatal("TLS 1.2 handshake with a foreign client certificate succeeded")
		}
	})
	t.Run("valid certificate tunnels without Proxy-Authorization", func(t *testing.T) {
		cfg := base()
		cfg.Certificates = []gotls.Certificate{issueClient(t, clientCA, testUser)}
		c, err := mtlsHandshake(t, p, cfg)
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		resp, br, err := connectNoAuth(t, f, c)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("CONNECT: %v %v", resp, err)
		}
		inner := gotls.Client(&bufConn{Conn: c, r: br}, &gotls.Config{ServerName: "api.test", RootCAs: f.origin.pool()})
		tun := &tunnel{Conn: inner, outer: c, br: bufio.NewReader(inner)}
		tun.get(t)
		tun.Close()
		waitLogUser(t, p, testUser+"/200")
	})
	t.Run("valid certificate whose subject is not in forward.users", func(t *testing.T) {
		cfg := base()
		cfg.Certificates = []gotls.Certificate{issueClient(t, clientCA, "someone-else")}
		c, err := mtlsHandshake(t, p, cfg)
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		resp, _, err := connectNoAuth(t, f, c)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("CONNECT: %s, want 403", resp.Status)
		}
		waitLogUser(t, p, "someone-else/403")
	})
}

func waitLogUser(t *testing.T, p *proc, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		users := requestLogUsers(p)
		for _, u := range users {
			if u == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connect request log line with user/status %s; have %v", want, users)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startMTLSBackend is an application server on originIP that requires a client certificate
// from clientCA; its own certificate for mtls.test comes from the e2e origin CA, which the
// proxy's upstream_tls.ca_file trusts. It answers with the client certificate's CommonName.
func startMTLSBackend(t *testing.T, f *fixture, clientCA *devca.CA) int {
	t.Helper()
	cert, err := f.origin.ca.Issue([]string{"mtls.test"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := gotls.Listen("tcp", originIP+":0", &gotls.Config{
		Certificates: []gotls.Certificate{cert},
		ClientAuth:   gotls.RequireAndVerifyClientCert,
		ClientCAs:    clientCA.Pool(),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "client=%s\n", r.TLS.PeerCertificates[0].Subject.CommonName)
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          quietLog(),
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	f.dns.Set("mtls.test", 60, netip.MustParseAddr(originIP))
	return ln.Addr().(*net.TCPAddr).Port
}

// TestMTLSUpstreamClientCertificate: the gateway presents upstream_tls.client_cert to a
// backend that requires one; without it the backend refuses and the client gets 502.
func TestMTLSUpstreamClientCertificate(t *testing.T) {
	f := newFixture(t)
	backendCA := newTestCA(t, "e2e backend client CA")
	port := startMTLSBackend(t, f, backendCA)
	dir := t.TempDir()
	pair := issueClient(t, backendCA, "fixedgate-proxy")
	certFile, keyFile := filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	var certPEM []byte
	for _, der := range pair.Certificate {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(pair.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, certFile, certPEM)
	writeTestFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))

	start := func(t *testing.T, withCert bool) *proc {
		plain, tlsPort, admin := freePort(t, ingressIP), freePort(t, ingressIP), freePort(t, ingressIP)
		caDir := t.TempDir()
		cfg := f.config(plain, tlsPort, admin, caDir, fmt.Sprintf("routes:\n  - {host: %s, upstream: \"https://mtls.test:%d\"}\n", gwHost, port))
		cfg = strings.Replace(cfg, "  allow:\n", fmt.Sprintf("  allow:\n    - {host: mtls.test, ports: [%d]}\n", port), 1)
		if withCert {
			cfg = strings.Replace(cfg, "upstream_tls:\n", fmt.Sprintf("upstream_tls:\n  client_cert: %q\n  client_key: %q\n  min_version: \"1.3\"\n", certFile, keyFile), 1)
		}
		p := startBinary(t, cfg)
		p.caFile = caDir + "/ca.crt"
		p.tlsAddr = fmt.Sprintf("%s:%d", ingressIP, tlsPort)
		p.admin = fmt.Sprintf("%s:%d", ingressIP, admin)
		p.waitReady()
		return p
	}
	get := func(t *testing.T, p *proc) (int, string) {
		resp, err := gatewayClient(t, p, false).Get("https://" + gwHost + "/")
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, body(t, resp)
	}

	t.Run("with client_cert", func(t *testing.T) {
		code, b := get(t, start(t, true))
		if code != http.StatusOK || strings.TrimSpace(b) != "client=fixedgate-proxy" {
			t.Fatalf("got %d %q, want 200 client=fixedgate-proxy", code, b)
		}
	})
	t.Run("without client_cert", func(t *testing.T) {
		if code, b := get(t, start(t, false)); code != http.StatusBadGateway {
			t.Fatalf("got %d %q, want 502 from a backend that requires a client certificate", code, b)
		}
	})
}

// TestMTLSWithACMETLSALPN: with client_ca set, the TLS-ALPN-01 challenge still passes (Pebble's
// validator offers only acme-tls/1 and no client certificate), clients still need a
// certificate from client_ca, and a client offering only acme-tls/1 to skip the client
// certificate is never served a request.
func TestMTLSWithACMETLSALPN(t *testing.T) {
	f := newFixture(t)
	f.dns.Set(acmeName, 60, netip.MustParseAddr(ingressIP))
	clientCA := newTestCA(t, "e2e client CA")
	caFile := filepath.Join(t.TempDir(), "client-ca.pem")
	writeTestFile(t, caFile, clientCA.CertPEM())
	ap := newACMEProxyPorts(t, filepath.Join(t.TempDir(), "certs"))
	pb := startPebble(t, f.dns.Addr, ap.tlsPort, freePort(t, ingressIP), 0)
	cfg := ap.config(f, pb, pb.dirURL)
	marker := "  default_name: " + acmeName + "\n"
	if !strings.Contains(cfg, marker) {
		t.Fatal("acme config template changed: no default_name line")
	}
	cfg = strings.Replace(cfg, marker, marker+fmt.Sprintf("  client_ca: %q\n", caFile), 1)
	p := startBinary(t, cfg)
	p.plain = fmt.Sprintf("%s:%d", ingressIP, ap.plainPort)
	p.tlsAddr = fmt.Sprintf("%s:%d", ingressIP, ap.tlsPort)
	p.admin = fmt.Sprintf("%s:%d", ingressIP, ap.adminPort)
	p.waitReady()
	waitReadyz(t, p, 60*time.Second)

	roots := pb.issuingRoots(t)
	base := func() *gotls.Config {
		return &gotls.Config{ServerName: acmeName, RootCAs: roots, NextProtos: []string{"http/1.1"}}
	}
	// Without a client certificate: refused.
	if c, err := mtlsHandshake(t, p, base()); err == nil {
		if resp, _, err := connectNoAuth(t, f, c); err == nil {
			t.Fatalf("client without certificate: CONNECT answered %s", resp.Status)
		}
	}
	// With one: the tunnel works, identity from the certificate.
	withCert := base()
	withCert.Certificates = []gotls.Certificate{issueClient(t, clientCA, testUser)}
	c, err := mtlsHandshake(t, p, withCert)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	resp, _, err := connectNoAuth(t, f, c)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT with client certificate: %v %v", resp, err)
	}
	c.Close()
	waitLogUser(t, p, testUser+"/200")

	// A client offering only acme-tls/1 (as the validator does) gets no HTTP service.
	probe := &gotls.Config{ServerName: acmeName, RootCAs: roots, NextProtos: []string{"acme-tls/1"}, InsecureSkipVerify: true}
	if c, err := mtlsHandshake(t, p, probe); err == nil {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if resp, _, err := connectNoAuth(t, f, c); err == nil {
			t.Fatalf("acme-tls/1 connection without client certificate was served: %s", resp.Status)
		}
	}
}
