package main

import (
	"bufio"
	"crypto/sha256"
	gotls "crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"context"

	"github.com/fixedgate/fixedgate/proxy"
	"github.com/fixedgate/fixedgate/proxy/egress"
	"github.com/fixedgate/fixedgate/proxy/policy"
	"github.com/fixedgate/fixedgate/proxy/resolver/dnstest"
	fgtls "github.com/fixedgate/fixedgate/tls"
	"github.com/fixedgate/fixedgate/tls/devca"
)

// Demo addresses: all on loopback, so the demo runs anywhere and sends nothing off the machine.
const (
	demoIngress = "127.0.0.10"
	demoEgress  = "127.0.0.20"
	demoOrigin  = "127.0.0.30"
	demoDNS     = "127.0.0.53"
	demoUser    = "acme-corp"
	demoKey     = "demo-secret"
)

func cmdDemo(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stderr)
	keep := fs.Bool("keep", false, "stay up after the report, for trying it by hand (Ctrl-C stops)")
	verbose := fs.Bool("v", false, "show the proxy's own log lines")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "fixedgate-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// The origin: an HTTPS server with its own CA that reports which address connected to it.
	originCA, err := devca.New("fixedgate demo origin CA")
	if err != nil {
		return err
	}
	originCAFile := filepath.Join(dir, "origin-ca.pem")
	if err := os.WriteFile(originCAFile, originCA.CertPEM(), 0o644); err != nil {
		return err
	}
	cert, err := originCA.Issue([]string{"api.demo.test"}, nil, 24*time.Hour)
	if err != nil {
		return err
	}
	originLn, err := gotls.Listen("tcp", demoOrigin+":0", &gotls.Config{Certificates: []gotls.Certificate{cert}})
	if err != nil {
		return fmt.Errorf("origin: %w (Linux routes all of 127.0.0.0/8 to loopback; other systems need the alias added)", err)
	}
	origin := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the origin; you came from %s\n", r.RemoteAddr)
	}), ReadHeaderTimeout: 5 * time.Second}
	go origin.Serve(originLn)
	defer origin.Close()
	originPort := originLn.Addr().(*net.TCPAddr).Port

	// DNS the proxy trusts: api.demo.test is the origin, internal.demo.test points into a
	// private network (the SSRF guard must refuse it without connecting).
	dns, err := dnstest.Start(demoDNS)
	if err != nil {
		return err
	}
	defer dns.Close()
	dns.Set("api.demo.test", 60, netip.MustParseAddr(demoOrigin))
	dns.Set("internal.demo.test", 60, netip.MustParseAddr("10.1.2.3"))

	plainPort, tlsPort, adminPort, err := freePorts(demoIngress, 3)
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(demoKey))
	cfg := defaultConfig()
	cfg.Listen = []proxy.ListenConfig{
		{Address: fmt.Sprintf("%s:%d", demoIngress, plainPort)},
		{Address: fmt.Sprintf("%s:%d", demoIngress, tlsPort), TLS: true},
	}
	cfg.TLS.SelfSigned = &fgtls.SelfSignedConfig{Dir: filepath.Join(dir, "proxy-ca")}
	cfg.Egress = egress.Config{Addresses: []netip.Addr{netip.MustParseAddr(demoEgress)}}
	cfg.Resolver.Servers = []string{dns.Addr}
	cfg.Forward.Users = []proxy.User{{Name: demoUser, KeySHA256: hex.EncodeToString(sum[:])}}
	cfg.Forward.Allow = []policy.AllowRule{
		{Host: "api.demo.test", Ports: []int{originPort}, UpgradeTLS: true},
		{Host: "*.demo.test", Ports: []int{443, originPort}},
	}
	// The demo's origin lives on loopback, which the SSRF guard denies by default.
	cfg.Forward.AllowNetworks = []netip.Prefix{netip.MustParsePrefix(demoOrigin + "/32")}
	cfg.UpstreamTLS.CAFile = originCAFile
	cfg.Admin.Listen = fmt.Sprintf("%s:%d", demoIngress, adminPort)
	cfg.ShutdownGrace = 5 * time.Second
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("demo config: %w", err)
	}
	logOut := io.Discard
	if *verbose {
		logOut = stderr
	}
	log := newLogger(LogConfig{Level: "info", Format: "console"}, logOut)
	a, err := startApp(&cfg, log)
	if err != nil {
		return err
	}
	a.logReady()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
		defer cancel()
		a.shutdown(ctx)
	}()

	proxyCA, err := os.ReadFile(a.tls.CAPath())
	if err != nil {
		return err
	}
	d := &demo{
		out:      stdout,
		origin:   fmt.Sprintf("api.demo.test:%d", originPort),
		plainURL: fmt.Sprintf("http://%s:%d", demoIngress, plainPort),
		tlsURL:   fmt.Sprintf("https://%s:%d", demoIngress, tlsPort),
		roots:    x509.NewCertPool(),
	}
	d.roots.AppendCertsFromPEM(originCA.CertPEM())
	d.roots.AppendCertsFromPEM(proxyCA)
	fmt.Fprintf(stdout, "fixedgate demo — everything on loopback\n")
	fmt.Fprintf(stdout, "  proxy ingress %s (plain :%d, TLS :%d), egress %s\n", demoIngress, plainPort, tlsPort, demoEgress)
	fmt.Fprintf(stdout, "  origin https://%s (%s), DNS %s\n\n", d.origin, demoOrigin, dns.Addr)

	saw := "you came from " + demoEgress + ":"
	d.expect("CONNECT, origin sees the egress IP", d.plainURL, "https://"+d.origin+"/", saw)
	d.expect("CONNECT over TLS to the proxy", d.tlsURL, "https://"+d.origin+"/", saw)
	d.expect("plain http:// re-encrypted to https://", d.plainURL, "http://"+d.origin+"/", saw)
	d.expectRefused("no proxy credentials", d.tlsURL, false, d.origin, 407, "proxy credentials required")
	d.expectRefused("a host no rule allows", d.plainURL, true, "example.com:443", 403, "matches no forward.allow rule")
	d.expectRefused("allowed name resolving into 10.0.0.0/8", d.plainURL, true, fmt.Sprintf("internal.demo.test:%d", originPort), 403, "denied network")
	d.expectRefused("loopback spelled 0x7f.1", d.plainURL, true, fmt.Sprintf("0x7f.1:%d", originPort), 403, "127.0.0.1")

	fmt.Fprintf(stdout, "\n%d of %d checks passed\n", d.passed, d.total)
	if *keep {
		fmt.Fprintf(stdout, `
staying up (Ctrl-C stops). Try:
  curl --proxy %s --proxy-user %s:%s --cacert %s https://%s/
  curl --proxy %s --proxy-cacert %s --proxy-user %s:%s --cacert %s https://%s/
  curl http://%s/metrics
`, d.plainURL, demoUser, demoKey, originCAFile, d.origin, d.tlsURL, a.tls.CAPath(), demoUser, demoKey, originCAFile, d.origin, cfg.Admin.Listen)
		fmt.Fprintf(stdout, "  (curl needs --resolve %s:%s or a resolver that knows api.demo.test only for direct use; through the proxy it is resolved by the proxy)\n", d.origin, demoOrigin)
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
		<-sigs
	}
	if d.passed != d.total {
		return errors.New("demo: some checks failed")
	}
	return nil
}

type demo struct {
	out              io.Writer
	origin           string
	plainURL, tlsURL string
	roots            *x509.CertPool
	passed, total    int
}

// expect sends one request through the proxy with Go's client and prints whether it got the
// wanted status and body.
func (d *demo) expect(title, proxyURL, target, wantBody string) {
	pu, _ := url.Parse(proxyURL)
	pu.User = url.UserPassword(demoUser, demoKey)
	tr := &http.Transport{
		Proxy:           http.ProxyURL(pu),
		TLSClientConfig: &gotls.Config{RootCAs: d.roots},
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	status, body := 0, ""
	resp, err := client.Get(target)
	if err != nil {
		body = err.Error()
	} else {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		status, body = resp.StatusCode, strings.TrimSpace(string(b))
	}
	d.report(title, proxyURL, status, body, status == http.StatusOK && strings.Contains(body, wantBody))
}

// expectRefused sends a CONNECT by hand, so the demo can show the one-line reason the proxy
// gives (Go's client drops the body of a refused CONNECT).
func (d *demo) expectRefused(title, proxyURL string, withCreds bool, hostport string, wantStatus int, wantBody string) {
	pu, _ := url.Parse(proxyURL)
	status, body := 0, ""
	func() {
		conn, err := net.DialTimeout("tcp", pu.Host, 5*time.Second)
		if err != nil {
			body = err.Error()
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		var c net.Conn = conn
		if pu.Scheme == "https" {
			c = gotls.Client(conn, &gotls.Config{RootCAs: d.roots, ServerName: pu.Hostname()})
		}
		req := fmt.Sprintf("CONNECT %s HTTP/1.1\r\nHost: %s\r\n", hostport, hostport)
		if withCreds {
			req += "Proxy-Authorization: Basic " + basicAuth(demoUser, demoKey) + "\r\n"
		}
		if _, err := io.WriteString(c, req+"\r\n"); err != nil {
			body = err.Error()
			return
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
		if err != nil {
			body = err.Error()
			return
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		status, body = resp.StatusCode, strings.TrimSpace(string(b))
	}()
	d.report(title, proxyURL, status, body, status == wantStatus && strings.Contains(body, wantBody))
}

func (d *demo) report(title, proxyURL string, status int, body string, ok bool) {
	d.total++
	mark := "FAIL"
	if ok {
		mark = "ok  "
		d.passed++
	}
	via := "http:// "
	if strings.HasPrefix(proxyURL, "https") {
		via = "https://"
	}
	fmt.Fprintf(d.out, "  %s %-46s via %s proxy → %d  %s\n", mark, title, via, status, firstLine(body))
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

func basicAuth(user, pass string) string {
	r := &http.Request{Header: http.Header{}}
	r.SetBasicAuth(user, pass)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

// freePorts finds n ports that are free on ip now (the demo then binds them at once).
func freePorts(ip string, n int) (int, int, int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", ip+":0")
		if err != nil {
			return 0, 0, 0, fmt.Errorf("listen on %s: %w", ip, err)
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports[0], ports[1], ports[2], nil
}
