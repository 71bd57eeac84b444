package main

// The soak: steady mixed load through every door of the real binary while faults run on a
// schedule, with a report per interval and a pass rule at the end. It runs only when
// FIXEDGATE_SOAK is set to a duration: .ci/run gives it 60s, bench/soak.sh 10m by default.
// Everything is on loopback; every loop ends with the soak.

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
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/fixedgate/fixedgate/ipranges"
)

// soakNewEgress is the egress address announced in the soak's contract: it goes live during
// the soak, and egressIP drains and retires.
const soakNewEgress = "127.0.0.21"

// TestSoak drives HTTP/1.1 and HTTP/2 gateway requests, CONNECT over the plain and the TLS
// listener (keep-alive tunnels and a new tunnel per request), absolute-form requests, busy
// (bulk) tunnels and idle tunnels, while backends die, flap and come back, DNS rotates subsets,
// answers SERVFAIL, shrinks and grows the fleet, the config is reloaded, an announced egress
// address goes live and the old one drains and retires, and Pebble's 30-second certificates
// renew. It fails on any failed request outside a window a fault explains, and on RSS,
// goroutines or open descriptors at the end more than 10% above their level after warm-up.
func TestSoak(t *testing.T) {
	v := os.Getenv("FIXEDGATE_SOAK")
	if v == "" {
		t.Skip("set FIXEDGATE_SOAK to a duration (at least 60s) to run the soak; bash bench/soak.sh does")
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 60*time.Second {
		t.Fatalf("FIXEDGATE_SOAK=%q: want a duration of at least 60s", v)
	}
	w := newSoakWorld(t, d)
	w.run()
}

// soakPlan is the schedule, as offsets from the start of the load: warm-up without faults,
// faults, then a clean cool-down that the end figures are taken from.
type soakPlan struct {
	total, warmup, faultsEnd, interval time.Duration
}

// planFor splits d: a sixth for warm-up (at least 20 s: the proxy's RSS is still growing in its
// first seconds under load, and the end is compared with this level), the last sixth clean.
func planFor(d time.Duration) soakPlan {
	p := soakPlan{total: d, warmup: max(d/6, 20*time.Second), faultsEnd: d - d/6, interval: 10 * time.Second}
	if d >= 5*time.Minute {
		p.interval = time.Minute
	}
	return p
}

// at is the offset of fraction f (0..1) of the fault phase.
func (p soakPlan) at(f float64) time.Duration {
	return p.warmup + time.Duration(f*float64(p.faultsEnd-p.warmup))
}

// soakFault is one scheduled fault. A failed request is explained by it when it started within
// [at-1s, at+window] on one of its doors.
type soakFault struct {
	at     time.Duration
	name   string       // for the report; empty for a second window of the same fault
	do     func() error // nil: the proxy's own clock acts (the contract's times)
	window time.Duration
	doors  []string
}

type soakWorld struct {
	t    *testing.T
	plan soakPlan
	f    *fixture
	fl   *fleet
	pb   *pebbleServer
	p    *soakProc

	cfgPath, cfg string
	roots        *x509.CertPool // Pebble's issuing root and the origin's and fleet's CAs
	switchAt     time.Time      // soakNewEgress enabled
	retireAt     time.Time      // egressIP retired
	start        time.Time      // of the load

	stats   *soakStats
	samples []soakSample
	faults  []soakFault
	printed int // report lines printed so far
}

func newSoakWorld(t *testing.T, d time.Duration) *soakWorld {
	w := &soakWorld{t: t, plan: planFor(d), f: newFixture(t)}
	w.stats = newSoakStats(w.plan)
	go func() { // the origin reports each path on a channel the soak does not read
		for range w.f.origin.received {
		}
	}()
	w.fl = startFleet(t, 12)
	w.f.dns.Set(fleetName, 1, w.fl.addrs(0, 12)...)
	w.f.dns.Set(acmeName, 60, netip.MustParseAddr(ingressIP))

	dir := os.Getenv("SOAK_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	ap := newACMEProxyPorts(t, filepath.Join(dir, "certs"))
	ap.renewCheck = "1s"
	w.pb = startPebble(t, w.f.dns.Addr, ap.tlsPort, freePort(t, ingressIP), 30*time.Second)

	// One CA bundle for the gateway's fleet and the forward door's origin.
	bundle := filepath.Join(dir, "upstream-ca.pem")
	a, _ := os.ReadFile(w.f.origin.caFile)
	b, _ := os.ReadFile(w.fl.caFile)
	writeTestFile(t, bundle, append(a, b...))
	w.roots = w.pb.issuingRoots(t)
	w.roots.AppendCertsFromPEM(a)

	// The contract: the new egress address goes live at 40% of the faults, the old one retires
	// at 70%; both announced 14 days before (writeContract backdates the announcements).
	now := time.Now()
	w.switchAt = now.Add(w.plan.at(0.40)).Truncate(time.Second)
	w.retireAt = now.Add(w.plan.at(0.70)).Truncate(time.Second)
	state := filepath.Join(dir, "ip-ranges.json")
	writeContract(t, state,
		contractEntry{cidr: ingressIP + "/32", dir: ipranges.Ingress},
		contractEntry{cidr: egressIP + "/32", dir: ipranges.Egress, retired: w.retireAt},
		contractEntry{cidr: soakNewEgress + "/32", dir: ipranges.Egress, enabled: w.switchAt},
	)

	cfg := ap.config(w.f, w.pb, w.pb.dirURL)
	cfg = strings.Replace(cfg, "egress:\n  addresses: ["+egressIP+"]", "egress:\n  addresses: ["+egressIP+", "+soakNewEgress+"]", 1)
	cfg = strings.Replace(cfg, "upstream_tls:\n  ca_file: "+strconv.Quote(w.f.origin.caFile), "upstream_tls:\n  ca_file: "+strconv.Quote(bundle), 1)
	cfg = strings.Replace(cfg, "allow_networks: [", "allow_networks: [127.0.1.0/24, ", 1)
	cfg = strings.Replace(cfg, "resolver:\n", "resolver:\n  min_ttl: 1s\n", 1)
	cfg += fmt.Sprintf(`routes:
  - {host: %s, upstream: "https://%s:%d"}
health:
  outlier: {consecutive_failures: 3, base_ejection: 5s}
ipranges: {state: %q}
# The whole load comes from one client address and one user: lift the per-customer limits.
limits: {per_client: {rate: 1000000, burst: 1000000, max_requests_in_flight: 100000, max_tunnels: 100000}}
`, acmeName, fleetName, w.fl.port, state)
	w.cfg = cfg
	w.cfgPath = filepath.Join(dir, "fixedgate.yaml")
	writeTestFile(t, w.cfgPath, []byte(cfg))
	w.p = startSoakProc(t, filepath.Join(dir, "fixedgate.log"), "serve", "--config", w.cfgPath)
	w.p.plain = fmt.Sprintf("%s:%d", ingressIP, ap.plainPort)
	w.p.tlsAddr = fmt.Sprintf("%s:%d", ingressIP, ap.tlsPort)
	w.p.admin = fmt.Sprintf("%s:%d", ingressIP, ap.adminPort)
	w.p.waitReady(t)
	w.waitCertificate()
	w.faults = w.schedule()
	return w
}

// waitCertificate waits (bounded) until the TLS listener serves Pebble's certificate.
func (w *soakWorld) waitCertificate() {
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := gotls.Dial("tcp", w.p.tlsAddr, &gotls.Config{ServerName: acmeName, RootCAs: w.roots})
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("no certificate from Pebble after 60s: %v\n%s", err, w.p.kept())
		}
		time.Sleep(200 * time.Millisecond) // certmagic's order is what is waited for; no signal reaches the test
	}
}

// schedule is the fault plan. Windows and doors are where a fault may explain failures;
// everything else must succeed.
func (w *soakWorld) schedule() []soakFault {
	p, fl, dnsS := w.plan, w.fl, w.f.dns
	all := fl.addrs(0, 12)
	setModes := func(m backendMode, idx ...int) func() error {
		return func() error {
			for _, i := range idx {
				fl.setMode(i, m)
			}
			return nil
		}
	}
	// Dead and flapping backends are retried around (a failed dial on another backend, a
	// connection dropped before the response too for these GETs) and ejected; an ejected one is
	// tried again after base_ejection. So a gateway request may still fail, rarely, while they
	// are bad (three retries in a row on bad backends, or the retry budget spent): their window
	// lasts until they come back, and every other fault must cost no request at all.
	gateway := []string{"gateway-h1", "gateway-h2"}
	back := p.at(0.30) + 5*time.Second
	return []soakFault{
		{at: p.at(0.00), name: "backends 1-3 die", do: setModes(modeDown, 0, 1, 2), window: back - p.at(0.00), doors: gateway},
		{at: p.at(0.10), name: "backends 4-5 flap", do: setModes(modeFlap, 3, 4), window: back - p.at(0.10), doors: gateway},
		{at: p.at(0.20), name: "DNS rotates subsets of 4", do: func() error { dnsS.SetRotating(fleetName, 1, 4, all...); return nil }},
		{at: p.at(0.30), name: "backends 1-5 come back", do: setModes(modeUp, 0, 1, 2, 3, 4)},
		{at: p.at(0.35), name: "DNS answers SERVFAIL", do: func() error {
			dnsS.SetRcode(fleetName, dns.RcodeServerFailure)
			dnsS.SetRcode("api.test", dns.RcodeServerFailure)
			dnsS.SetRcode("echo.test", dns.RcodeServerFailure)
			return nil
		}},
		{at: p.at(0.45), name: "DNS back; fleet shrinks to 4", do: func() error {
			dnsS.Set(fleetName, 1, all[:4]...)
			dnsS.Set("api.test", 60, netip.MustParseAddr(originIP))
			dnsS.Set("echo.test", 60, netip.MustParseAddr(originIP))
			return nil
		}},
		{at: p.at(0.55), name: "config reloaded (health, log level)", do: func() error {
			return w.reload(strings.Replace(w.cfg, "base_ejection: 5s", "base_ejection: 3s", 1))
		}},
		{at: p.at(0.60), name: "fleet grows to 12", do: func() error { dnsS.Set(fleetName, 1, all...); return nil }},
		{at: p.at(0.80), name: "config reloaded back", do: func() error { return w.reload(w.cfg) }},
	}
}

// reload writes cfg and sends SIGHUP, then waits for the log line that confirms it.
func (w *soakWorld) reload(cfg string) error {
	if err := os.WriteFile(w.cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	n := w.p.count(`"msg":"SIGHUP: config reloaded"`)
	if err := w.p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for w.p.count(`"msg":"SIGHUP: config reloaded"`) == n {
		if w.p.count(`"msg":"SIGHUP: config not reloaded`) > 0 || time.Now().After(deadline) {
			return fmt.Errorf("reload not confirmed:\n%s", w.p.kept())
		}
		time.Sleep(50 * time.Millisecond) // the log line is the signal; polled, since it comes through a pipe
	}
	return nil
}

func (w *soakWorld) run() {
	t := w.t
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w.start = time.Now()
	w.stats.retired = w.retireAt.Sub(w.start)
	end := w.start.Add(w.plan.total)
	// The contract's own transitions, at the times the document gives: the proxy acts on them.
	// At the retirement, tunnels from the old address are closed: a request in flight in one
	// fails, and an idle tunnel learns it at its next request, which fails once; each is
	// opened again from the new address. (Pooled connections are closed only once idle.)
	w.faults = append(w.faults,
		soakFault{at: w.switchAt.Sub(w.start), name: "egress " + soakNewEgress + " goes live (contract)"},
		soakFault{at: w.retireAt.Sub(w.start), name: "egress " + egressIP + " retires (contract)", window: retireSlack,
			doors: []string{"busy-tunnel", "connect-plain", "connect-plain-new", "connect-tls", "connect-tls-new"}},
		soakFault{at: w.retireAt.Sub(w.start), window: w.idleEvery() + retireSlack, doors: []string{"idle-tunnel"}},
	)
	slices.SortStableFunc(w.faults, func(a, b soakFault) int { return int(a.at - b.at) })
	var wg sync.WaitGroup
	for _, wk := range w.workers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(ctx, end, wk)
		}()
	}
	idle := w.idleTunnels(ctx, end, 16, &wg)

	p := w.plan
	fmt.Fprintf(os.Stderr, "soak: %s total, warm-up %s, faults until %s, interval %s; egress %s live at +%s, %s retired at +%s\n",
		p.total, p.warmup, p.faultsEnd, p.interval, soakNewEgress, w.switchAt.Sub(w.start).Round(time.Second), egressIP, w.retireAt.Sub(w.start).Round(time.Second))
	fmt.Fprintf(os.Stderr, "soak: %-11s %8s %8s %8s %8s %9s %10s %5s %7s  %s\n", "interval", "requests", "failed", "p50", "p99", "rss MiB", "goroutines", "fds", "tunnels", "events; egress seen")
	// The fault schedule, the sampler and the report's lines run here, on the test's goroutine.
	faultErrs := []string{}
	next := 0
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for now := time.Now(); now.Before(end); now = <-tick.C {
		for next < len(w.faults) && now.Sub(w.start) >= w.faults[next].at {
			fa := w.faults[next]
			if fa.do == nil {
				// the proxy's own clock acts
			} else if err := fa.do(); err != nil {
				faultErrs = append(faultErrs, fa.name+": "+err.Error())
			}
			if fa.name != "" {
				w.stats.event(now.Sub(w.start), fa.name)
			}
			next++
		}
		if s, err := w.sample(now); err == nil {
			w.samples = append(w.samples, s)
		} else {
			w.stats.failure(now.Sub(w.start), "admin", "metrics: "+err.Error())
		}
		// an interval's line once it is over and its last requests are in
		for ; now.Sub(w.start) >= time.Duration(w.printed+1)*w.plan.interval+2*time.Second; w.printed++ {
			w.printBin(w.printed)
		}
		select {
		case <-w.p.exited:
			t.Fatalf("fixedgate exited during the soak: %v\n%s", w.p.exitErr, w.p.kept())
		default:
		}
	}
	cancel()
	wg.Wait()
	idle.Wait()
	for _, e := range faultErrs {
		t.Errorf("fault: %s", e)
	}
	w.report()
}

// soakWorker is one door's steady load: do runs one operation, which reports the egress
// address the far end saw, if it tells.
type soakWorker struct {
	door  string
	every time.Duration
	do    func(ctx context.Context) (src string, err error)
}

func (w *soakWorld) workers() []soakWorker {
	originURL := fmt.Sprintf("https://api.test:%d/soak", w.f.origin.port)
	plainURL := fmt.Sprintf("http://api.test:%d/soak", w.f.origin.port) // upgrade_tls: re-encrypted
	gwURL := "https://" + acmeName + "/soak"
	user := url.UserPassword(testUser, testKey)
	plainProxy := &url.URL{Scheme: "http", Host: w.p.plain, User: user}
	tlsProxy := &url.URL{Scheme: "https", Host: net.JoinHostPort(acmeName, strconv.Itoa(portOf(w.t, w.p.tlsAddr))), User: user}
	toProxy := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		if strings.HasPrefix(addr, acmeName+":") {
			addr = w.p.tlsAddr
		}
		return d.DialContext(ctx, network, addr)
	}
	client := func(proxy *url.URL, h2, keepAlive bool) *http.Client {
		tr := &http.Transport{
			DialContext:         toProxy,
			TLSClientConfig:     &gotls.Config{RootCAs: w.roots},
			ForceAttemptHTTP2:   h2,
			DisableKeepAlives:   !keepAlive,
			MaxIdleConnsPerHost: 4,
		}
		if proxy != nil {
			tr.Proxy = http.ProxyURL(proxy)
		}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *gotls.Conn) http.RoundTripper{}
		}
		w.t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: 30 * time.Second}
	}
	get := func(c *http.Client, u string, src func([]byte) string) func(context.Context) (string, error) {
		return func(ctx context.Context) (string, error) {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			resp, err := c.Do(req)
			if err != nil {
				return "", err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
			if err != nil {
				return "", fmt.Errorf("read body: %w", err)
			}
			if resp.StatusCode != http.StatusOK {
				return "", fmt.Errorf("status %d: %.120s", resp.StatusCode, firstLine(strings.TrimSpace(string(b))))
			}
			return src(b), nil
		}
	}
	gwH1, gwH2 := client(nil, false, true), client(nil, true, true)
	connPlain, connPlainNew := client(plainProxy, false, true), client(plainProxy, false, false)
	connTLS, connTLSNew := client(tlsProxy, true, true), client(tlsProxy, true, false)
	return []soakWorker{
		{"gateway-h1", 10 * time.Millisecond, get(gwH1, gwURL, backendSource)},
		{"gateway-h1", 10 * time.Millisecond, get(gwH1, gwURL, backendSource)},
		{"gateway-h2", 10 * time.Millisecond, get(gwH2, gwURL, backendSource)},
		{"gateway-h2", 10 * time.Millisecond, get(gwH2, gwURL, backendSource)},
		{"connect-plain", 10 * time.Millisecond, get(connPlain, originURL, originSource)},
		{"connect-plain-new", 25 * time.Millisecond, get(connPlainNew, originURL, originSource)},
		{"connect-tls", 10 * time.Millisecond, get(connTLS, originURL, originSource)},
		{"connect-tls-new", 25 * time.Millisecond, get(connTLSNew, originURL, originSource)},
		{"absolute-form", 10 * time.Millisecond, get(connPlain, plainURL, originSource)},
		{"busy-tunnel", 100 * time.Millisecond, w.bulk},
	}
}

// loop runs wk's operation every wk.every until end (missed beats are skipped, not caught up).
func (w *soakWorld) loop(ctx context.Context, end time.Time, wk soakWorker) {
	tick := time.NewTicker(wk.every)
	defer tick.Stop()
	for time.Now().Before(end) {
		start := time.Now()
		src, err := wk.do(ctx)
		if ctx.Err() != nil {
			return // cut by the end of the soak, not a failure
		}
		w.stats.done(start.Sub(w.start), wk.door, time.Since(start), src, err)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// bulk sends 256 KiB through a new tunnel to the echo server over the plain listener and checks
// the count it answers.
func (w *soakWorld) bulk(ctx context.Context) (string, error) {
	const n = 256 << 10
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", w.p.plain)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "CONNECT echo.test:%d HTTP/1.1\r\nHost: echo.test\r\n%s\r\n\r\n", w.f.echo, authHeader())
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return "", fmt.Errorf("CONNECT: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("CONNECT: status %d", resp.StatusCode)
	}
	if _, err := c.Write(make([]byte, n)); err != nil {
		return "", fmt.Errorf("send: %w", err)
	}
	c.(*net.TCPConn).CloseWrite()
	reply, err := io.ReadAll(br)
	if err != nil {
		return "", fmt.Errorf("echo reply: %w", err)
	}
	var got int
	var src string
	if _, err := fmt.Sscanf(string(reply), "got %d bytes from %s", &got, &src); err != nil || got != n {
		return "", fmt.Errorf("echo reply %q, want %d bytes", reply, n)
	}
	return src, nil
}

// idleTunnels keeps k tunnels over the TLS listener open for the whole soak, each sending one
// request through its tunnel every few seconds; a tunnel that fails is counted and reopened.
func (w *soakWorld) idleTunnels(ctx context.Context, end time.Time, k int, wg *sync.WaitGroup) *sync.WaitGroup {
	every := w.idleEvery()
	var done sync.WaitGroup
	for i := range k {
		done.Add(1)
		go func() {
			defer done.Done()
			var tun *soakTunnel
			defer func() {
				if tun != nil {
					tun.close()
				}
			}()
			// spread the tunnels' beats over the period
			select {
			case <-ctx.Done():
				return
			case <-time.After(every * time.Duration(i) / time.Duration(k)):
			}
			for time.Now().Before(end) {
				start := time.Now()
				var err error
				if tun == nil {
					tun, err = w.openTunnel(ctx)
				}
				var src string
				if err == nil {
					src, err = tun.get()
				}
				if ctx.Err() != nil {
					return
				}
				if err != nil && tun != nil {
					tun.close()
					tun = nil
				}
				w.stats.done(start.Sub(w.start), "idle-tunnel", time.Since(start), src, err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(every):
				}
			}
		}()
	}
	return &done
}

// idleEvery is how often each idle tunnel sends a request.
func (w *soakWorld) idleEvery() time.Duration { return max(w.plan.interval/2, 5*time.Second) }

type soakTunnel struct {
	outer net.Conn
	inner *gotls.Conn
	br    *bufio.Reader
}

func (w *soakWorld) openTunnel(ctx context.Context) (*soakTunnel, error) {
	d := gotls.Dialer{Config: &gotls.Config{ServerName: acmeName, RootCAs: w.roots, NextProtos: []string{"http/1.1"}}}
	c, err := d.DialContext(ctx, "tcp", w.p.tlsAddr)
	if err != nil {
		return nil, fmt.Errorf("TLS to the proxy: %w", err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	target := fmt.Sprintf("api.test:%d", w.f.origin.port)
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n\r\n", target, target, authHeader())
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusOK {
		c.Close()
		if err == nil {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil, fmt.Errorf("CONNECT: %w", err)
	}
	c.SetDeadline(time.Time{})
	inner := gotls.Client(&bufConn{Conn: c, r: br}, &gotls.Config{ServerName: "api.test", RootCAs: w.f.origin.pool()})
	return &soakTunnel{outer: c, inner: inner, br: bufio.NewReader(inner)}, nil
}

func (tun *soakTunnel) get() (string, error) {
	tun.outer.SetDeadline(time.Now().Add(30 * time.Second))
	defer tun.outer.SetDeadline(time.Time{})
	if _, err := io.WriteString(tun.inner, "GET /idle HTTP/1.1\r\nHost: api.test\r\n\r\n"); err != nil {
		return "", fmt.Errorf("through the tunnel: %w", err)
	}
	resp, err := http.ReadResponse(tun.br, nil)
	if err != nil {
		return "", fmt.Errorf("through the tunnel: %w", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("through the tunnel: status %d %v", resp.StatusCode, err)
	}
	return originSource(b), nil
}

func (tun *soakTunnel) close() { tun.outer.Close() }

// backendSource is the source address a fleet backend saw (its JSON reply's remote).
func backendSource(b []byte) string {
	var r backendReply
	if json.Unmarshal(b, &r) != nil {
		return ""
	}
	h, _, _ := net.SplitHostPort(r.Remote)
	return h
}

// originSource is the source address the origin saw ("remote=IP:port tls=true").
func originSource(b []byte) string {
	s := string(b)
	if i := strings.Index(s, "remote="); i >= 0 {
		s = s[i+len("remote="):]
		if j := strings.IndexByte(s, ' '); j >= 0 {
			s = s[:j]
		}
		h, _, _ := net.SplitHostPort(s)
		return h
	}
	return ""
}

// soakSample is the proxy's own figures at one moment, from its admin /metrics.
type soakSample struct {
	at                   time.Duration
	rss, goroutines, fds float64
	tunnels              float64
}

func (w *soakWorld) sample(now time.Time) (soakSample, error) {
	s := soakSample{at: now.Sub(w.start)}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := c.Get("http://" + w.p.admin + "/metrics")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		switch name {
		case "process_resident_memory_bytes":
			s.rss = f
		case "go_goroutines":
			s.goroutines = f
		case "process_open_fds":
			s.fds = f
		case "fixedgate_tunnels_open":
			s.tunnels = f
		}
	}
	if s.rss == 0 || s.goroutines == 0 || s.fds == 0 {
		return s, errors.New("process_resident_memory_bytes, go_goroutines or process_open_fds missing from /metrics")
	}
	return s, sc.Err()
}

// retireSlack is how long after an egress address's retirement time a request may still have
// left from it: the proxy's timer for the transition has to fire and close what used it.
const retireSlack = 5 * time.Second

// soakStats aggregates results by interval; failures are kept one by one.
type soakStats struct {
	plan     soakPlan
	mu       sync.Mutex
	bins     []*soakBin
	failures []soakFailure
	retired  time.Duration  // egressIP's retirement, as an offset from the start of the load
	late     map[string]int // door -> requests started after retired+retireSlack answered from egressIP
	total    atomic.Int64
}

type soakBin struct {
	requests  int
	failures  map[string]int
	latencies []time.Duration
	sources   map[string]int
	events    []string
}

type soakFailure struct {
	at     time.Duration
	door   string
	reason string
}

func newSoakStats(p soakPlan) *soakStats {
	n := int((p.total + p.interval - 1) / p.interval)
	s := &soakStats{plan: p, late: map[string]int{}}
	for range n + 1 {
		s.bins = append(s.bins, &soakBin{failures: map[string]int{}, sources: map[string]int{}})
	}
	return s
}

func (s *soakStats) bin(at time.Duration) *soakBin {
	i := min(max(int(at/s.plan.interval), 0), len(s.bins)-1)
	return s.bins[i]
}

func (s *soakStats) done(at time.Duration, door string, lat time.Duration, src string, err error) {
	s.total.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.bin(at)
	b.requests++
	if err != nil {
		reason := door + ": " + soakReason(err)
		b.failures[reason]++
		s.failures = append(s.failures, soakFailure{at: at, door: door, reason: soakReason(err)})
		return
	}
	b.latencies = append(b.latencies, lat)
	if src != "" {
		b.sources[src]++
	}
	if src == egressIP && at > s.retired+retireSlack {
		s.late[door]++
	}
}

func (s *soakStats) failure(at time.Duration, door, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bin(at).failures[door+": "+reason]++
	s.failures = append(s.failures, soakFailure{at: at, door: door, reason: reason})
}

func (s *soakStats) event(at time.Duration, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.bin(at)
	b.events = append(b.events, name)
}

// soakReason shortens an error to its kind, so that failures group in the report.
func soakReason(err error) string {
	msg := err.Error()
	for _, k := range []string{"connection reset by peer", "connection refused", "EOF", "timeout", "i/o timeout", "broken pipe", "certificate"} {
		if strings.Contains(msg, k) {
			if i := strings.Index(msg, ": "); i > 0 && strings.HasPrefix(msg, "CONNECT") {
				return msg[:i] + ": " + k
			}
			return k
		}
	}
	if len(msg) > 160 {
		msg = msg[:160]
	}
	return msg
}

// report logs the table by interval and applies the pass rule.
func (w *soakWorld) report() {
	t, s, p := w.t, w.stats, w.plan
	for ; w.printed < len(s.bins); w.printed++ {
		w.printBin(w.printed)
	}
	renewals := w.p.count(`"msg":"ACME: certificate obtained","domain":"` + acmeName + `","renewal":true`)
	fmt.Fprintf(os.Stderr, "soak: %d requests; %d certificate renewals; %d failures\n", s.total.Load(), renewals, len(s.failures))

	// Pass rule 1: failures only inside the windows a fault explains.
	explainedN := 0
	defer func() {
		fmt.Fprintf(os.Stderr, "soak: %d of %d failures explained by a fault\n", explainedN, len(s.failures))
	}()
	for _, f := range s.failures {
		if !w.explained(f) {
			t.Errorf("unexplained failure at +%s on %s: %s", f.at.Round(time.Millisecond), f.door, f.reason)
		} else {
			explainedN++
		}
	}
	// Pass rule 2: the contract's switch happened, and new tunnels never left from the retired
	// address after its retirement.
	var sawNew bool
	for i, b := range s.bins {
		if time.Duration(i)*p.interval >= w.switchAt.Sub(w.start) && b.sources[soakNewEgress] > 0 {
			sawNew = true
		}
	}
	if !sawNew {
		t.Errorf("no request left from %s after its enabled time", soakNewEgress)
	}
	fmt.Fprintf(os.Stderr, "soak: requests started %s after the retirement of %s that left from it, by door: %v\n", retireSlack, egressIP, s.late)
	for door, n := range s.late {
		t.Errorf("%s: %d requests left from %s after its retirement (+%s)", door, n, egressIP, retireSlack)
	}
	if renewals == 0 {
		t.Errorf("Pebble's 30-second certificate was never renewed during the soak")
	}
	// Pass rule 3: RSS, goroutines and descriptors at the end within 10% of their level after
	// warm-up. Under steady load each moves by a few percent from second to second (RSS by
	// ±5% as the heap grows to the collector's goal and is collected), so the level after
	// warm-up is the peak of the samples in the last interval of warm-up and the level at the
	// end the median of those in the last interval: a leak shows as a median above that peak.
	base := w.level(p.warmup-min(p.interval, p.warmup/2), p.warmup, 1)
	endS := w.level(p.total-min(p.interval, (p.total-p.faultsEnd)/2), p.total, 0.5)
	fmt.Fprintf(os.Stderr, "soak: after warm-up (peak) rss %.1f MiB, %.0f goroutines, %.0f fds; at the end (median) rss %.1f MiB (%+.1f%%), %.0f goroutines (%+.1f%%), %.0f fds (%+.1f%%)\n",
		base.rss/(1<<20), base.goroutines, base.fds, endS.rss/(1<<20), growth(base.rss, endS.rss),
		endS.goroutines, growth(base.goroutines, endS.goroutines), endS.fds, growth(base.fds, endS.fds))
	for _, m := range []struct {
		name      string
		base, end float64
	}{{"RSS", base.rss, endS.rss}, {"goroutines", base.goroutines, endS.goroutines}, {"open descriptors", base.fds, endS.fds}} {
		if m.base == 0 || m.end > m.base*1.10 {
			t.Errorf("%s grew from %.0f after warm-up to %.0f at the end (more than 10%%)", m.name, m.base, m.end)
		}
	}
}

// printBin prints interval i's line of the report (once the interval is over).
func (w *soakWorld) printBin(i int) {
	s, p := w.stats, w.plan
	from, to := time.Duration(i)*p.interval, time.Duration(i+1)*p.interval
	if from >= p.total {
		return
	}
	var last soakSample
	for _, x := range w.samples {
		if x.at >= from && x.at < to {
			last = x
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.bins[i]
	nf := 0
	for _, n := range b.failures {
		nf += n
	}
	slices.Sort(b.latencies)
	fmt.Fprintf(os.Stderr, "soak: %4s-%-6s %8d %8d %8s %8s %9.1f %10.0f %5.0f %7.0f  %s; %v\n",
		fmtMin(from), fmtMin(to), b.requests, nf, pct(b.latencies, 0.50), pct(b.latencies, 0.99),
		last.rss/(1<<20), last.goroutines, last.fds, last.tunnels, strings.Join(b.events, ", "), b.sources)
	var reasons []string
	for r, n := range b.failures {
		reasons = append(reasons, fmt.Sprintf("%d× %s", n, r))
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		fmt.Fprintf(os.Stderr, "soak:              failed: %s\n", r)
	}
}

// explained reports whether a fault's window covers failure f. A request that started up to a
// second before the fault may have been in flight when it struck.
func (w *soakWorld) explained(f soakFailure) bool {
	for _, fa := range w.faults {
		if f.at >= fa.at-time.Second && f.at <= fa.at+fa.window && slices.Contains(fa.doors, f.door) {
			return true
		}
	}
	return false
}

// level is the per-figure q-quantile (0.5 the median, 1 the peak) of the samples taken in
// [from, to).
func (w *soakWorld) level(from, to time.Duration, q float64) soakSample {
	var rss, g, fds []float64
	for _, x := range w.samples {
		if x.at >= from && x.at < to {
			rss, g, fds = append(rss, x.rss), append(g, x.goroutines), append(fds, x.fds)
		}
	}
	med := func(v []float64) float64 {
		if len(v) == 0 {
			return 0
		}
		slices.Sort(v)
		return v[min(int(q*float64(len(v))), len(v)-1)]
	}
	return soakSample{rss: med(rss), goroutines: med(g), fds: med(fds)}
}

func growth(a, b float64) float64 {
	if a == 0 {
		return 0
	}
	return (b - a) / a * 100
}

func pct(sorted []time.Duration, q float64) string {
	if len(sorted) == 0 {
		return "-"
	}
	d := sorted[min(int(q*float64(len(sorted))), len(sorted)-1)]
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

func fmtMin(d time.Duration) string {
	s := int(d.Seconds())
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

// soakProc is the binary under soak. Its log goes to a file; the lines other than the
// per-request summaries are also kept in memory, for the checks (hundreds of thousands of
// summary lines would not be).
type soakProc struct {
	cmd                   *exec.Cmd
	plain, tlsAddr, admin string
	mu                    sync.Mutex
	lines                 []string
	ready, exited         chan struct{}
	exitErr               error
}

func startSoakProc(t *testing.T, logPath string, args ...string) *soakProc {
	t.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binPath, args...)
	cmd.Env = append(os.Environ(), "HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9", "NO_PROXY=")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &soakProc{cmd: cmd, ready: make(chan struct{}), exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer logFile.Close()
		lw := bufio.NewWriterSize(logFile, 64<<10)
		defer lw.Flush()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		var once sync.Once
		for sc.Scan() {
			line := sc.Text()
			lw.WriteString(line + "\n")
			if strings.Contains(line, `"msg":"request"`) {
				continue
			}
			p.mu.Lock()
			p.lines = append(p.lines, line)
			p.mu.Unlock()
			if strings.Contains(line, `"msg":"ready"`) {
				once.Do(func() { close(p.ready) })
			}
		}
		p.exitErr = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.exited:
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				<-p.exited
			}
		}
		if k := p.kept(); strings.Contains(k, "WARNING: DATA RACE") {
			t.Errorf("fixedgate reported a data race:\n%s", k)
		}
		if t.Failed() {
			t.Logf("fixedgate log without the request lines (all of it in %s):\n%s", logPath, p.kept())
		}
	})
	return p
}

func (p *soakProc) waitReady(t *testing.T) {
	t.Helper()
	select {
	case <-p.ready:
	case <-p.exited:
		t.Fatalf("fixedgate exited before ready: %v\n%s", p.exitErr, p.kept())
	case <-time.After(60 * time.Second):
		t.Fatalf("fixedgate not ready after 60s\n%s", p.kept())
	}
}

func (p *soakProc) kept() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

func (p *soakProc) count(substr string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.lines {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}
