package main

import (
	"bufio"
	"context"
	gotls "crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"

	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

func goClient(t *testing.T, proxyURL string, roots *x509.CertPool) *http.Client {
	t.Helper()
	pu, err := url.Parse(proxyURL)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &gotls.Config{RootCAs: roots}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func rootsWith(t *testing.T, pemFiles ...string) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	for _, f := range pemFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !pool.AppendCertsFromPEM(b) {
			t.Fatalf("no certificate in %s", f)
		}
	}
	return pool
}

func TestTunnelGoClient(t *testing.T) {
	f := newFixture(t)
	p := f.startProxy(t, "")
	target := fmt.Sprintf("https://api.test:%d/", f.origin.port)
	for _, tc := range []struct{ name, proxyURL string }{
		{"http proxy URL", "http://" + testUser + ":" + testKey + "@" + p.plain},
		{"https proxy URL", "https://" + testUser + ":" + testKey + "@" + p.tlsAddr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := goClient(t, tc.proxyURL, rootsWith(t, f.origin.caFile, p.caFile))
			resp, err := c.Get(target)
			if err != nil {
				t.Fatal(err)
			}
			got := body(t, resp)
			if resp.StatusCode != 200 || !strings.Contains(got, "remote="+egressIP+":") {
				t.Fatalf("status %d body %q; want 200 from egress %s", resp.StatusCode, got, egressIP)
			}
		})
	}
}

// TestTunnelGoHTTP2Transport: Go's Transport with HTTP/2 enabled (http.DefaultTransport's
// settings) offers h2 to an https:// proxy and then speaks HTTP/1.1 CONNECT. The TLS listener
// must serve that, and real HTTP/2 CONNECT, on the same ALPN.
func TestTunnelGoHTTP2Transport(t *testing.T) {
	f := newFixture(t)
	p := f.startProxy(t, "")
	proxyURL, _ := url.Parse("https://" + testUser + ":" + testKey + "@" + p.tlsAddr)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = http.ProxyURL(proxyURL)
	tr.TLSClientConfig = &gotls.Config{RootCAs: rootsWith(t, f.origin.caFile, p.caFile)}
	t.Cleanup(tr.CloseIdleConnections)
	if !tr.ForceAttemptHTTP2 {
		t.Fatal("the default transport no longer forces HTTP/2; this test needs it")
	}
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	for i := range 3 {
		resp, err := c.Get(fmt.Sprintf("https://api.test:%d/", f.origin.port))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if got := body(t, resp); resp.StatusCode != 200 || !strings.Contains(got, "remote="+egressIP+":") {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, got)
		}
	}
}

func TestTunnelCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed (.ci/run installs it)")
	}
	f := newFixture(t)
	p := f.startProxy(t, "")
	target := fmt.Sprintf("https://api.test:%d/", f.origin.port)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"http proxy URL", []string{"--proxy", "http://" + p.plain, "--proxy-user", testUser + ":" + testKey}},
		{"https proxy URL", []string{"--proxy", "https://" + p.tlsAddr, "--proxy-cacert", p.caFile, "--proxy-user", testUser + ":" + testKey}},
		{"credentials in proxy URL", []string{"--proxy", "http://" + testUser + ":" + testKey + "@" + p.plain}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-sS", "--max-time", "20", "--cacert", f.origin.caFile}, tc.args...)
			out, err := exec.Command("curl", append(args, target)...).CombinedOutput()
			if err != nil {
				t.Fatalf("curl: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "remote="+egressIP+":") {
				t.Fatalf("origin did not see egress %s: %s", egressIP, out)
			}
		})
	}
	t.Run("407 without credentials", func(t *testing.T) {
		out, _ := exec.Command("curl", "-sS", "--max-time", "20", "-o", "/dev/null", "-w", "%{http_connect}",
			"--proxy", "https://"+p.tlsAddr, "--proxy-cacert", p.caFile, "--cacert", f.origin.caFile, target).Output()
		if string(out) != "407" {
			t.Fatalf("curl saw CONNECT status %q, want 407", out)
		}
	})
	t.Run("absolute-form upgraded to https", func(t *testing.T) {
		out, err := exec.Command("curl", "-sS", "--max-time", "20", "--proxy", "http://"+p.plain,
			"--proxy-user", testUser+":"+testKey, fmt.Sprintf("http://api.test:%d/", f.origin.port)).CombinedOutput()
		if err != nil {
			t.Fatalf("curl: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "tls=true") || !strings.Contains(string(out), "remote="+egressIP+":") {
			t.Fatalf("want an https request from %s at the origin, got %s", egressIP, out)
		}
	})
}

func TestProxyAuth(t *testing.T) {
	f := newFixture(t)
	p := f.startProxy(t, "")
	target := fmt.Sprintf("api.test:%d", f.origin.port)
	for _, tc := range []struct {
		name   string
		header []string
		reason string
	}{
		{"missing", nil, "proxy credentials required"},
		{"wrong key", []string{"Proxy-Authorization: Basic " + basicAuth(testUser, "wrong")}, "proxy credentials rejected"},
		{"unknown user", []string{"Proxy-Authorization: Basic " + basicAuth("nobody", testKey)}, "proxy credentials rejected"},
		{"not basic", []string{"Proxy-Authorization: Bearer " + testKey}, "proxy credentials rejected"},
		{"bad base64", []string{"Proxy-Authorization: Basic %%%"}, "proxy credentials rejected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, _, _ := rawConnect(t, p.plain, target, tc.header...)
			b := body(t, resp)
			if resp.StatusCode != 407 || resp.Header.Get("Proxy-Authenticate") != `Basic realm="fixedgate"` || !strings.Contains(b, tc.reason) {
				t.Fatalf("got %d %q %q; want 407 with Basic realm and %q", resp.StatusCode, resp.Header.Get("Proxy-Authenticate"), b, tc.reason)
			}
		})
	}
	t.Run("forward door 407", func(t *testing.T) {
		c := goClient(t, "http://"+p.plain, nil)
		resp, err := c.Get(fmt.Sprintf("http://api.test:%d/", f.origin.port))
		if err != nil {
			t.Fatal(err)
		}
		body(t, resp)
		if resp.StatusCode != 407 || resp.Header.Get("Proxy-Authenticate") == "" {
			t.Fatalf("got %d, want 407 with Proxy-Authenticate", resp.StatusCode)
		}
	})
}

func TestPolicyRefusals(t *testing.T) {
	f := newFixture(t)
	p := f.startProxy(t, "")
	_, plainPort, _ := net.SplitHostPort(p.plain)
	_, adminPort, _ := net.SplitHostPort(p.admin)
	for _, tc := range []struct {
		name, target, reason string
	}{
		{"host not allowed", "example.com:443", "matches no forward.allow rule"},
		{"port not allowed", "api.test:22", "matches no forward.allow rule"},
		{"name resolving into 10/8", fmt.Sprintf("internal.test:%d", f.origin.port), "10.20.30.40 is in a denied network"},
		{"one of several addresses denied", fmt.Sprintf("mixed.test:%d", f.origin.port), "169.254.169.254"},
		{"proxy's own listener", p.plain, "own listener"},
		{"proxy's own admin port", "127.0.0.10:" + adminPort, "own listener"},
		{"own listener in decimal", "2130706442:" + plainPort, "own listener"},
		{"metadata in decimal", "2852039166:" + plainPort, "169.254.169.254 is in a denied network"},
		{"metadata in hex", "0xa9fea9fe:" + plainPort, "169.254.169.254 is in a denied network"},
		{"metadata in octal", "0251.0376.0251.0376:" + plainPort, "169.254.169.254 is in a denied network"},
		{"metadata short form", "169.16689662:" + plainPort, "169.254.169.254 is in a denied network"},
		{"metadata IPv4-mapped", "[::ffff:169.254.169.254]:" + plainPort, "169.254.169.254 is in a denied network"},
		{"metadata IPv4-mapped hex", "[::ffff:a9fe:a9fe]:" + plainPort, "169.254.169.254 is in a denied network"},
		{"ULA", "[fd00::1]:" + plainPort, "denied network"},
		{"NAT64 of 10/8", "[64:ff9b::a00:1]:" + plainPort, "denied network"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, _, _ := rawConnect(t, p.plain, tc.target, authHeader())
			b := body(t, resp)
			if resp.StatusCode != 403 || !strings.Contains(b, tc.reason) {
				t.Fatalf("CONNECT %s: got %d %q; want 403 containing %q", tc.target, resp.StatusCode, b, tc.reason)
			}
		})
	}
}

func TestMalformedRequests(t *testing.T) {
	f := newFixture(t)
	p := f.startProxy(t, "limits: {read_header_timeout: 1s}\n")
	for _, target := range []string{"api.test", "api.test:0", "api.test:65536", "api.test:99999", "user@api.test:443", ":443", "api.test:https", "[::1:443"} {
		t.Run("CONNECT "+target, func(t *testing.T) {
			resp, _, _ := rawConnect(t, p.plain, target, authHeader())
			body(t, resp)
			if resp.StatusCode != 400 {
				t.Fatalf("CONNECT %q: got %d, want 400", target, resp.StatusCode)
			}
		})
	}
	t.Run("oversized headers get 431", func(t *testing.T) {
		resp, _, _ := rawConnect(t, p.plain, fmt.Sprintf("api.test:%d", f.origin.port), authHeader(), "X-Big: "+strings.Repeat("a", 64<<10))
		body(t, resp)
		if resp.StatusCode != 431 {
			t.Fatalf("got %d, want 431", resp.StatusCode)
		}
	})
	t.Run("slow header client is cut off", func(t *testing.T) {
		c, err := net.Dial("tcp", p.plain)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "CONNECT api.test:443 HTTP/1.1\r\nHost: api")
		// The proxy's read_header_timeout is 1s; the generous client deadline only bounds the test.
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, err = io.ReadAll(c)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("proxy kept a slow-header connection open for 30s")
		}
	})
	t.Run("origin-form request to the proxy gets 404", func(t *testing.T) {
		resp, err := http.Get("http://" + p.plain + "/nothing")
		if err != nil {
			t.Fatal(err)
		}
		if b := body(t, resp); resp.StatusCode != 404 || !strings.Contains(b, "HTTPS_PROXY") {
			t.Fatalf("got %d %q", resp.StatusCode, b)
		}
	})
}

func TestForwardHeaders(t *testing.T) {
	f := newFixture(t)
	p := f.startProxy(t, "")
	c := goClient(t, "http://"+testUser+":"+testKey+"@"+p.plain, nil)
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://api.test:%d/headers", f.origin.port), nil)
	req.Header.Set("Connection", "X-Secret-Hop")
	req.Header.Set("X-Secret-Hop", "drop me")
	req.Header.Set("Proxy-Connection", "keep-alive")
	req.Header.Set("X-End-To-End", "keep me")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var got http.Header
	if err := json.Unmarshal([]byte(body(t, resp)), &got); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"Proxy-Authorization", "X-Secret-Hop", "Proxy-Connection"} {
		if got.Get(h) != "" {
			t.Errorf("origin received %s: %q", h, got.Get(h))
		}
	}
	if got.Get("X-End-To-End") != "keep me" {
		t.Errorf("end-to-end header lost: %v", got)
	}
}

func TestHalfCloseThroughTunnel(t *testing.T) {
	f := newFixture(t)
	p := f.startProxy(t, "")
	for _, tc := range []struct {
		name string
		dial func() net.Conn
	}{
		{"plain listener (splice)", func() net.Conn {
			c, err := net.Dial("tcp", p.plain)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}},
		{"TLS listener", func() net.Conn {
			c, err := gotls.Dial("tcp", p.tlsAddr, &gotls.Config{RootCAs: rootsWith(t, p.caFile), NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			return c
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.dial()
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			fmt.Fprintf(c, "CONNECT echo.test:%d HTTP/1.1\r\nHost: x\r\n%s\r\n\r\n", f.echo, authHeader())
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("CONNECT: %v %v", resp, err)
			}
			payload := strings.Repeat("x", 300_000)
			if _, err := io.WriteString(c, payload); err != nil {
				t.Fatal(err)
			}
			if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			reply, err := io.ReadAll(br)
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("got %d bytes from %s", len(payload), egressIP)
			if string(reply) != want {
				t.Fatalf("reply %q, want %q", reply, want)
			}
		})
	}
}

func TestConnectOverHTTP2(t *testing.T) {
	f := newFixture(t)
	p := f.startProxy(t, "")
	tr := &http2.Transport{TLSClientConfig: &gotls.Config{RootCAs: rootsWith(t, p.caFile)}}
	defer tr.CloseIdleConnections()
	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodConnect, "https://"+p.tlsAddr, pr)
	req.Host = fmt.Sprintf("echo.test:%d", f.echo)
	req.Header.Set("Proxy-Authorization", "Basic "+basicAuth(testUser, testKey))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := tr.RoundTrip(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Fatalf("got %d over HTTP/%d", resp.StatusCode, resp.ProtoMajor)
	}
	io.WriteString(pw, "hello over h2")
	pw.Close()
	reply, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if want := "got 13 bytes from " + egressIP; string(reply) != want {
		t.Fatalf("reply %q, want %q", reply, want)
	}
}

func TestConnectOverHTTP2UpstreamClosesFirst(t *testing.T) {
	f := newFixture(t)
	p := f.startProxy(t, "")
	tr := &http2.Transport{TLSClientConfig: &gotls.Config{RootCAs: rootsWith(t, p.caFile)}}
	defer tr.CloseIdleConnections()
	pr, pw := io.Pipe()
	defer pw.Close() // the client never ends its side on its own
	req, _ := http.NewRequest(http.MethodConnect, "https://"+p.tlsAddr, pr)
	req.Host = fmt.Sprintf("greet.test:%d", f.greet)
	req.Header.Set("Proxy-Authorization", "Basic "+basicAuth(testUser, testKey))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := tr.RoundTrip(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("stream did not end when the upstream closed: %v", err)
	}
	if string(reply) != "hello\n" {
		t.Fatalf("reply %q", reply)
	}
}

func TestGracefulShutdown(t *testing.T) {
	f := newFixture(t)
	p := f.startProxy(t, "shutdown_grace: 20s\n")
	c := goClient(t, "http://"+testUser+":"+testKey+"@"+p.plain, f.origin.pool())
	type result struct {
		status int
		body   string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := c.Get(fmt.Sprintf("https://slow.test:%d/slow?d=2s", f.origin.port))
		if err != nil {
			done <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{resp.StatusCode, string(b), err}
	}()
	select {
	case path := <-f.origin.received:
		if path != "/slow" {
			t.Fatalf("origin got %q", path)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("slow request never reached the origin")
	}
	p.signal(syscall.SIGTERM)
	r := <-done
	if r.err != nil || r.status != 200 || r.body != "slow done\n" {
		t.Fatalf("in-flight request during shutdown: %d %q %v", r.status, r.body, r.err)
	}
	if err := p.wait(30 * time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	if !strings.Contains(p.log(), `"msg":"stopped"`) {
		t.Fatal("no stopped log line")
	}
}

func TestEgressNotOnHost(t *testing.T) {
	f := newFixture(t)
	caDir := t.TempDir()
	cfg := strings.Replace(f.config(freePort(t, ingressIP), freePort(t, ingressIP), freePort(t, ingressIP), caDir, ""),
		"addresses: ["+egressIP+"]", "addresses: [192.0.2.44]", 1)
	p := startBinary(t, cfg)
	err := p.wait(30 * time.Second)
	if err == nil {
		t.Fatal("serve started with an egress address that is not on this host")
	}
	if !strings.Contains(p.log(), "egress address 192.0.2.44 is not configured on this host") {
		t.Fatalf("unclear error:\n%s", p.log())
	}
}

func TestSummaryLogLine(t *testing.T) {
	f := newFixture(t)
	p := f.startProxy(t, "")
	resp, conn, _ := rawConnect(t, p.plain, fmt.Sprintf("echo.test:%d", f.echo), authHeader())
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %d", resp.StatusCode)
	}
	io.WriteString(conn, "ping")
	conn.(*net.TCPConn).CloseWrite()
	io.ReadAll(conn)
	conn.Close()
	// The tunnel's line is written when it closes; read the log until it appears (bounded).
	var line map[string]any
	for range 300 {
		for _, l := range strings.Split(p.log(), "\n") {
			if strings.Contains(l, `"door":"connect"`) && strings.Contains(l, `"status":200`) {
				json.Unmarshal([]byte(l), &line)
			}
		}
		if line != nil {
			break
		}
		time.Sleep(20 * time.Millisecond) // polling a log file: there is no other signal
	}
	if line == nil {
		t.Fatal("no summary line for the tunnel")
	}
	for k, want := range map[string]any{"user": testUser, "egress_ip": egressIP, "resolved_ip": originIP, "bytes_up": 4.0, "target": fmt.Sprintf("echo.test:%d", f.echo)} {
		if line[k] != want {
			t.Errorf("%s = %v, want %v (line %v)", k, line[k], want, line)
		}
	}
	for _, k := range []string{"client", "duration_s", "bytes_down", "listener"} {
		if _, ok := line[k]; !ok {
			t.Errorf("summary line lacks %s: %v", k, line)
		}
	}
	metrics, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if m := body(t, metrics); !strings.Contains(m, `fixedgate_requests_total{code="200",door="connect"} 1`) {
		t.Errorf("metrics lack the tunnel:\n%s", m)
	}
}

// TestIdleTunnelsHoldNoPipes opens plain-listener tunnels, moves a TLS exchange through each and
// leaves them open: the spliced legs must not keep a pipe pair per direction while they wait
// (6 descriptors per tunnel, which ran into the descriptor limit at ~3,300 tunnels).
func TestIdleTunnelsHoldNoPipes(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("splice(2) and /proc are Linux")
	}
	if raceBuild {
		t.Skip("under -race sync.Pool drops pooled pipes at random; .ci/run runs this test without -race")
	}
	f := newFixture(t)
	p := f.startProxy(t, "")
	const tunnels = 40
	for i := range tunnels {
		resp, c, br := rawConnect(t, p.plain, fmt.Sprintf("api.test:%d", f.origin.port), authHeader())
		if resp.StatusCode != 200 || br.Buffered() != 0 {
			t.Fatalf("tunnel %d: %s", i, resp.Status)
		}
		tc := gotls.Client(c, &gotls.Config{ServerName: "api.test", RootCAs: f.origin.pool()})
		if _, err := io.WriteString(tc, "GET / HTTP/1.1\r\nHost: api.test\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		r, err := http.ReadResponse(bufio.NewReader(tc), nil)
		if err != nil || r.StatusCode != 200 {
			t.Fatalf("tunnel %d: GET: %v %v", i, r, err)
		}
		body(t, r)
	}
	dir := fmt.Sprintf("/proc/%d/fd", p.cmd.Process.Pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	pipes := 0
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(l, "pipe:") {
			pipes++
		}
	}
	// Go keeps a few spare pipes in a pool after splices end; one per tunnel would be a leak.
	if pipes >= tunnels {
		t.Fatalf("%d pipe descriptors held by %d idle tunnels (%d descriptors in all); want fewer than one per tunnel", pipes, tunnels, len(ents))
	}
	t.Logf("%d idle tunnels: %d descriptors, %d of them pipes", tunnels, len(ents), pipes)
}

// SIGTERM with idle keep-alive clients on the TLS listener, over HTTP/1.1 and HTTP/2: they are
// closed at once (HTTP/2 with a GOAWAY), so the process exits long before the grace period,
// which only requests in progress may use.
func TestShutdownClosesIdleConnections(t *testing.T) {
	f := newFixture(t)
	p := f.startProxy(t, "shutdown_grace: 60s\n")
	for _, proto := range []int{1, 2} {
		tr := &http.Transport{TLSClientConfig: &gotls.Config{RootCAs: rootsWith(t, p.caFile)}, ForceAttemptHTTP2: proto == 2}
		if proto == 1 {
			tr.TLSNextProto = map[string]func(string, *gotls.Conn) http.RoundTripper{}
		}
		t.Cleanup(tr.CloseIdleConnections)
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		resp, err := c.Get("https://" + p.tlsAddr + "/no-such-route")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != proto || resp.StatusCode != http.StatusNotFound {
			t.Fatalf("HTTP/%d client got %s over HTTP/%d", proto, resp.Status, resp.ProtoMajor)
		}
	}
	p.signal(syscall.SIGTERM)
	if err := p.wait(30 * time.Second); err != nil {
		t.Fatalf("idle connections held the shutdown (grace 60s): %v", err)
	}
}

// TestShutdownClosesEveryKindOfIdleConnection holds one idle connection of each kind the
// listeners accept (read_header_timeout and idle_timeout far beyond the test, so only shutdown can
// close them) and requires SIGTERM to end the process well inside shutdown_grace, each
// connection closed by the proxy. Kinds: plain and TLS before any byte; TLS that negotiated h2
// before any byte; TLS that negotiated h2 and then spoke HTTP/1.1 (what Go's Transport does to
// an https:// proxy), idle after a served request; plain, idle after a served request.
func TestShutdownClosesEveryKindOfIdleConnection(t *testing.T) {
	f := newFixture(t)
	p := f.startProxy(t, "shutdown_grace: 120s\nlimits: {read_header_timeout: 300s, idle_timeout: 300s}\n")
	roots := rootsWith(t, p.caFile)
	dialTLS := func(proto string) net.Conn {
		c, err := gotls.Dial("tcp", p.tlsAddr, &gotls.Config{RootCAs: roots, NextProtos: []string{proto}})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.ConnectionState().NegotiatedProtocol; got != proto {
			t.Fatalf("negotiated %q, want %q", got, proto)
		}
		return c
	}
	dialPlain := func() net.Conn {
		c, err := net.Dial("tcp", p.plain)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	served := func(c net.Conn) net.Conn {
		fmt.Fprintf(c, "GET http://api.test:%d/ HTTP/1.1\r\nHost: api.test:%d\r\n%s\r\n\r\n", f.origin.port, f.origin.port, authHeader())
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("absolute-form request: %s", resp.Status)
		}
		return c
	}
	conns := map[string]net.Conn{
		"plain, silent":                 dialPlain(),
		"TLS http/1.1, silent":          dialTLS("http/1.1"),
		"TLS h2, silent":                dialTLS("h2"),
		"TLS h2 speaking HTTP/1.1":      served(dialTLS("h2")),
		"plain, after a request":        served(dialPlain()),
		"TLS http/1.1, after a request": served(dialTLS("http/1.1")),
	}
	for _, c := range conns {
		t.Cleanup(func() { c.Close() })
	}
	p.signal(syscall.SIGTERM)
	if err := p.wait(60 * time.Second); err != nil {
		t.Fatalf("idle connections held the shutdown (grace 120s): %v", err)
	}
	for name, c := range conns {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s: still open after the proxy exited (read %d bytes, %v)", name, n, err)
		}
	}
}
