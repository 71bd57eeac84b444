package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	gotls "crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
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
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fixedgate/fixedgate/ipranges"
	"github.com/fixedgate/fixedgate/proxy"
	"github.com/fixedgate/fixedgate/proxy/egress"
	"github.com/fixedgate/fixedgate/proxy/policy"
	"github.com/fixedgate/fixedgate/proxy/resolver/dnstest"
	"github.com/fixedgate/fixedgate/proxy/status"
	fgtls "github.com/fixedgate/fixedgate/tls"
	"github.com/fixedgate/fixedgate/tls/devca"
)

// Demo addresses: all on loopback, so the demo runs anywhere and sends nothing off the machine.
const (
	demoIngress = "127.0.0.10"
	demoEgress  = "127.0.0.20"
	// demoAnnounced is an egress address the demo's contract announces for 14 days from now.
	demoAnnounced = "127.0.0.21"
	demoOrigin    = "127.0.0.30"
	demoDNS       = "127.0.0.53"
	demoUser      = "acme-corp"
	demoKey       = "demo-secret"

	// The gateway door: gw.demo.test is routed to the fleet behind fleet.demo.test, 40 HTTPS
	// backends on 127.0.1.1–127.0.1.40.
	demoGateway   = "gw.demo.test"
	demoFleetName = "fleet.demo.test"
	demoFleetSize = 40
)

func cmdDemo(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stderr)
	keep := fs.Bool("keep", false, "stay up after the report, for trying it by hand (Ctrl-C stops)")
	verbose := fs.Bool("v", false, "show the proxy's own log lines")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	began := time.Now()
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

	// The gateway's backend fleet: 40 HTTPS servers with a CA of their own, one port for all.
	fleet, err := startDemoFleet(demoFleetName, demoFleetSize)
	if err != nil {
		return err
	}
	defer fleet.close()
	// upstream_tls.ca_file takes one file: the origin's and the fleet's CA in one bundle.
	upstreamCAFile := filepath.Join(dir, "upstream-ca.pem")
	if err := os.WriteFile(upstreamCAFile, slices.Concat(originCA.CertPEM(), fleet.caPEM), 0o644); err != nil {
		return err
	}
	fleetCAFile := filepath.Join(dir, "fleet-ca.pem")
	if err := os.WriteFile(fleetCAFile, fleet.caPEM, 0o644); err != nil {
		return err
	}

	// DNS the proxy trusts: api.demo.test is the origin, internal.demo.test points into a
	// private network (the SSRF guard must refuse it without connecting), fleet.demo.test is
	// the whole fleet in one large answer.
	dns, err := dnstest.Start(demoDNS)
	if err != nil {
		return err
	}
	defer dns.Close()
	dns.Set("api.demo.test", 60, netip.MustParseAddr(demoOrigin))
	dns.Set("internal.demo.test", 60, netip.MustParseAddr("10.1.2.3"))
	dns.Set(demoFleetName, 60, fleet.addrs()...)

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
	// DNS changes must show within the demo's seconds, not the minute a TTL of 60 would take,
	// so TTLs are clamped to at most 2s. A partial answer (rotating subsets) is sampled every
	// min_ttl, and the union only holds several subsets when that is well below their TTL (1s
	// in the rotating phase).
	cfg.Resolver.MinTTL = 200 * time.Millisecond
	cfg.Resolver.MaxTTL = 2 * time.Second
	// The demo's gateway load is thousands of requests a second from one client address, far
	// above limits.per_client's defaults for one customer.
	cfg.Limits.PerClient.Rate, cfg.Limits.PerClient.Burst = 1e6, 1e6
	cfg.Forward.Users = []proxy.User{{Name: demoUser, KeySHA256: hex.EncodeToString(sum[:])}}
	cfg.Forward.Allow = []policy.AllowRule{
		{Host: "api.demo.test", Ports: []int{originPort}, UpgradeTLS: true},
		{Host: "*.demo.test", Ports: []int{443, originPort}},
		{Host: demoFleetName, Ports: []int{fleet.port}},
	}
	// The demo's origin and fleet live on loopback, which the SSRF guard denies by default (for
	// the gateway's backends too).
	cfg.Forward.AllowNetworks = []netip.Prefix{netip.MustParsePrefix(demoOrigin + "/32"), netip.MustParsePrefix("127.0.1.0/24")}
	cfg.Routes = []proxy.RouteConfig{{Host: demoGateway, Upstream: fmt.Sprintf("https://%s:%d", demoFleetName, fleet.port)}}
	cfg.UpstreamTLS.CAFile = upstreamCAFile
	cfg.Probes = demoProbes(cfg.Listen[0].Address, cfg.Listen[1].Address, fleet.port)
	cfg.Admin.Listen = fmt.Sprintf("%s:%d", demoIngress, adminPort)
	cfg.ShutdownGrace = 5 * time.Second
	// The contract: the demo's ingress and egress addresses active from the start (ipranges init),
	// one more egress address announced 14 days ahead, served on every listener.
	contract, err := ipranges.Init([]netip.Prefix{netip.MustParsePrefix(demoIngress + "/32")},
		[]netip.Prefix{netip.MustParsePrefix(demoEgress + "/32")},
		ipranges.InitOptions{Notice: ipranges.MinNotice, Facility: "loopback"}, time.Now())
	if err == nil {
		err = contract.Announce(netip.MustParsePrefix(demoAnnounced+"/32"), ipranges.Egress, ipranges.MinNotice, "loopback", "", time.Now())
	}
	if err != nil {
		return fmt.Errorf("demo contract: %w", err)
	}
	cfg.IPRanges.State = filepath.Join(dir, "ip-ranges.json")
	if err := ipranges.Create(cfg.IPRanges.State, contract); err != nil {
		return fmt.Errorf("demo contract: %w", err)
	}
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
		out:        stdout,
		origin:     fmt.Sprintf("api.demo.test:%d", originPort),
		plainURL:   fmt.Sprintf("http://%s:%d", demoIngress, plainPort),
		tlsURL:     fmt.Sprintf("https://%s:%d", demoIngress, tlsPort),
		tlsAddr:    fmt.Sprintf("%s:%d", demoIngress, tlsPort),
		metricsURL: "http://" + cfg.Admin.Listen + "/metrics",
		statusURL:  "http://" + cfg.Admin.Listen + status.PathHTML,
		roots:      x509.NewCertPool(),
		proxyRoots: x509.NewCertPool(),
		fleetRoots: x509.NewCertPool(),
		dns:        dns,
		fleet:      fleet,
		maxTTL:     cfg.Resolver.MaxTTL,
	}
	d.roots.AppendCertsFromPEM(originCA.CertPEM())
	d.roots.AppendCertsFromPEM(proxyCA)
	d.proxyRoots.AppendCertsFromPEM(proxyCA)
	d.fleetRoots.AppendCertsFromPEM(fleet.caPEM)
	fmt.Fprintf(stdout, "fixedgate demo — everything on loopback\n")
	fmt.Fprintf(stdout, "  proxy ingress %s (plain :%d, TLS :%d, admin :%d), egress %s\n", demoIngress, plainPort, tlsPort, adminPort, demoEgress)
	fmt.Fprintf(stdout, "  origin https://%s (%s), DNS %s\n", d.origin, demoOrigin, dns.Addr)
	fmt.Fprintf(stdout, "  fleet https://%s:%d on %s–%s; route %s → the fleet\n", demoFleetName, fleet.port,
		fleet.backends[0].addr, fleet.backends[len(fleet.backends)-1].addr, demoGateway)
	fmt.Fprintf(stdout, "  resolver: TTLs clamped to %s–%s so DNS changes show within seconds\n", cfg.Resolver.MinTTL, cfg.Resolver.MaxTTL)

	d.section("forward door: CONNECT and absolute-form requests")
	saw := "you came from " + demoEgress + ":"
	d.expect("CONNECT, origin sees the egress IP", d.plainURL, "https://"+d.origin+"/", saw)
	d.expect("CONNECT over TLS to the proxy", d.tlsURL, "https://"+d.origin+"/", saw)
	d.expect("plain http:// re-encrypted to https://", d.plainURL, "http://"+d.origin+"/", saw)
	d.expectRefused("no proxy credentials", d.tlsURL, false, d.origin, 407, "proxy credentials required")
	d.expectRefused("a host no rule allows", d.plainURL, true, "example.com:443", 403, "matches no forward.allow rule")
	d.expectRefused("allowed name resolving into 10.0.0.0/8", d.plainURL, true, fmt.Sprintf("internal.demo.test:%d", originPort), 403, "denied network")
	d.expectRefused("loopback spelled 0x7f.1", d.plainURL, true, fmt.Sprintf("0x7f.1:%d", originPort), 403, "127.0.0.1")

	if err := d.gatewayDoor(); err != nil {
		return err
	}
	d.contractDoor()
	if err := d.statusDoor(dir); err != nil {
		return err
	}

	fmt.Fprintf(stdout, "\n")
	if d.passed == d.total {
		fmt.Fprintf(stdout, "PASS: all %d checks passed (%.1fs)\n", d.total, time.Since(began).Seconds())
	} else {
		fmt.Fprintf(stdout, "FAIL: %d of %d checks failed (%.1fs)\n", d.total-d.passed, d.total, time.Since(began).Seconds())
	}
	if *keep {
		for i := range fleet.backends {
			if err := fleet.setMode(i, demoUp); err != nil {
				return err
			}
		}
		fmt.Fprintf(stdout, `
staying up (Ctrl-C stops); every fleet backend is up again. Try:
  curl --proxy %s --proxy-user %s:%s --cacert %s https://%s/
  curl --proxy %s --proxy-cacert %s --proxy-user %s:%s --cacert %s https://%s/
  curl --connect-to %s:443:%s --cacert %s https://%s/
  curl --proxy %s --proxy-user %s:%s --cacert %s https://%s:%d/
  curl http://%s/metrics
  status page: %s (fixedgate status post --config needs a config file; the demo posts with the same code)
`, d.plainURL, demoUser, demoKey, originCAFile, d.origin,
			d.tlsURL, a.tls.CAPath(), demoUser, demoKey, originCAFile, d.origin,
			demoGateway, d.tlsAddr, a.tls.CAPath(), demoGateway,
			d.plainURL, demoUser, demoKey, fleetCAFile, demoFleetName, fleet.port,
			cfg.Admin.Listen, d.statusURL)
		fmt.Fprintf(stdout, "  (the demo's names exist only in the proxy's DNS at %s; through the proxy it resolves them)\n", dns.Addr)
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
	tlsAddr          string // the TLS listener, where gateway clients connect
	metricsURL       string
	statusURL        string         // the admin listener's status page
	roots            *x509.CertPool // origin CA and proxy CA, for the forward door
	proxyRoots       *x509.CertPool // the proxy's own CA, for the gateway door
	fleetRoots       *x509.CertPool // the fleet's CA, for tunnels to the fleet
	maxTTL           time.Duration  // the proxy's resolver.max_ttl
	dns              *dnstest.Server
	fleet            *demoFleet
	passed, total    int
}

// contractDoor fetches /ip-ranges.json from the TLS listener, as a firewall team's poller
// would, and shows the cheap conditional GET.
func (d *demo) contractDoor() {
	url := d.tlsURL + "/ip-ranges.json"
	d.section("the contract: GET " + url)
	tr := &http.Transport{Proxy: nil, TLSClientConfig: &gotls.Config{RootCAs: d.proxyRoots}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		d.check(false, "GET /ip-ranges.json: %v", err)
		return
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	doc, perr := ipranges.Parse(b)
	if resp.StatusCode != 200 || perr != nil {
		d.check(false, "GET /ip-ranges.json: %d %v", resp.StatusCode, perr)
		return
	}
	now := time.Now()
	for _, p := range doc.Prefixes {
		when := ""
		if p.Status(now) == ipranges.Announced {
			when = ", usable from " + p.Enabled.Format(time.RFC3339)
		}
		fmt.Fprintf(d.out, "  %-8s %-16s %s%s\n", p.Direction, p.CIDR, p.Status(now), when)
	}
	etag := resp.Header.Get("ETag")
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("If-None-Match", etag)
	resp2, err := c.Do(req)
	code := 0
	if err == nil {
		code = resp2.StatusCode
		resp2.Body.Close()
	}
	d.check(code == http.StatusNotModified, "conditional GET with ETag %s: %d (want 304: pollers pay nothing while it is unchanged)", etag, code)
	announced := doc.Lookup(netip.MustParseAddr(demoAnnounced), ipranges.Egress)
	d.check(announced != nil && announced.Status(now) == ipranges.Announced,
		"%s is announced, and the proxy will not dial from it for 14 days (every request above came from %s)", demoAnnounced, demoEgress)
}

// section starts a part of the report.
func (d *demo) section(title string) {
	fmt.Fprintf(d.out, "\n%s\n", title)
}

// check counts and prints one pass/fail line.
func (d *demo) check(ok bool, format string, args ...any) {
	d.total++
	mark := "✗"
	if ok {
		mark = "✓"
		d.passed++
	}
	fmt.Fprintf(d.out, "  %s %s\n", mark, fmt.Sprintf(format, args...))
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
	via := "http:// "
	if strings.HasPrefix(proxyURL, "https") {
		via = "https://"
	}
	d.check(ok, "%-40s via %s proxy → %d  %s", title, via, status, firstLine(body))
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

// gatewayDoor shows the gateway door against the 40-backend fleet: steady traffic, DNS that
// answers with rotating subsets, flapping and dead backends, and then CONNECT tunnels to the
// same fleet through the forward door.
func (d *demo) gatewayDoor() error {
	h1, closeH1 := d.gatewayClient(false)
	defer closeH1()
	h2, closeH2 := d.gatewayClient(true)
	defer closeH2()
	gwURL := "https://" + demoGateway + "/"
	n := demoFleetSize
	fleetGauge := func() int {
		return int(d.metric("fixedgate_dns_fleet_size", `name="`+demoFleetName+`"`))
	}

	// a. steady: one DNS answer with the whole fleet.
	d.section(fmt.Sprintf("gateway door, steady: https://%s → https://%s:%d (DNS: %d addresses, TTL 60)", demoGateway, demoFleetName, d.fleet.port, n))
	r := d.load(h1, gwURL, 400, 8)
	fmt.Fprintf(d.out, "  400 GETs, HTTP/1.1 keep-alive, 8 at a time: %s, %d of %d backends answered\n", r.summary(), len(r.hits), n)
	r2 := d.load(h2, gwURL, 40, 4)
	fmt.Fprintf(d.out, "  40 GETs, HTTP/2 from the client: %s, %d of them over HTTP/2, %d backends\n", r2.summary(), r2.clientH2, len(r2.hits))
	fmt.Fprintf(d.out, "  backends saw source %s, SNI %s, Host %s, %s\n", keys(r.sources, r2.sources), keys(r.snis, r2.snis), keys(r.hosts, r2.hosts), keys(r.protos, r2.protos))
	d.check(r.ok == 400 && r2.ok == 40 && r2.clientH2 == 40, "%d of 440 requests succeeded, %d of 40 over HTTP/2", r.ok+r2.ok, r2.clientH2)
	d.check(len(r.hits) >= 30, "%d of %d backends used (want ≥ 30)", len(r.hits), n)
	d.check(r.ok+r2.ok > 0 && onlyKey(demoEgress, r.sources, r2.sources) && onlyKey(demoFleetName, r.snis, r2.snis),
		"backends saw the egress address %s and SNI %s", demoEgress, demoFleetName)

	// b. rotating: DNS answers with the next 10 of the 40 each time, TTL 1. The proxy's fleet
	// is the union of the subsets seen within their TTLs. To watch it grow, the answer first
	// shrinks to 10 addresses, so the fleet starts from one answer's worth.
	d.section(fmt.Sprintf("gateway door, rotating DNS: each answer holds the next 10 of the %d addresses, TTL 1", n))
	// watch polls the fleet gauge, with a request each time to keep the name in use as real
	// traffic would, until done says so or limit passes; it returns the sizes seen.
	probeErrs := 0
	watch := func(limit time.Duration, done func(size int) bool) (trace []int, took time.Duration) {
		start := time.Now()
		trace = []int{fleetGauge()}
		for !done(trace[len(trace)-1]) && time.Since(start) < limit {
			time.Sleep(50 * time.Millisecond)
			if _, _, err := d.get(h1, gwURL); err != nil {
				probeErrs++
			}
			if size := fleetGauge(); size != trace[len(trace)-1] {
				trace = append(trace, size)
			}
		}
		return trace, time.Since(start)
	}
	first10 := d.fleet.addrs()[:10]
	d.dns.Set(demoFleetName, 1, first10...)
	shrink, took := watch(d.maxTTL*2+time.Second, func(size int) bool { return size == 10 })
	fmt.Fprintf(d.out, "  DNS answers only %s–%s: the fleet goes %s in %.1fs\n", first10[0], first10[9], traceString(shrink), took.Seconds())
	q0 := d.dns.QueriesFor(demoFleetName)
	d.dns.SetRotating(demoFleetName, 1, 10, d.fleet.addrs()...)
	grow, took := watch(8*time.Second, func(size int) bool { return size == n })
	fmt.Fprintf(d.out, "  rotating answers of 10: the fleet goes %s in %.1fs (%d DNS questions)\n",
		traceString(grow), took.Seconds(), d.dns.QueriesFor(demoFleetName)-q0)
	d.check(shrink[len(shrink)-1] == 10 && grow[len(grow)-1] >= 30 && probeErrs == 0,
		"the fleet grew back from 10 to %d (want ≥ 30) from answers of 10 (%d requests failed meanwhile)", grow[len(grow)-1], probeErrs)
	r = d.load(h1, gwURL, 400, 8)
	fmt.Fprintf(d.out, "  400 GETs: %s, %d of %d backends answered; the fleet is now %d\n", r.summary(), len(r.hits), n, fleetGauge())
	d.check(r.ok == 400 && len(r.hits) >= 30, "every request succeeded and %d backends were used (want ≥ 30)", len(r.hits))

	// c. failures: the whole fleet again, but two backends flap and one is dead.
	flapping, down := []int{6, 7}, 8
	d.section(fmt.Sprintf("gateway door, failures: DNS back to all %d (TTL 60); %s and %s flapping, %s down",
		n, d.fleet.backends[flapping[0]].addr, d.fleet.backends[flapping[1]].addr, d.fleet.backends[down].addr))
	d.dns.Set(demoFleetName, 60, d.fleet.addrs()...)
	for start := time.Now(); fleetGauge() != n && time.Since(start) < 5*time.Second; {
		d.get(h1, gwURL)
		time.Sleep(50 * time.Millisecond)
	}
	for _, i := range flapping {
		if err := d.fleet.setMode(i, demoFlap); err != nil {
			return err
		}
	}
	if err := d.fleet.setMode(down, demoDown); err != nil {
		return err
	}
	m0 := d.metrics()
	r = d.load(h1, gwURL, 1000, 8)
	m1 := d.metrics()
	retried := m1.sum("fixedgate_gateway_retries_total", `result="retried"`) - m0.sum("fixedgate_gateway_retries_total", `result="retried"`)
	refused := m1.sum("fixedgate_gateway_retries_total", `result="budget_exhausted"`) - m0.sum("fixedgate_gateway_retries_total", `result="budget_exhausted"`)
	ejections := m1.delta(m0, "fixedgate_backend_ejections_total")
	flapHits := r.hits[d.fleet.backends[flapping[0]].addr.String()] + r.hits[d.fleet.backends[flapping[1]].addr.String()]
	flapShare := 100 * float64(flapHits) / 1000
	fair := 100 * float64(len(flapping)) / float64(n)
	rate := 100 * float64(r.ok) / 1000
	fmt.Fprintf(d.out, "  1000 GETs: %s, %d of %d backends answered\n", r.summary(), len(r.hits), n)
	fmt.Fprintf(d.out, "  retries on another backend: %.0f (refused by the retry budget: %.0f)\n", retried, refused)
	fmt.Fprintf(d.out, "  ejections: %s; ejected now: %.0f\n", ejections, m1.sum("fixedgate_backends_ejected"))
	fmt.Fprintf(d.out, "  the flapping backends answered %d requests (%.1f%%; an even share is %.0f%%), the dead one %d\n",
		flapHits, flapShare, fair, r.hits[d.fleet.backends[down].addr.String()])
	d.check(rate >= 99.5, "%.1f%% of requests succeeded (want ≥ 99.5%%)", rate)
	d.check(retried > 0 && ejections.total >= 3, "failed attempts were retried elsewhere (%.0f) and the failing backends ejected (%.0f ejections)", retried, ejections.total)
	d.check(flapShare < fair/2, "the flapping backends were avoided, not preferred while up (%.1f%% of requests, below half an even share)", flapShare)

	// d. the same fleet through the forward door: CONNECT tunnels, end-to-end TLS to a backend.
	target := fmt.Sprintf("%s:%d", demoFleetName, d.fleet.port)
	d.section(fmt.Sprintf("forward door to the fleet: CONNECT %s via %s (one tunnel per request)", target, d.plainURL))
	pu, _ := url.Parse(d.plainURL)
	pu.User = url.UserPassword(demoUser, demoKey)
	tr := &http.Transport{
		Proxy:             http.ProxyURL(pu),
		TLSClientConfig:   &gotls.Config{RootCAs: d.fleetRoots},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	r = d.load(&http.Client{Transport: tr, Timeout: 10 * time.Second}, "https://"+target+"/", 20, 4)
	failing := 0
	for _, i := range append(slices.Clone(flapping), down) {
		failing += r.hits[d.fleet.backends[i].addr.String()]
	}
	fmt.Fprintf(d.out, "  20 tunnels: %s, %d backends answered, %d of them through a failing backend\n", r.summary(), len(r.hits), failing)
	fmt.Fprintf(d.out, "  backends saw source %s, SNI %s (the client's own TLS, through the tunnel)\n", keys(r.sources), keys(r.snis))
	d.check(r.ok == 20 && len(r.hits) >= 10, "every tunnel succeeded, spread over %d backends (want ≥ 10)", len(r.hits))
	d.check(r.ok > 0 && onlyKey(demoEgress, r.sources), "backends saw the egress address %s", demoEgress)
	return nil
}

// gatewayClient returns an HTTPS client that reaches the gateway door: whatever the URL's host,
// it connects to the proxy's TLS listener, with SNI and Host from the URL.
func (d *demo) gatewayClient(h2 bool) (*http.Client, func()) {
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "tcp", d.tlsAddr)
		},
		TLSClientConfig:     &gotls.Config{RootCAs: d.proxyRoots},
		ForceAttemptHTTP2:   h2,
		MaxIdleConnsPerHost: 16,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *gotls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}, tr.CloseIdleConnections
}

// get sends one GET and decodes the fleet backend's reply.
func (d *demo) get(c *http.Client, target string) (reply demoReply, clientProto string, err error) {
	resp, err := c.Get(target)
	if err != nil {
		return reply, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return reply, resp.Proto, fmt.Errorf("%s: %s", resp.Status, firstLine(strings.TrimSpace(string(b))))
	}
	if err := json.Unmarshal(b, &reply); err != nil {
		return reply, resp.Proto, fmt.Errorf("not a fleet reply: %w", err)
	}
	return reply, resp.Proto, nil
}

// demoLoad is what a batch of requests saw.
type demoLoad struct {
	n, ok    int
	clientH2 int
	took     time.Duration
	errs     map[string]int // failure → count
	hits     map[string]int // backend → requests it answered
	sources  map[string]int // source IP each backend saw
	snis     map[string]int
	hosts    map[string]int
	protos   map[string]int // the protocol between proxy and backend
}

// load sends n GETs for target, conc at a time, and tallies the replies.
func (d *demo) load(c *http.Client, target string, n, conc int) *demoLoad {
	l := &demoLoad{n: n, errs: map[string]int{}, hits: map[string]int{}, sources: map[string]int{},
		snis: map[string]int{}, hosts: map[string]int{}, protos: map[string]int{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan struct{}, n)
	for range n {
		work <- struct{}{}
	}
	close(work)
	start := time.Now()
	for range conc {
		wg.Go(func() {
			for range work {
				reply, proto, err := d.get(c, target)
				mu.Lock()
				if err != nil {
					l.errs[err.Error()]++
				} else {
					l.ok++
					if proto == "HTTP/2.0" {
						l.clientH2++
					}
					l.hits[reply.Backend]++
					src, _, _ := net.SplitHostPort(reply.Remote)
					l.sources[src]++
					l.snis[reply.SNI]++
					l.hosts[reply.Host]++
					l.protos[reply.Proto]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	l.took = time.Since(start)
	return l
}

func (l *demoLoad) summary() string {
	s := fmt.Sprintf("%d/%d ok (%.1f%%) in %.2fs", l.ok, l.n, 100*float64(l.ok)/float64(l.n), l.took.Seconds())
	if len(l.errs) > 0 {
		worst, count := "", 0
		for e, c := range l.errs {
			if c > count || (c == count && e < worst) {
				worst, count = e, c
			}
		}
		s += fmt.Sprintf("; most common failure (%d×): %s", count, worst)
	}
	return s
}

// keys lists the distinct keys of the tallies, sorted.
func keys(tallies ...map[string]int) string {
	var ks []string
	for _, t := range tallies {
		for k := range t {
			if !slices.Contains(ks, k) {
				ks = append(ks, k)
			}
		}
	}
	slices.Sort(ks)
	if len(ks) == 0 {
		return "(nothing)"
	}
	return strings.Join(ks, ", ")
}

// onlyKey says whether every tally holds want and nothing else (empty tallies are fine).
func onlyKey(want string, tallies ...map[string]int) bool {
	for _, t := range tallies {
		for k := range t {
			if k != want {
				return false
			}
		}
	}
	return true
}

func traceString(trace []int) string {
	const most = 14
	parts := make([]string, 0, most+1)
	for i, v := range trace {
		if len(trace) > most && i == most/2 {
			parts = append(parts, "…")
		}
		if len(trace) <= most || i < most/2 || i >= len(trace)-most/2 {
			parts = append(parts, strconv.Itoa(v))
		}
	}
	return strings.Join(parts, " → ")
}

// demoMetrics is one scrape of the proxy's /metrics: series ("name{labels}") → value.
type demoMetrics map[string]float64

var metricLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$`)

// metrics scrapes the admin listener; a failed scrape is empty (the checks then fail).
func (d *demo) metrics() demoMetrics {
	m := demoMetrics{}
	resp, err := http.Get(d.metricsURL)
	if err != nil {
		return m
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if p := metricLine.FindStringSubmatch(sc.Text()); p != nil {
			if v, err := strconv.ParseFloat(p[3], 64); err == nil {
				m[p[1]+p[2]] = v
			}
		}
	}
	return m
}

func (d *demo) metric(name string, labels ...string) float64 { return d.metrics().sum(name, labels...) }

// sum adds the samples of name whose labels contain every one of labels.
func (m demoMetrics) sum(name string, labels ...string) float64 {
	var total float64
	for series, v := range m {
		n, l, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		ok := true
		for _, want := range labels {
			ok = ok && strings.Contains(l, want)
		}
		if ok {
			total += v
		}
	}
	return total
}

// counterDelta is how much each series of a counter grew between two scrapes.
type counterDelta struct {
	total  float64
	series map[string]float64 // labels → growth
}

func (m demoMetrics) delta(before demoMetrics, name string) counterDelta {
	d := counterDelta{series: map[string]float64{}}
	for series, v := range m {
		n, l, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		if g := v - before[series]; g > 0 {
			d.series["{"+l] = g
			d.total += g
		}
	}
	return d
}

func (c counterDelta) String() string {
	if c.total == 0 {
		return "none"
	}
	var parts []string
	for l, g := range c.series {
		parts = append(parts, fmt.Sprintf("%.0f %s", g, l))
	}
	slices.Sort(parts)
	return fmt.Sprintf("%.0f (%s)", c.total, strings.Join(parts, ", "))
}
