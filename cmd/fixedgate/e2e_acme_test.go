package main

// ACME end to end: the real binary obtains its listener certificate from a real Pebble (the
// ACME test server) on loopback, answering TLS-ALPN-01 on its own TLS listener. Pebble
// resolves the test name through the in-process DNS server, which points it at the proxy.

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
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fixedgate/fixedgate/tls/devca"
)

const acmeName = "proxy.acme.test"

// findPebble returns the pebble binary (PATH, then $(go env GOPATH)/bin). Without it the test
// is skipped, except in CI, where .ci/run installs it and its absence is a failure.
func findPebble(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("pebble"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, dir := range filepath.SplitList(strings.TrimSpace(string(out))) {
			if p := filepath.Join(dir, "bin", "pebble"); fileExists(p) {
				return p
			}
		}
	}
	msg := "pebble not found on PATH or in $(go env GOPATH)/bin; install it with: go install github.com/letsencrypt/pebble/v2/cmd/pebble@v2.10.1"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// pebbleServer is a running Pebble.
type pebbleServer struct {
	*child
	dirURL string // the ACME directory
	mgmt   string // host:port of the management API
	caFile string // the CA of Pebble's own listener certificate (for ca_root)
	ca     *devca.CA
}

// startPebble runs Pebble validating challenges on the proxy's ports, resolving names through
// dnsAddr. validity > 0 sets the lifetime of the certificates it issues.
func startPebble(t *testing.T, dnsAddr string, tlsPort, httpPort int, validity time.Duration) *pebbleServer {
	t.Helper()
	bin := findPebble(t)
	dir := t.TempDir()
	ca := newTestCA(t, "pebble listener test CA")
	leaf, err := ca.Issue([]string{"localhost"}, []netip.Addr{netip.MustParseAddr("127.0.0.1")}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	pb := &pebbleServer{ca: ca, caFile: filepath.Join(dir, "pebble-ca.pem")}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeTestFile(t, pb.caFile, ca.CertPEM())
	writeTestFile(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Certificate[0]}))
	writeTestFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))

	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t, "127.0.0.1"))
	pb.mgmt = fmt.Sprintf("127.0.0.1:%d", freePort(t, "127.0.0.1"))
	pb.dirURL = "https://" + listen + "/dir"
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":                  listen,
		"managementListenAddress":        pb.mgmt,
		"certificate":                    certFile,
		"privateKey":                     keyFile,
		"httpPort":                       httpPort,
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
	}}
	if validity > 0 {
		conf["pebble"].(map[string]any)["profiles"] = map[string]any{
			"default": map[string]any{"description": "short-lived for tests", "validityPeriod": int(validity.Seconds())},
		}
	}
	confJSON, _ := json.Marshal(conf)
	confFile := filepath.Join(dir, "pebble.json")
	writeTestFile(t, confFile, confJSON)

	cmd := exec.Command(bin, "-config", confFile, "-dnsserver", dnsAddr, "-strict=false")
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	pb.child = startChild(t, "pebble", cmd, out, nil)
	// Pebble logs its addresses before it binds them: wait until the directory answers.
	c := pb.client()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := c.Get(pb.dirURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-pb.exited:
			t.Fatalf("pebble exited: %v\n%s", pb.exitErr, pb.log())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble directory %s not answering after 30s: %v\n%s", pb.dirURL, err, pb.log())
		}
	}
	return pb
}

// stop kills Pebble and waits for it: its ports refuse connections from then on.
func (pb *pebbleServer) stop(t *testing.T) {
	t.Helper()
	pb.cmd.Process.Kill()
	select {
	case <-pb.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("pebble did not exit after kill")
	}
}

// client talks to Pebble's own listeners, directly (no proxy from the environment).
func (pb *pebbleServer) client() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Proxy: nil, TLSClientConfig: &gotls.Config{RootCAs: pb.ca.Pool()},
	}}
}

// issuingRoots returns the root Pebble issues from, as its management API serves it.
func (pb *pebbleServer) issuingRoots(t *testing.T) *x509.CertPool {
	t.Helper()
	resp, err := pb.client().Get("https://" + pb.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	b := body(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("pebble /roots/0: %s %s", resp.Status, b)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(b)) {
		t.Fatalf("pebble /roots/0: no PEM certificate in %q", b)
	}
	return pool
}

func writeTestFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// acmeProxy is a fixedgate with tls.acme and its ports.
type acmeProxy struct {
	plainPort, tlsPort, adminPort int
	storage                       string
	renewCheck                    string // tls.acme.renew_check_interval, if set
	httpListen                    string // tls.acme.http_listen, if set
}

func newACMEProxyPorts(t *testing.T, storage string) *acmeProxy {
	return &acmeProxy{
		plainPort: freePort(t, ingressIP), tlsPort: freePort(t, ingressIP), adminPort: freePort(t, ingressIP),
		storage: storage,
	}
}

// config is the usual e2e config with tls.acme in place of self_signed.
func (ap *acmeProxy) config(f *fixture, pb *pebbleServer, caURL string) string {
	cfg := f.config(ap.plainPort, ap.tlsPort, ap.adminPort, "unused", "")
	acme := fmt.Sprintf(`tls:
  acme:
    email: ops@acme.test
    domains: [%s]
    ca: %q
    ca_root: %q
    storage: %q
  default_name: %s
`, acmeName, caURL, pb.caFile, ap.storage, acmeName)
	if ap.httpListen != "" {
		acme = strings.Replace(acme, "  default_name:", "    http_listen: "+ap.httpListen+"\n  default_name:", 1)
	}
	if ap.renewCheck != "" {
		acme = strings.Replace(acme, "  default_name:", "    renew_check_interval: "+ap.renewCheck+"\n  default_name:", 1)
	}
	i := strings.Index(cfg, "tls:\n  self_signed:")
	j := strings.Index(cfg, "egress:")
	if i < 0 || j < i {
		panic("e2e config template changed: no tls.self_signed section before egress")
	}
	return cfg[:i] + acme + cfg[j:]
}

func (ap *acmeProxy) start(t *testing.T, f *fixture, pb *pebbleServer, caURL string) *proc {
	t.Helper()
	p := startBinary(t, ap.config(f, pb, caURL))
	p.plain = fmt.Sprintf("%s:%d", ingressIP, ap.plainPort)
	p.tlsAddr = fmt.Sprintf("%s:%d", ingressIP, ap.tlsPort)
	p.admin = fmt.Sprintf("%s:%d", ingressIP, ap.adminPort)
	p.waitReady()
	return p
}

// readyz returns /readyz's status code and body.
func readyz(t *testing.T, p *proc) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	resp, err := c.Get("http://" + p.admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body(t, resp)
}

// waitReadyz waits (bounded) until /readyz says ready, i.e. the certificate is there.
func waitReadyz(t *testing.T, p *proc, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		code, b := readyz(t, p)
		if code == http.StatusOK {
			return
		}
		select {
		case <-p.exited:
			t.Fatalf("fixedgate exited: %v", p.exitErr)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d after %s: %s", code, d, b)
		}
	}
}

// tunnelOverTLS handshakes with the proxy's TLS listener as cfg says, then sends a CONNECT to
// the e2e origin through it and a GET inside the tunnel; it returns the proxy's certificate.
func tunnelOverTLS(t *testing.T, f *fixture, p *proc, cfg *gotls.Config) *x509.Certificate {
	t.Helper()
	tun := openTunnel(t, f, p, cfg)
	defer tun.Close()
	tun.get(t)
	return tun.leaf
}

// tunnel is a CONNECT tunnel to the e2e origin over TLS to the proxy, with TLS to the origin
// inside it.
type tunnel struct {
	*gotls.Conn // to the origin, inside the tunnel
	outer       net.Conn
	br          *bufio.Reader
	leaf        *x509.Certificate // the proxy's certificate
}

func openTunnel(t *testing.T, f *fixture, p *proc, cfg *gotls.Config) *tunnel {
	t.Helper()
	c, err := gotls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", p.tlsAddr, cfg)
	if err != nil {
		t.Fatalf("TLS handshake with the proxy: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(90 * time.Second))
	leaf := c.ConnectionState().PeerCertificates[0]
	target := fmt.Sprintf("api.test:%d", f.origin.port)
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n\r\n", target, target, authHeader())
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT %s: %v %v", target, resp, err)
	}
	inner := gotls.Client(&bufConn{Conn: c, r: br}, &gotls.Config{ServerName: "api.test", RootCAs: f.origin.pool()})
	return &tunnel{Conn: inner, outer: c, br: bufio.NewReader(inner), leaf: leaf}
}

// get sends one keep-alive GET to the origin through the tunnel and checks the answer.
func (tun *tunnel) get(t *testing.T) {
	t.Helper()
	fmt.Fprintf(tun, "GET /acme HTTP/1.1\r\nHost: api.test\r\n\r\n")
	ir, err := http.ReadResponse(tun.br, nil)
	if err != nil {
		t.Fatalf("GET through the tunnel: %v", err)
	}
	got := body(t, ir)
	if ir.StatusCode != http.StatusOK || !strings.Contains(got, "remote="+egressIP+":") || !strings.Contains(got, "tls=true") {
		t.Fatalf("through the tunnel: %s %q", ir.Status, got)
	}
}

// bufConn reads what a bufio.Reader already buffered before the connection itself.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// TestACMEObtainFromPebbleAndServe: fixedgate obtains its certificate from Pebble through
// TLS-ALPN-01 on its own TLS listener, and a client trusting only Pebble's issuing root
// tunnels through it, with SNI and without (default_name).
func TestACMEObtainFromPebbleAndServe(t *testing.T) {
	f := newFixture(t)
	f.dns.Set(acmeName, 60, netip.MustParseAddr(ingressIP))
	ap := newACMEProxyPorts(t, filepath.Join(t.TempDir(), "certs"))
	pb := startPebble(t, f.dns.Addr, ap.tlsPort, freePort(t, ingressIP), 0)
	p := ap.start(t, f, pb, pb.dirURL)
	waitReadyz(t, p, 60*time.Second)

	roots := pb.issuingRoots(t)
	leaf := tunnelOverTLS(t, f, p, &gotls.Config{ServerName: acmeName, RootCAs: roots, NextProtos: []string{"http/1.1"}})
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != acmeName {
		t.Fatalf("certificate names %v, want [%s]", leaf.DNSNames, acmeName)
	}

	// No SNI (an IP-literal proxy URL): default_name's certificate, verified for that name.
	var noSNILeaf *x509.Certificate
	tunnelOverTLS(t, f, p, &gotls.Config{
		InsecureSkipVerify: true, // no ServerName means no SNI; the chain is checked below instead
		NextProtos:         []string{"http/1.1"},
		VerifyConnection: func(cs gotls.ConnectionState) error {
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			noSNILeaf = cs.PeerCertificates[0]
			_, err := noSNILeaf.Verify(x509.VerifyOptions{DNSName: acmeName, Roots: roots, Intermediates: inter})
			return err
		},
	})

	// Another name is not issued on demand.
	c, err := gotls.Dial("tcp", p.tlsAddr, &gotls.Config{ServerName: "other.acme.test", RootCAs: roots})
	if err == nil {
		c.Close()
		t.Fatal("handshake for a name outside tls.acme.domains verified")
	}
	if left := metric(t, p, "fixedgate_tls_certificate_expiry_seconds", `name="`+acmeName+`"`); left < 80*24*3600 || left > 90*24*3600 {
		t.Fatalf("fixedgate_tls_certificate_expiry_seconds{name=%q} = %v, want about 90 days", acmeName, left)
	}
	if strings.Count(p.log(), `"msg":"ACME: certificate obtained"`) != 1 {
		t.Fatalf("want exactly one certificate obtained in the log")
	}
	if strings.Contains(p.log(), "127.0.0.1:9") {
		t.Fatal("the proxy's ACME traffic went to HTTPS_PROXY from its environment")
	}
}

// TestACMECachedCertificateServesWithoutCA: a restart with the ACME server gone still serves
// the certificate from storage, and /readyz is ready.
func TestACMECachedCertificateServesWithoutCA(t *testing.T) {
	f := newFixture(t)
	f.dns.Set(acmeName, 60, netip.MustParseAddr(ingressIP))
	ap := newACMEProxyPorts(t, filepath.Join(t.TempDir(), "certs"))
	pb := startPebble(t, f.dns.Addr, ap.tlsPort, freePort(t, ingressIP), 0)
	p := ap.start(t, f, pb, pb.dirURL)
	waitReadyz(t, p, 60*time.Second)
	roots := pb.issuingRoots(t)
	first := tunnelOverTLS(t, f, p, &gotls.Config{ServerName: acmeName, RootCAs: roots, NextProtos: []string{"http/1.1"}})
	p.signal(syscall.SIGTERM)
	if err := p.wait(30 * time.Second); err != nil {
		t.Fatalf("fixedgate exit: %v", err)
	}
	pb.stop(t)

	p2 := ap.start(t, f, pb, pb.dirURL) // same storage, same CA URL, nothing listening there now
	waitReadyz(t, p2, 30*time.Second)
	again := tunnelOverTLS(t, f, p2, &gotls.Config{ServerName: acmeName, RootCAs: roots, NextProtos: []string{"http/1.1"}})
	if again.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("after restart: certificate serial %s, want the cached %s", again.SerialNumber, first.SerialNumber)
	}
}

// TestACMEUnreachableCANotReady: with no certificate in storage and the ACME server
// unreachable, the proxy runs but /readyz fails, naming the domain and why, as the log does.
func TestACMEUnreachableCANotReady(t *testing.T) {
	f := newFixture(t)
	ap := newACMEProxyPorts(t, filepath.Join(t.TempDir(), "certs"))
	pb := startPebble(t, f.dns.Addr, ap.tlsPort, freePort(t, ingressIP), 0) // for its ca_root only
	pb.stop(t)
	p := ap.start(t, f, pb, pb.dirURL)
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, b := readyz(t, p)
		if code == http.StatusOK {
			t.Fatalf("/readyz ready without a certificate: %s", b)
		}
		if code == http.StatusServiceUnavailable && strings.Contains(b, acmeName+": ") && strings.Contains(b, "connection refused") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz %d %q: want 503 naming %s and the reason", code, b, acmeName)
		}
		select {
		case <-p.exited:
			t.Fatalf("fixedgate exited: %v", p.exitErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if !strings.Contains(p.log(), `"msg":"ACME: could not obtain a certificate; certmagic retries with backoff","domain":"`+acmeName+`"`) {
		t.Fatal("the log does not say why there is no certificate")
	}
}

// TestACMETwoProxiesShareStorageOneOrder: two fixedgate nodes on different ingress IPs share one
// storage directory; certmagic's storage lock lets one obtain and the other load, so Pebble
// sees one order, and both serve the same certificate. Pebble validates against the first node
// only, which answers the challenge from shared storage if the second node made the order.
func TestACMETwoProxiesShareStorageOneOrder(t *testing.T) {
	const ingress2 = "127.0.0.11"
	f := newFixture(t)
	f.dns.Set(acmeName, 60, netip.MustParseAddr(ingressIP))
	storage := filepath.Join(t.TempDir(), "shared-certs")
	ap := newACMEProxyPorts(t, storage)
	pb := startPebble(t, f.dns.Addr, ap.tlsPort, freePort(t, ingressIP), 0)

	p1 := startBinary(t, ap.config(f, pb, pb.dirURL))
	p2 := startBinary(t, strings.ReplaceAll(ap.config(f, pb, pb.dirURL), ingressIP, ingress2))
	for _, pair := range []struct {
		p  *proc
		ip string
	}{{p1, ingressIP}, {p2, ingress2}} {
		pair.p.tlsAddr = fmt.Sprintf("%s:%d", pair.ip, ap.tlsPort)
		pair.p.admin = fmt.Sprintf("%s:%d", pair.ip, ap.adminPort)
		pair.p.waitReady()
	}
	waitReadyz(t, p1, 60*time.Second)
	waitReadyz(t, p2, 60*time.Second)
	roots := pb.issuingRoots(t)
	cfg := &gotls.Config{ServerName: acmeName, RootCAs: roots, NextProtos: []string{"http/1.1"}}
	c1 := tunnelOverTLS(t, f, p1, cfg)
	c2 := tunnelOverTLS(t, f, p2, cfg)
	if c1.SerialNumber.Cmp(c2.SerialNumber) != 0 {
		t.Fatalf("the nodes serve different certificates: %s and %s", c1.SerialNumber, c2.SerialNumber)
	}
	if n := strings.Count(pb.log(), "Added order"); n != 1 {
		t.Fatalf("pebble saw %d orders, want 1", n)
	}
	obtained := strings.Count(p1.log(), `"msg":"ACME: certificate obtained"`) + strings.Count(p2.log(), `"msg":"ACME: certificate obtained"`)
	if obtained != 1 {
		t.Fatalf("%d nodes obtained a certificate, want 1", obtained)
	}
}

// TestACMERenewalKeepsOpenTunnels: with Pebble issuing 30-second certificates, fixedgate renews
// on its own; a tunnel opened before the renewal keeps working after it, and new handshakes get
// the new certificate.
func TestACMERenewalKeepsOpenTunnels(t *testing.T) {
	f := newFixture(t)
	f.dns.Set(acmeName, 60, netip.MustParseAddr(ingressIP))
	ap := newACMEProxyPorts(t, filepath.Join(t.TempDir(), "certs"))
	ap.renewCheck = "1s"
	pb := startPebble(t, f.dns.Addr, ap.tlsPort, freePort(t, ingressIP), 30*time.Second)
	p := ap.start(t, f, pb, pb.dirURL)
	waitReadyz(t, p, 60*time.Second)
	roots := pb.issuingRoots(t)
	cfg := &gotls.Config{ServerName: acmeName, RootCAs: roots, NextProtos: []string{"http/1.1"}}

	old := openTunnel(t, f, p, cfg)
	old.get(t)
	if life := old.leaf.NotAfter.Sub(old.leaf.NotBefore); life > time.Minute {
		t.Fatalf("certificate lifetime %s: Pebble's short profile was not used", life)
	}

	// Wait (bounded) for new handshakes to see another certificate.
	var renewed *x509.Certificate
	deadline := time.Now().Add(60 * time.Second)
	for renewed == nil {
		c, err := gotls.Dial("tcp", p.tlsAddr, cfg)
		if err == nil {
			if leaf := c.ConnectionState().PeerCertificates[0]; leaf.SerialNumber.Cmp(old.leaf.SerialNumber) != 0 {
				renewed = leaf
			}
			c.Close()
		}
		if renewed != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no renewed certificate after 60s (last dial: %v)", err)
		}
		select {
		case <-p.exited:
			t.Fatalf("fixedgate exited: %v", p.exitErr)
		case <-time.After(200 * time.Millisecond):
		}
	}
	if !renewed.NotAfter.After(old.leaf.NotAfter) {
		t.Fatalf("renewed certificate expires %s, not after the old one's %s", renewed.NotAfter, old.leaf.NotAfter)
	}
	old.get(t) // the tunnel from before the renewal still carries traffic
	if n := tunnelOverTLS(t, f, p, cfg); n.SerialNumber.Cmp(old.leaf.SerialNumber) == 0 {
		t.Fatal("a new handshake got the old certificate after the renewal")
	}
	if !strings.Contains(p.log(), `"msg":"ACME: certificate obtained","domain":"`+acmeName+`","renewal":true`) {
		t.Fatal("the log does not show the renewal")
	}
}

// TestACMEHTTP01: with tls.acme.http_listen, the HTTP-01 challenge is answered there. Pebble's
// TLS-ALPN-01 port is one nothing listens on, so only HTTP-01 can succeed.
func TestACMEHTTP01(t *testing.T) {
	f := newFixture(t)
	f.dns.Set(acmeName, 60, netip.MustParseAddr(ingressIP))
	ap := newACMEProxyPorts(t, filepath.Join(t.TempDir(), "certs"))
	httpPort := freePort(t, ingressIP)
	ap.httpListen = fmt.Sprintf("%s:%d", ingressIP, httpPort)
	pb := startPebble(t, f.dns.Addr, freePort(t, ingressIP), httpPort, 0)
	p := ap.start(t, f, pb, pb.dirURL)
	waitReadyz(t, p, 60*time.Second)
	tunnelOverTLS(t, f, p, &gotls.Config{ServerName: acmeName, RootCAs: pb.issuingRoots(t), NextProtos: []string{"http/1.1"}})
	if !strings.Contains(pb.log(), "validate w/ HTTP: http://"+acmeName+fmt.Sprintf(":%d/.well-known/acme-challenge/", httpPort)) ||
		!strings.Contains(p.log(), `"msg":"served key authentication","identifier":"`+acmeName+`","challenge":"http-01"`) {
		t.Fatal("the certificate was not validated through HTTP-01 on http_listen")
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}).Get("http://" + ap.httpListen + "/")
	if err != nil {
		t.Fatal(err)
	}
	if b := body(t, resp); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("http_listen, path /: %s %q (want 404: only challenges are answered)", resp.Status, b)
	}
}
