package main

// The demo's gateway door: steady traffic over HTTP/1.1 and HTTP/2 while the fleet changes
// and fails, and the tallies of where it went.

import (
	"context"
	gotls "crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

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
