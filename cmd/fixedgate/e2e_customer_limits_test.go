package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// connectFrom is rawConnect from a chosen loopback source address (another client).
func connectFrom(t *testing.T, src, proxyAddr, target string, headers ...string) *http.Response {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n" + strings.Join(headers, "\r\n")
	if len(headers) > 0 {
		req += "\r\n"
	}
	io.WriteString(c, req+"\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// check429 asserts a 429 with a Retry-After of whole seconds (at least 1) and the reason.
func check429(t *testing.T, resp *http.Response, reason string) {
	t.Helper()
	b := body(t, resp)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(b, reason) {
		t.Fatalf("got %d %q, want 429 saying %q", resp.StatusCode, b, reason)
	}
	if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || n < 1 {
		t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
	}
}

// TestPerUserTunnelLimit: a user's own max_tunnels (over limits.per_client) refuses the tunnel
// beyond it with 429, counts it, logs reason=limit, and admits again once one closes.
func TestPerUserTunnelLimit(t *testing.T) {
	f := newFixture(t)
	p := f.startProxyWith(t, "", func(cfg string) string {
		return strings.Replace(cfg, "key_sha256: "+keySHA(testKey)+"}", "key_sha256: "+keySHA(testKey)+", limits: {max_tunnels: 2}}", 1)
	})
	target := fmt.Sprintf("echo.test:%d", f.echo)
	var open []net.Conn
	for range 2 {
		resp, c, _ := rawConnect(t, p.plain, target, authHeader())
		if resp.StatusCode != 200 {
			t.Fatalf("CONNECT: %d", resp.StatusCode)
		}
		open = append(open, c)
	}
	resp, _, _ := rawConnect(t, p.plain, target, authHeader())
	check429(t, resp, "too many open tunnels (limit 2)")
	if n := metric(t, p, "fixedgate_limited_total", `user="acme-corp"`, `limit="tunnels"`); n != 1 {
		t.Errorf("fixedgate_limited_total{user=acme-corp,limit=tunnels} = %v, want 1", n)
	}
	// One tunnel ends: its slot is free again.
	open[0].(*net.TCPConn).CloseWrite()
	io.ReadAll(open[0]) // the echo server answers at EOF and closes: the tunnel ends
	waitMetric(t, p, 10*time.Second, "a tunnel slot free again", func() bool {
		resp, c, _ := rawConnect(t, p.plain, target, authHeader())
		if resp.StatusCode == 200 {
			c.Close()
			return true
		}
		return false
	})
	if !strings.Contains(p.log(), `"reason":"limit"`) || !strings.Contains(p.log(), `"error":"tunnels: too many open tunnels`) {
		t.Error("no summary line with reason=limit and which limit")
	}
}

// TestRateLimit: new requests beyond rate and burst get 429 with a Retry-After.
func TestRateLimit(t *testing.T) {
	f := newFixture(t)
	p := f.startProxy(t, "limits: {per_client: {rate: 0.2, burst: 2, max_tunnels: 100, max_requests_in_flight: 100}}\n")
	target := fmt.Sprintf("api.test:%d", f.origin.port)
	for i := range 2 {
		resp, c, _ := rawConnect(t, p.plain, target, authHeader())
		if resp.StatusCode != 200 {
			t.Fatalf("CONNECT %d: %d", i, resp.StatusCode)
		}
		c.Close()
	}
	resp, _, _ := rawConnect(t, p.plain, target, authHeader())
	check429(t, resp, "too many new requests")
	if ra, _ := strconv.Atoi(resp.Header.Get("Retry-After")); ra < 1 || ra > 5 {
		t.Errorf("Retry-After %d, want at most 5 (one token at 0.2 a second)", ra)
	}
	if n := metric(t, p, "fixedgate_limited_total", `limit="rate"`); n != 1 {
		t.Errorf("fixedgate_limited_total{limit=rate} = %v", n)
	}
}

// TestAuthFailuresLimit: after limits.auth_failures.max wrong keys from one address, that
// address gets 429 even with the right key, without it being checked; the right key from
// another address still works.
func TestAuthFailuresLimit(t *testing.T) {
	f := newFixture(t)
	p := f.startProxy(t, "limits: {auth_failures: {max: 3, window: 1m}}\n")
	target := fmt.Sprintf("echo.test:%d", f.echo)
	wrong := "Proxy-Authorization: Basic " + basicAuth(testUser, "guess")
	for i := range 3 {
		if resp := connectFrom(t, "127.0.0.1", p.plain, target, wrong); resp.StatusCode != 407 {
			t.Fatalf("guess %d: %d, want 407", i, resp.StatusCode)
		}
	}
	check429(t, connectFrom(t, "127.0.0.1", p.plain, target, authHeader()), "too many failed authentications from your address")
	if resp := connectFrom(t, "127.0.0.2", p.plain, target, authHeader()); resp.StatusCode != 200 {
		t.Fatalf("the right key from another address: %d, want 200", resp.StatusCode)
	}
	if n := metric(t, p, "fixedgate_limited_total", `user="-"`, `limit="auth_failures"`); n != 1 {
		t.Errorf("fixedgate_limited_total{user=-,limit=auth_failures} = %v, want 1", n)
	}
	// A client that sends no credentials at first (the 407 challenge) is not counted as guessing.
	for range 5 {
		connectFrom(t, "127.0.0.3", p.plain, target)
	}
	if resp := connectFrom(t, "127.0.0.3", p.plain, target, authHeader()); resp.StatusCode != 200 {
		t.Fatalf("after 5 challenges without credentials: %d, want 200", resp.StatusCode)
	}
}

// TestGatewayPerAddressLimit: gateway requests count per client address.
func TestGatewayPerAddressLimit(t *testing.T) {
	f := newFixture(t)
	fl := startFleet(t, 1)
	f.dns.Set(fleetName, 60, fl.addrs(0, 1)...)
	p := startGateway(t, f, fl, "5s", "limits: {per_client: {rate: 0.1, burst: 3, max_tunnels: 100, max_requests_in_flight: 100}}\n")
	c := gatewayClient(t, p, false)
	codes := map[int]int{}
	for range 5 {
		_, code, _ := getReply(c, "https://"+gwHost+"/")
		codes[code]++
	}
	if codes[200] != 3 || codes[429] != 2 {
		t.Fatalf("statuses %v, want 3 x 200 (the burst) and 2 x 429", codes)
	}
}
