package main

import (
	"context"
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
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
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
