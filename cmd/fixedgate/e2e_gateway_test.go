package main

import (
	"bufio"
	gotls "crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const gwHost = "gw.test"

// startGateway starts the proxy with one route gw.test → https://fleet.test:PORT (and, when
// given, more YAML at the top level, and more keys of the route) and the fleet's network exempt
// from the SSRF guard.
func startGateway(t *testing.T, f *fixture, fl *fleet, minTTL string, extra string, routeExtra ...string) *proc {
	t.Helper()
	return startGatewayEdit(t, f, fl, minTTL, extra, nil, routeExtra...)
}

// startGatewayEdit is startGateway with edit, if set, applied to the config text last.
func startGatewayEdit(t *testing.T, f *fixture, fl *fleet, minTTL string, extra string, edit func(string) string, routeExtra ...string) *proc {
	t.Helper()
	plain, tlsPort, admin := freePort(t, ingressIP), freePort(t, ingressIP), freePort(t, ingressIP)
	caDir := t.TempDir()
	route := fmt.Sprintf("host: %s, upstream: \"https://%s:%d\"", gwHost, fleetName, fl.port)
	for _, e := range routeExtra {
		route += ", " + e
	}
	if !strings.Contains(extra, "limits:") {
		// The load in these tests comes from one client address, far above one customer's pace
		// (limits.per_client's defaults); the per-address limit has its own test.
		extra += "limits: {per_client: {rate: 1000000, burst: 1000000, max_requests_in_flight: 100000}}\n"
	}
	cfg := f.config(plain, tlsPort, admin, caDir, fmt.Sprintf(`routes:
  - {%s}
health:
  outlier: {consecutive_failures: 3, base_ejection: 30s}
%s`, route, extra))
	cfg = strings.Replace(cfg, "allow_networks: [", "allow_networks: [127.0.1.0/24, ", 1)
	cfg = strings.Replace(cfg, "  allow:\n", fmt.Sprintf("  allow:\n    - {host: %s, ports: [%d]}\n", fleetName, fl.port), 1)
	cfg = strings.Replace(cfg, "resolver:\n", "resolver:\n  min_ttl: "+minTTL+"\n", 1)
	cfg = strings.Replace(cfg, "upstream_tls:\n  ca_file: "+strconv.Quote(f.origin.caFile), "upstream_tls:\n  ca_file: "+strconv.Quote(fl.caFile), 1)
	if edit != nil {
		cfg = edit(cfg)
	}
	p := startBinary(t, cfg)
	p.caFile = caDir + "/ca.crt"
	p.plain = fmt.Sprintf("%s:%d", ingressIP, plain)
	p.tlsAddr = fmt.Sprintf("%s:%d", ingressIP, tlsPort)
	p.admin = fmt.Sprintf("%s:%d", ingressIP, admin)
	p.waitReady()
	return p
}

// metric returns the sum of the samples of name whose labels contain every labels substring.
func metric(t *testing.T, p *proc, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? (\S+)$`)
	for sc.Scan() {
		m := re.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(m[1], l)
		}
		if v, err := strconv.ParseFloat(m[2], 64); ok && err == nil {
			sum += v
		}
	}
	return sum
}

// waitMetric polls /metrics until cond holds, for at most d.
func waitMetric(t *testing.T, p *proc, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s never happened", d, what)
		}
		time.Sleep(100 * time.Millisecond) // polling an outside process's metrics; no signal exists
	}
}

// spread sends n GETs (conc at a time) and returns the hits per backend and the failures.
func spread(t *testing.T, c *http.Client, n, conc int) (map[string]int, []error) {
	t.Helper()
	var mu sync.Mutex
	hits := map[string]int{}
	var errs []error
	var wg sync.WaitGroup
	work := make(chan struct{}, n)
	for range n {
		work <- struct{}{}
	}
	close(work)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				r, _, err := getReply(c, "https://"+gwHost+"/")
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					hits[r.Backend]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return hits, errs
}

func TestGatewayReencryptsToFleet(t *testing.T) {
	for _, h1 := range []bool{false, true} {
		t.Run(map[bool]string{false: "h2 backends", true: "HTTP/1.1 backends"}[h1], func(t *testing.T) { testReencrypts(t, h1) })
	}
}

func testReencrypts(t *testing.T, h1Only bool) {
	f := newFixture(t)
	fl := startFleet(t, 40, h1Only)
	f.dns.Set(fleetName, 60, fl.addrs(0, 40)...)
	p := startGateway(t, f, fl, "5s", "")

	c := gatewayClient(t, p, false)
	req, _ := http.NewRequest("GET", "https://"+gwHost+"/", nil)
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	req.Header.Set("Proxy-Authorization", "Basic c2VjcmV0")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var first backendReply
	if b := body(t, resp); resp.StatusCode != 200 {
		t.Fatalf("first request: %d %s", resp.StatusCode, b)
	} else if err := json.Unmarshal([]byte(b), &first); err != nil {
		t.Fatal(err)
	}
	wantAuthority := fmt.Sprintf("%s:%d", fleetName, fl.port)
	switch {
	case first.SNI != fleetName:
		t.Errorf("backend saw SNI %q, want the upstream name %q", first.SNI, fleetName)
	case first.Host != wantAuthority:
		t.Errorf("backend saw Host %q, want %q", first.Host, wantAuthority)
	case !strings.HasPrefix(first.Remote, egressIP+":"):
		t.Errorf("backend saw source %s, want the egress address %s", first.Remote, egressIP)
	case first.XFF != "127.0.0.1":
		t.Errorf("X-Forwarded-For %q: a client-sent value must be replaced by the client's address", first.XFF)
	case first.XFP != "https":
		t.Errorf("X-Forwarded-Proto %q", first.XFP)
	case first.Proxy != "":
		t.Errorf("Proxy-Authorization reached the backend")
	case !h1Only && first.Proto != "HTTP/2.0":
		t.Errorf("backend spoke %s, want HTTP/2 (backends offer h2)", first.Proto)
	case h1Only && first.Proto != "HTTP/1.1":
		t.Errorf("backend spoke %s, want HTTP/1.1", first.Proto)
	}

	// Warm: 600 requests, no DNS query, spread over the fleet.
	q0 := f.dns.Queries()
	hits, errs := spread(t, c, 600, 8)
	if len(errs) > 0 {
		t.Fatalf("%d of 600 failed, first: %v", len(errs), errs[0])
	}
	if len(hits) < 30 {
		t.Errorf("600 requests reached %d of 40 backends, want >= 30: %v", len(hits), hits)
	}
	if q := f.dns.Queries() - q0; q != 0 {
		t.Errorf("%d DNS queries during 600 requests on a warm name, want 0", q)
	}

	// HTTP/2 from the client, too.
	h2 := gatewayClient(t, p, true)
	resp, err = h2.Get("https://" + gwHost + "/")
	if err != nil {
		t.Fatal(err)
	}
	if body(t, resp); resp.ProtoMajor != 2 || resp.StatusCode != 200 {
		t.Errorf("h2 client: %s %d", resp.Proto, resp.StatusCode)
	}

	// Streaming: events arrive as the backend flushes them.
	resp, err = c.Get("https://" + gwHost + "/events?wait=1")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	for i := range 3 {
		line, err := br.ReadString('\n')
		if err != nil || line != fmt.Sprintf("data: %d\n", i) {
			t.Fatalf("event %d: %q %v", i, line, err)
		}
		br.ReadString('\n')
	}
	resp.Body.Close()

	// An Upgrade (as WebSocket uses) passes through to an HTTP/1.1 backend connection.
	uc, err := gotls.Dial("tcp", p.tlsAddr, &gotls.Config{ServerName: gwHost, RootCAs: rootsWith(t, p.caFile), NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	uc.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(uc, "GET /upgrade HTTP/1.1\r\nHost: "+gwHost+"\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	ubr := bufio.NewReader(uc)
	uresp, err := http.ReadResponse(ubr, nil)
	if err != nil || uresp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", uresp, err)
	}
	io.WriteString(uc, "ping\n")
	if line, err := ubr.ReadString('\n'); line != "ping\n" {
		t.Errorf("upgraded connection echoed %q, %v", line, err)
	}

	// A Host without a route: 404 with a reason, not a proxy attempt.
	req, _ = http.NewRequest("GET", "https://"+gwHost+"/", nil)
	req.Host = "unrouted.test"
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if b := body(t, resp); resp.StatusCode != 404 || !strings.Contains(b, "no route for unrouted.test") {
		t.Errorf("unrouted host: %d %q", resp.StatusCode, b)
	}

	resp, err = http.Get("http://" + p.admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	if b := body(t, resp); resp.StatusCode != 200 {
		t.Errorf("readyz: %d %s", resp.StatusCode, b)
	}
}

func TestGatewayFollowsDNS(t *testing.T) {
	f := newFixture(t)
	fl := startFleet(t, 40)
	f.dns.SetRotating(fleetName, 1, 10, fl.addrs(0, 40)...)
	p := startGateway(t, f, fl, "1s", "")
	c := gatewayClient(t, p, false)
	fleetSize := func() float64 { return metric(t, p, "fixedgate_dns_fleet_size", `name="`+fleetName+`"`) }

	// Rotating subsets of 10: the fleet is the union of what the answers showed within TTL.
	if _, _, err := getReply(c, "https://"+gwHost+"/"); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, p, 30*time.Second, "fleet grows to >= 30 from rotating subsets of 10", func() bool { return fleetSize() >= 30 })
	hits, errs := spread(t, c, 600, 8)
	if len(errs) > 0 {
		t.Fatalf("%d of 600 failed, first: %v", len(errs), errs[0])
	}
	if len(hits) < 30 {
		t.Errorf("rotating subsets: 600 requests reached %d of 40 backends, want >= 30", len(hits))
	}

	// The fleet shrinks to 20: the others leave once their TTL has passed.
	f.dns.Set(fleetName, 1, fl.addrs(0, 20)...)
	waitMetric(t, p, 30*time.Second, "fleet shrinks to 20", func() bool { return fleetSize() == 20 })
	hits, errs = spread(t, c, 200, 8)
	if len(errs) > 0 {
		t.Fatalf("%d of 200 failed after shrinking, first: %v", len(errs), errs[0])
	}
	for b := range hits {
		if a := netip.MustParseAddr(b); a.As4()[3] > 20 {
			t.Errorf("request went to %s, which left the fleet", b)
		}
	}
	// Pooled connections to the backends that left are closed once idle.
	waitMetric(t, p, 30*time.Second, "connections to removed backends closed", func() bool {
		for _, b := range fl.backends[20:] {
			if b.open.Load() != 0 {
				return false
			}
		}
		return true
	})

	// DNS fails for longer than a refresh: requests are served from the last good fleet.
	f.dns.SetRcode(fleetName, dns.RcodeServerFailure)
	waitMetric(t, p, 30*time.Second, "a failed refresh", func() bool {
		return metric(t, p, "fixedgate_dns_queries_total", `result="servfail"`) >= 2
	})
	_, errs = spread(t, c, 100, 4)
	if len(errs) > 0 {
		t.Fatalf("with SERVFAIL, %d of 100 failed (want stale answers), first: %v", len(errs), errs[0])
	}
	if metric(t, p, "fixedgate_dns_cache_total", `result="stale"`) == 0 && metric(t, p, "fixedgate_dns_fleet_size", `name="`+fleetName+`"`) != 20 {
		t.Errorf("no stale answer counted while DNS fails")
	}
}

func TestGatewayBackendFailures(t *testing.T) {
	for _, h1 := range []bool{false, true} {
		t.Run(map[bool]string{false: "h2 backends", true: "HTTP/1.1 backends"}[h1], func(t *testing.T) { testBackendFailures(t, h1) })
	}
}

func testBackendFailures(t *testing.T, h1Only bool) {
	f := newFixture(t)
	fl := startFleet(t, 10, h1Only)
	f.dns.Set(fleetName, 60, fl.addrs(0, 10)...)
	p := startGateway(t, f, fl, "5s", "")
	c := gatewayClient(t, p, false)

	// One backend down: idempotent requests are retried elsewhere; the client sees no error.
	fl.setMode(3, modeDown)
	if _, errs := spread(t, c, 300, 8); len(errs) > 0 {
		t.Fatalf("one backend down: %d of 300 failed, first: %v", len(errs), errs[0])
	}
	if r := metric(t, p, "fixedgate_gateway_retries_total", `result="retried"`); r == 0 {
		t.Errorf("no retries counted with a backend down")
	}
	fl.setMode(3, modeUp)

	// Two backends flapping (they accept, then reset every other connection).
	fl.setMode(1, modeFlap)
	fl.setMode(2, modeFlap)
	hits, errs := spread(t, c, 1000, 8)
	if ok := 1000 - len(errs); ok < 995 {
		t.Errorf("two flapping backends: %d of 1000 succeeded, want >= 99.5%%; first error: %v", ok, errs[0])
	}
	if ej := metric(t, p, "fixedgate_backend_ejections_total"); ej < 2 {
		t.Errorf("flapping backends were ejected %v times, want both ejected", ej)
	}
	flapShare := float64(hits[fl.backends[1].addr.String()]+hits[fl.backends[2].addr.String()]) / 1000
	if flapShare > 0.1 {
		t.Errorf("flapping backends answered %.1f%% of requests; they should be ejected, not preferred", flapShare*100)
	}
}

func TestGatewayAllBackendsFail(t *testing.T) {
	f := newFixture(t)
	fl := startFleet(t, 3)
	f.dns.Set(fleetName, 60, fl.addrs(0, 3)...)
	p := startGateway(t, f, fl, "5s", "")
	c := gatewayClient(t, p, false)

	for i := range fl.backends {
		fl.setMode(i, modeWrongTLS)
	}
	if _, code, err := getReply(c, "https://"+gwHost+"/"); code != 502 || err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("backends with a wrong certificate: %d %v; want 502 naming the verification failure", code, err)
	}
	for i := range fl.backends {
		fl.setMode(i, modeDown)
	}
	// Enough failures to eject every backend (3 in a row each).
	for range 3 {
		if _, code, err := getReply(c, "https://"+gwHost+"/"); code != 502 || err == nil || !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("all backends down: %d %v; want 502 naming the cause", code, err)
		}
	}
	resp, err := http.Get("http://" + p.admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	if b := body(t, resp); resp.StatusCode != 503 || !strings.Contains(b, "no healthy backend") {
		t.Errorf("readyz with every backend ejected: %d %q", resp.StatusCode, b)
	}
}

// TestConnectEjectsFlappingBackends: the forward door shares the outlier detection. A backend
// that accepts the TCP connection and then drops it is a failure even though the dial worked.
func TestConnectEjectsFlappingBackends(t *testing.T) {
	f := newFixture(t)
	fl := startFleet(t, 10)
	f.dns.Set(fleetName, 60, fl.addrs(0, 10)...)
	p := startGateway(t, f, fl, "5s", "")
	fl.setMode(1, modeFlap)
	fl.setMode(2, modeFlap)
	cfgAllow := fmt.Sprintf("http://%s:%s@%s", testUser, testKey, p.plain)
	c := goClient(t, cfgAllow, rootsWith(t, fl.caFile))
	c.Transport.(*http.Transport).DisableKeepAlives = true // one tunnel per request
	failed := 0
	for range 300 {
		resp, err := c.Get(fmt.Sprintf("https://%s:%d/", fleetName, fl.port))
		if err != nil {
			failed++
			continue
		}
		body(t, resp)
	}
	if ej := metric(t, p, "fixedgate_backend_ejections_total"); ej < 2 {
		t.Errorf("flapping backends behind CONNECT were ejected %v times, want both", ej)
	}
	// Each flapping backend costs the failed tunnels it takes to detect it (the client's own
	// TLS runs end to end, so a tunnel cannot be retried); after that it gets no new tunnels.
	t.Logf("%d of 300 tunnels failed", failed)
	if failed > 30 {
		t.Errorf("%d of 300 tunnels failed; flapping backends were not avoided", failed)
	}
}

// TestGatewayActiveCheck: with a route check, a dead backend is ejected without any customer
// request finding it first.
func TestGatewayActiveCheck(t *testing.T) {
	f := newFixture(t)
	fl := startFleet(t, 4)
	f.dns.Set(fleetName, 60, fl.addrs(0, 4)...)
	fl.setMode(2, modeDown)
	p2 := startGateway(t, f, fl, "5s", "", "check: {path: /healthz, interval: 1s, timeout: 1s}")
	waitMetric(t, p2, 30*time.Second, "the dead backend ejected by active checks", func() bool {
		return metric(t, p2, "fixedgate_backends_ejected") == 1
	})
	if hits := fl.backends[0].hits.Load() + fl.backends[1].hits.Load() + fl.backends[3].hits.Load(); hits == 0 {
		t.Errorf("no check reached the healthy backends")
	}
	if n := metric(t, p2, "fixedgate_requests_total", `door="gateway"`); n != 0 {
		t.Errorf("%v gateway requests counted; the checks must not look like customer traffic", n)
	}
}
