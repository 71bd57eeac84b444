package main

// PROXY protocol in: Debian's haproxy in front (mode tcp, send-proxy-v2 to the TLS listener,
// send-proxy to the plain one), clients on different 127.0.0.x source addresses, and the
// client's address everywhere fixedgate uses one.

import (
	"bufio"
	"context"
	gotls "crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	balancerIP  = "127.0.0.40" // haproxy's source address towards fixedgate: the trusted balancer
	balancerFor = "127.0.0.41" // where haproxy listens for clients
	clientA     = "127.0.0.101"
	clientB     = "127.0.0.102"
)

// haproxyFront is haproxy in TCP mode in front of a fixedgate: tlsFront forwards to its TLS
// listener with a v2 header, plainFront to its plain listener with a v1 header.
type haproxyFront struct {
	tlsFront, plainFront string
}

func startHAProxyFront(t *testing.T, p *proc) *haproxyFront {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy is not installed (bash .ci/run installs Debian's haproxy)")
	}
	h := &haproxyFront{
		tlsFront:   fmt.Sprintf("%s:%d", balancerFor, freePort(t, balancerFor)),
		plainFront: fmt.Sprintf("%s:%d", balancerFor, freePort(t, balancerFor)),
	}
	cfg := fmt.Sprintf(`global
  log stderr format raw local0 info
defaults
  mode tcp
  log global
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend tls_v2
  bind %s
  default_backend fg_tls
backend fg_tls
  server fg %s send-proxy-v2 source %s
frontend plain_v1
  bind %s
  default_backend fg_plain
backend fg_plain
  server fg %s send-proxy source %s
`, h.tlsFront, p.tlsAddr, balancerIP, h.plainFront, p.plain, balancerIP)
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	startChild(t, "haproxy", cmd, out, nil).waitListening(t, h.tlsFront, h.plainFront)
	return h
}

// fromAddr dials from the loopback source address src.
func fromAddr(src string) *net.Dialer {
	return &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
}

// startPROXYGateway is the gateway fixture with proxy_protocol on both listeners (haproxy's
// source address trusted) and two egress addresses; edit, if set, changes the config last.
func startPROXYGateway(t *testing.T, f *fixture, fl *fleet, optional bool, extraCA []byte, edit func(string) string) *proc {
	t.Helper()
	f.dns.Set(fleetName, 60, fl.addrs(0, 3)...)
	pp := fmt.Sprintf("proxy_protocol: {trusted: [%s/32], optional: %v}", balancerIP, optional)
	// One CA file for the fleet (gateway), the origin (forward door) and extraCA.
	bundle := filepath.Join(t.TempDir(), "upstream-ca.pem")
	a, _ := os.ReadFile(f.origin.caFile)
	b, _ := os.ReadFile(fl.caFile)
	writeTestFile(t, bundle, append(append(a, b...), extraCA...))
	return startGatewayEdit(t, f, fl, "5s", "limits: {read_header_timeout: 2s}\n", func(cfg string) string {
		if edit != nil {
			cfg = edit(cfg)
		}
		cfg = strings.Replace(cfg, "ca_file: "+strconv.Quote(fl.caFile), "ca_file: "+strconv.Quote(bundle), 1)
		cfg = strings.Replace(cfg, ", tls: false}", ", tls: false, "+pp+"}", 1)
		cfg = strings.Replace(cfg, ", tls: true}", ", tls: true, "+pp+"}", 1)
		return strings.Replace(cfg, "egress:\n  addresses: ["+egressIP+"]", "egress:\n  addresses: ["+egressIP+", 127.0.0.21]", 1)
	})
}

// TestPROXYProtocolFromHAProxy: behind haproxy, fixedgate sees each client's own address, over
// both header versions and every door: the gateway (the backend's X-Forwarded-For), CONNECT
// and absolute-form (the summary line's client), and egress stickiness (a client keeps the
// egress address it gets when it connects directly).
func TestPROXYProtocolFromHAProxy(t *testing.T) {
	f := newFixture(t)
	fl := startFleet(t, 3)
	p := startPROXYGateway(t, f, fl, false, nil, nil)
	h := startHAProxyFront(t, p)
	roots := rootsWith(t, p.caFile)

	gw := func(src, addr string) *http.Client {
		tr := &http.Transport{
			Proxy: nil,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return fromAddr(src).DialContext(ctx, "tcp", addr)
			},
			TLSClientConfig:   &gotls.Config{RootCAs: roots},
			ForceAttemptHTTP2: true,
		}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 30 * time.Second}
	}
	// The gateway, over the v2 header: X-Forwarded-For and the egress address per client.
	egressOf := map[string]string{}
	for _, src := range []string{clientA, clientB} {
		var seen []string
		for range 5 {
			r, _, err := getReply(gw(src, h.tlsFront), "https://"+gwHost+"/")
			if err != nil {
				t.Fatalf("gateway from %s through haproxy: %v", src, err)
			}
			if r.XFF != src {
				t.Errorf("gateway from %s through haproxy: the backend saw X-Forwarded-For %q", src, r.XFF)
			}
			host, _, _ := net.SplitHostPort(r.Remote)
			seen = append(seen, host)
		}
		for _, e := range seen[1:] {
			if e != seen[0] {
				t.Errorf("client %s left from %v: not one egress address", src, seen)
			}
		}
		egressOf[src] = seen[0]
		// A direct connection from the same address (untrusted, without a header: served with
		// its own address) gets the same egress address.
		r, _, err := getReply(gw(src, p.tlsAddr), "https://"+gwHost+"/")
		if err != nil {
			t.Fatalf("gateway from %s directly: %v", src, err)
		}
		if host, _, _ := net.SplitHostPort(r.Remote); host != egressOf[src] || r.XFF != src {
			t.Errorf("client %s directly: egress %s, X-Forwarded-For %q; through haproxy egress %s", src, host, r.XFF, egressOf[src])
		}
	}

	// CONNECT over the v1 header (plain listener), and absolute-form.
	c, err := fromAddr(clientA).Dial("tcp", h.plainFront)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "CONNECT echo.test:%d HTTP/1.1\r\nHost: echo.test\r\n%s\r\n\r\n", f.echo, authHeader())
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect}); err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT through haproxy: %v %v", resp, err)
	}
	io.WriteString(c, "hello")
	c.(*net.TCPConn).CloseWrite()
	if reply, _ := io.ReadAll(br); !strings.HasPrefix(string(reply), "got 5 bytes") {
		t.Fatalf("through the tunnel: %q", reply)
	}
	abs := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		Proxy:       http.ProxyURL(&url.URL{Scheme: "http", Host: h.plainFront, User: url.UserPassword(testUser, testKey)}),
		DialContext: fromAddr(clientB).DialContext,
	}}
	resp, err := abs.Get(fmt.Sprintf("http://api.test:%d/", f.origin.port))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("absolute-form through haproxy: %s", resp.Status)
	}

	// The summary lines name the clients, never the balancer.
	want := map[string]string{"gateway": clientA, "connect": clientA, "forward": clientB}
	waitFor(t, 10*time.Second, "summary lines of every door naming the clients", func() bool {
		got := map[string]bool{}
		for _, line := range strings.Split(p.log(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) != nil || m["msg"] != "request" {
				continue
			}
			client, _ := m["client"].(string)
			if strings.HasPrefix(client, balancerIP+":") {
				t.Fatalf("a summary line names the balancer as the client: %s", line)
			}
			door, _ := m["door"].(string)
			if src, ok := want[door]; ok && strings.HasPrefix(client, src+":") {
				got[door] = true
			}
		}
		return len(got) == len(want)
	})
}

// TestPROXYProtocolRefusals: a header from an address outside the trusted networks, a trusted
// connection without a header, a malformed header and one that never finishes are each closed
// within read_header_timeout with a summary line that says why, and a client served meanwhile
// is not affected. With optional, a trusted connection without a header is served.
func TestPROXYProtocolRefusals(t *testing.T) {
	f := newFixture(t)
	fl := startFleet(t, 3)
	p := startPROXYGateway(t, f, fl, false, nil, nil)
	good := gatewayClient(t, p, true) // from 127.0.0.1: untrusted, no header, served

	for _, tc := range []struct {
		name, from, send, reason string
	}{
		{"header from an untrusted address", clientA, "PROXY TCP4 203.0.113.9 127.0.0.10 5000 443\r\nGET / HTTP/1.1\r\n\r\n",
			"PROXY header from " + clientA + ", which is not in listen[].proxy_protocol.trusted"},
		{"trusted balancer without a header", balancerIP, "GET http://api.test/ HTTP/1.1\r\nHost: api.test\r\n\r\n",
			"no PROXY header from " + balancerIP},
		{"malformed header", balancerIP, "PROXY TCP4 not-an-address 127.0.0.10 5000 443\r\n", "malformed PROXY header"},
		// A v1 header must arrive in one piece (go-proxyproto drops a partial one at once, as
		// the spec allows); a v2 header may take until read_header_timeout.
		{"v1 header cut short", balancerIP, "PROXY TCP4 203.0.113.9", "malformed PROXY header: proxyproto: can't read version 1 header"},
		{"v2 header that never finishes", balancerIP, "\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xcb", "PROXY header not finished within 2s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := fromAddr(tc.from).Dial("tcp", p.plain)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, tc.send)
			c.SetReadDeadline(time.Now().Add(30 * time.Second)) // the proxy's deadline is 2s; this only bounds a broken proxy
			if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
				t.Errorf("read %q, %v: want the connection closed without a response", b, err)
			}
			if _, code, err := getReply(good, "https://"+gwHost+"/"); err != nil {
				t.Errorf("another client meanwhile: %d %v", code, err)
			}
			waitFor(t, 10*time.Second, "the summary line: "+tc.reason, func() bool {
				return strings.Contains(p.log(), `"door":"malformed"`) && strings.Contains(p.log(), tc.reason)
			})
		})
	}

	t.Run("optional: trusted without a header is served", func(t *testing.T) {
		po := startPROXYGateway(t, f, fl, true, nil, nil)
		abs := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			Proxy:       http.ProxyURL(&url.URL{Scheme: "http", Host: po.plain, User: url.UserPassword(testUser, testKey)}),
			DialContext: fromAddr(balancerIP).DialContext,
		}}
		resp, err := abs.Get(fmt.Sprintf("http://api.test:%d/", f.origin.port))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s", resp.Status)
		}
	})
}

// ppOriginIP is where nginx listens, requiring a PROXY header, as a gateway backend and as a
// CONNECT and absolute-form origin.
const ppOriginIP = "127.0.0.32"

// ppNginx is Debian's nginx with `listen … ssl proxy_protocol` on two ports; every response's
// body is "pp=$proxy_protocol_addr", the client address the header named.
type ppNginx struct {
	gwPort, originPort int
	caPEM              []byte
}

func startPPNginx(t *testing.T) *ppNginx {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		t.Skip("nginx is not installed (bash .ci/run installs Debian's nginx-light)")
	}
	dir := t.TempDir()
	ca := newTestCA(t, "PROXY-protocol backend CA")
	cert, err := ca.Issue([]string{"pp.test"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}))
	writeTestFile(t, filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	n := &ppNginx{gwPort: freePort(t, ppOriginIP), originPort: freePort(t, ppOriginIP), caPEM: ca.CertPEM()}
	server := func(port int) string {
		return fmt.Sprintf(`  server {
    listen %s:%d ssl proxy_protocol;
    ssl_certificate %s/cert.pem;
    ssl_certificate_key %s/key.pem;
    location / { return 200 "pp=$proxy_protocol_addr\n"; }
  }
`, ppOriginIP, port, dir, dir)
	}
	conf := fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log stderr warn;
events { worker_connections 256; }
http {
  access_log %[1]s/access.log;
  client_body_temp_path %[1]s; proxy_temp_path %[1]s; fastcgi_temp_path %[1]s; uwsgi_temp_path %[1]s; scgi_temp_path %[1]s;
%[2]s%[3]s}
`, dir, server(n.gwPort), server(n.originPort))
	writeTestFile(t, filepath.Join(dir, "nginx.conf"), []byte(conf))
	cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	startChild(t, "nginx", cmd, out, nil).waitListening(t,
		net.JoinHostPort(ppOriginIP, strconv.Itoa(n.gwPort)), net.JoinHostPort(ppOriginIP, strconv.Itoa(n.originPort)))
	return n
}

// TestPROXYProtocolToBackends: with routes[].proxy_protocol: v2 and forward.allow[].proxy_protocol:
// v1, nginx (which requires the header) sees each client's own address, including the one
// haproxy named in front: through the gateway, a CONNECT tunnel and an absolute-form request.
// Requests of two clients in turn never share a connection whose header names the other.
func TestPROXYProtocolToBackends(t *testing.T) {
	f := newFixture(t)
	fl := startFleet(t, 3)
	ng := startPPNginx(t)
	f.dns.Set("pp.test", 60, netip.MustParseAddr(ppOriginIP))
	p := startPROXYGateway(t, f, fl, false, ng.caPEM, func(cfg string) string {
		cfg = strings.Replace(cfg, "routes:\n", fmt.Sprintf("routes:\n  - {host: pp.gw.test, upstream: \"https://pp.test:%d\", proxy_protocol: v2}\n", ng.gwPort), 1)
		cfg = strings.Replace(cfg, "  allow:\n", fmt.Sprintf("  allow:\n    - {host: pp.test, ports: [%d], proxy_protocol: v1}\n", ng.originPort), 1)
		return strings.Replace(cfg, "allow_networks: [", "allow_networks: ["+ppOriginIP+"/32, ", 1)
	})
	h := startHAProxyFront(t, p)
	roots := rootsWith(t, p.caFile)
	body := func(c *http.Client, u string) string {
		t.Helper()
		resp, err := c.Get(u)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s %s", u, resp.Status, b)
		}
		return strings.TrimSpace(string(b))
	}
	gw := func(src, addr string) *http.Client {
		tr := &http.Transport{Proxy: nil, ForceAttemptHTTP2: true, TLSClientConfig: &gotls.Config{RootCAs: roots},
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return fromAddr(src).DialContext(ctx, "tcp", addr)
			}}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 30 * time.Second}
	}
	originRoots := x509.NewCertPool()
	originRoots.AppendCertsFromPEM(ng.caPEM)
	fwd := func(src string, keepAlive bool) *http.Client {
		tr := &http.Transport{
			Proxy:             http.ProxyURL(&url.URL{Scheme: "http", Host: h.plainFront, User: url.UserPassword(testUser, testKey)}),
			DialContext:       fromAddr(src).DialContext,
			TLSClientConfig:   &gotls.Config{RootCAs: originRoots},
			DisableKeepAlives: !keepAlive,
		}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 30 * time.Second}
	}
	for round := range 2 { // clients in turn: a pooled connection would carry the other's header
		for _, src := range []string{clientA, clientB} {
			want := "pp=" + src
			if got := body(gw(src, h.tlsFront), "https://pp.gw.test/"); got != want {
				t.Errorf("round %d, gateway through haproxy from %s: nginx saw %q", round, src, got)
			}
			if got := body(gw(src, p.tlsAddr), "https://pp.gw.test/"); got != want {
				t.Errorf("round %d, gateway directly from %s: nginx saw %q", round, src, got)
			}
			// https:// through an http:// proxy: a CONNECT tunnel.
			if got := body(fwd(src, true), fmt.Sprintf("https://pp.test:%d/", ng.originPort)); got != want {
				t.Errorf("round %d, CONNECT from %s: nginx saw %q", round, src, got)
			}
		}
	}
	// Absolute-form (http:// target with upgrade_tls would need a rule of its own; an https://
	// URL in absolute-form is what a plain-HTTP client sends when told to): by hand.
	for _, src := range []string{clientA, clientB, clientA} {
		c, err := fromAddr(src).Dial("tcp", h.plainFront)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		fmt.Fprintf(c, "GET https://pp.test:%d/ HTTP/1.1\r\nHost: pp.test:%d\r\n%s\r\nConnection: close\r\n\r\n", ng.originPort, ng.originPort, authHeader())
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		c.Close()
		if got := strings.TrimSpace(string(b)); resp.StatusCode != 200 || got != "pp="+src {
			t.Errorf("absolute-form from %s: %s %q", src, resp.Status, got)
		}
	}
}
