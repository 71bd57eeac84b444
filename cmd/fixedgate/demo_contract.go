package main

// The demo's contract door: /ip-ranges.json as a firewall team polls it.

import (
	gotls "crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"time"

	"github.com/fixedgate/fixedgate/ipranges"
)

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
