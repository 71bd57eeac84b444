package proxy

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fixedgate/fixedgate/proxy/egress"
	"github.com/fixedgate/fixedgate/proxy/limit"
	"github.com/fixedgate/fixedgate/proxy/policy"
)

func sha(key string) string {
	s := sha256.Sum256([]byte(key))
	return hex.EncodeToString(s[:])
}

func keyOf(key string) [32]byte { return sha256.Sum256([]byte(key)) }

// TestSettingsRefuses: which open tunnels a reload's new settings close, and which they keep.
func TestSettingsRefuses(t *testing.T) {
	mk := func(users []User, allow []policy.AllowRule, nets ...string) *settings {
		t.Helper()
		var an []netip.Prefix
		for _, n := range nets {
			an = append(an, netip.MustParsePrefix(n))
		}
		st, err := newSettings(Options{Forward: ForwardConfig{Users: users, Allow: allow, AllowNetworks: an}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	alice, bob := User{Name: "alice", KeySHA256: sha("a-key")}, User{Name: "bob", KeySHA256: sha("b-key")}
	apiRule := policy.AllowRule{Host: "*.api.test", Ports: []int{443}}
	tunnel := func(p principal, host string, dialed string) *tunnelEntry {
		return &tunnelEntry{principal: p, target: policy.Target{Host: host, Port: 443}, dialed: netip.MustParseAddrPort(dialed)}
	}
	// Addresses here are data for the policy; nothing is dialled.
	aliceTunnel := tunnel(principal{user: "alice", key: keyOf("a-key")}, "x.api.test", "9.9.9.9:443")
	for _, tc := range []struct {
		name string
		st   *settings
		t    *tunnelEntry
		want string // "" keeps the tunnel; else a part of the reason
	}{
		{"same user, same key, still allowed", mk([]User{alice, bob}, []policy.AllowRule{apiRule}), aliceTunnel, ""},
		{"user removed", mk([]User{bob}, []policy.AllowRule{apiRule}), aliceTunnel, "user alice was removed or its key changed"},
		{"key rotated", mk([]User{{Name: "alice", KeySHA256: sha("new")}}, []policy.AllowRule{apiRule}), aliceTunnel, "key changed"},
		{"users removed entirely: no credentials needed", mk(nil, []policy.AllowRule{apiRule}), aliceTunnel, ""},
		{"anonymous tunnel, users now required", mk([]User{alice}, []policy.AllowRule{apiRule}), tunnel(principal{}, "x.api.test", "9.9.9.9:443"), "credentials are now required"},
		{"certificate subject still listed", mk([]User{alice}, []policy.AllowRule{apiRule}), tunnel(principal{user: "alice", viaCert: true}, "x.api.test", "9.9.9.9:443"), ""},
		{"certificate subject no longer listed", mk([]User{bob}, []policy.AllowRule{apiRule}), tunnel(principal{user: "alice", viaCert: true}, "x.api.test", "9.9.9.9:443"), "no longer in forward.users"},
		{"allow rule removed", mk([]User{alice}, []policy.AllowRule{{Host: "other.test"}}), aliceTunnel, "matches no forward.allow rule"},
		{"port no longer allowed", mk([]User{alice}, []policy.AllowRule{{Host: "*.api.test", Ports: []int{8443}}}), aliceTunnel, "port 443"},
		{"dialed address in a network no longer exempt", mk([]User{alice}, []policy.AllowRule{apiRule}),
			tunnel(principal{user: "alice", key: keyOf("a-key")}, "x.api.test", "10.1.2.3:443"), "denied network"},
		{"dialed address exempt by allow_networks", mk([]User{alice}, []policy.AllowRule{apiRule}, "10.0.0.0/8"),
			tunnel(principal{user: "alice", key: keyOf("a-key")}, "x.api.test", "10.1.2.3:443"), ""},
	} {
		got := tc.st.refuses(tc.t)
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("%s: refuses = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestTunnelsRevoke: revoke closes exactly the refused tunnels, once, and a tunnel added under
// older settings is checked against the current ones as it is added.
func TestTunnelsRevoke(t *testing.T) {
	keep, err := newSettings(Options{Forward: ForwardConfig{Allow: []policy.AllowRule{{Host: "a.test"}, {Host: "b.test"}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	onlyA, err := newSettings(Options{Forward: ForwardConfig{Allow: []policy.AllowRule{{Host: "a.test"}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	closed := map[string]int{}
	entry := func(host string) *tunnelEntry {
		e := &tunnelEntry{target: policy.Target{Host: host, Port: 443}, dialed: netip.MustParseAddrPort("9.9.9.9:443"), st: keep}
		e.close = func() { closed[host]++ }
		return e
	}
	var ts tunnels
	a, b := entry("a.test"), entry("b.test")
	ts.add(a, keep)
	ts.add(b, keep)
	if n := ts.revoke(onlyA); n != 1 || closed["b.test"] != 1 || closed["a.test"] != 0 {
		t.Fatalf("revoke closed %d (%v), want b.test only", n, closed)
	}
	if n := ts.revoke(onlyA); n != 0 || closed["b.test"] != 1 {
		t.Fatalf("a second revoke closed again: %d (%v)", n, closed)
	}
	if why := b.revoked.Load(); why == nil || !strings.Contains(why.msg, "b.test") || why.reason != "policy_reload" {
		t.Fatalf("revoked reason %v", why)
	}
	late := entry("b.test") // allowed under keep, added after onlyA is in force
	ts.add(late, onlyA)
	if closed["b.test"] != 2 || late.revoked.Load() == nil {
		t.Fatalf("a tunnel added under older settings slipped past the reload: %v", closed)
	}
	ts.done(a)
	ts.done(b)
	ts.done(late)
}

// TestTunnelsCloseFrom: the contract's retirement of an egress address closes the tunnels that
// leave from it, once, with reason egress_retired, and no other tunnel.
func TestTunnelsCloseFrom(t *testing.T) {
	old, cur := netip.MustParseAddr("192.0.2.20"), netip.MustParseAddr("192.0.2.21")
	closed := map[netip.Addr]int{}
	entry := func(src netip.Addr) *tunnelEntry {
		e := &tunnelEntry{src: src, dialed: netip.MustParseAddrPort("198.51.100.1:443")}
		e.close = func() { closed[src]++ }
		return e
	}
	var ts tunnels
	a, b, c := entry(old), entry(cur), entry(netip.Addr{}) // c: source unknown
	for _, e := range []*tunnelEntry{a, b, c} {
		ts.add(e, nil)
	}
	if n := ts.closeFrom([]netip.Addr{old}); n != 1 || closed[old] != 1 || closed[cur] != 0 || closed[netip.Addr{}] != 0 {
		t.Fatalf("closeFrom closed %d (%v), want the tunnel from %s only", n, closed, old)
	}
	if n := ts.closeFrom([]netip.Addr{old}); n != 0 || closed[old] != 1 {
		t.Fatalf("a second closeFrom closed again: %d (%v)", n, closed)
	}
	if rv := a.revoked.Load(); rv == nil || rv.reason != "egress_retired" || !strings.Contains(rv.msg, old.String()) {
		t.Fatalf("revocation %+v", rv)
	}
	for _, e := range []*tunnelEntry{a, b, c} {
		ts.done(e)
	}
}

func TestSameUpstreamTLS(t *testing.T) {
	p1, p2 := x509.NewCertPool(), x509.NewCertPool()
	ca := selfSignedForTest(t)
	p1.AddCert(ca)
	p2.AddCert(ca)
	other := x509.NewCertPool()
	other.AddCert(selfSignedForTest(t))
	for _, tc := range []struct {
		name string
		a, b *tls.Config
		want bool
	}{
		{"both nil", nil, nil, true},
		{"equal pools", &tls.Config{RootCAs: p1}, &tls.Config{RootCAs: p2}, true},
		{"other CA", &tls.Config{RootCAs: p1}, &tls.Config{RootCAs: other}, false},
		{"system roots and a file", &tls.Config{}, &tls.Config{RootCAs: p1}, false},
		{"min version", &tls.Config{MinVersion: tls.VersionTLS12}, &tls.Config{MinVersion: tls.VersionTLS13}, false},
		{"client certificate added", &tls.Config{}, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{{1}}}}}, false},
		{"same client certificate", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{{1}}}}}, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{{1}}}}}, true},
	} {
		if got := sameUpstreamTLS(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// selfSignedForTest returns a fresh self-signed CA certificate.
func selfSignedForTest(t *testing.T) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestReconfigureLimitsNewConnections: new limits apply to connections accepted after the
// reload; a connection accepted before keeps the limits it started with.
func TestReconfigureLimitsNewConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dialer, err := egress.New(egress.Config{}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Listen: []ListenConfig{{Address: addr}}, Limits: DefaultLimits(), Egress: dialer, Resolver: &countingResolver{}}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	s.Serve()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	bigHead := "GET /x HTTP/1.1\r\nHost: nowhere.test\r\nX-Big: " + strings.Repeat("b", 8<<10) + "\r\n\r\n"
	status := func(c net.Conn, br *bufio.Reader) int {
		t.Helper()
		if _, err := io.WriteString(c, bigHead); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(20 * time.Second))
		return c, bufio.NewReader(c)
	}
	old, oldBR := dial()
	if got := status(old, oldBR); got != http.StatusNotFound {
		t.Fatalf("before the reload: %d, want 404 (no route; the 8 KiB header is within 32 KiB)", got)
	}
	opts.Limits.MaxHeaderBytes = 4096
	if err := s.Reconfigure(opts); err != nil {
		t.Fatal(err)
	}
	c, br := dial()
	if got := status(c, br); got != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("new connection after the reload: %d, want 431", got)
	}
	if got := status(old, oldBR); got != http.StatusNotFound {
		t.Fatalf("the connection from before the reload: %d, want 404 under its own limits", got)
	}
}

// TestClientLimits: a user's own limits replace limits.per_client key by key; everyone else
// (other users, clients without credentials) gets limits.per_client.
func TestClientLimits(t *testing.T) {
	per := limit.Config{MaxTunnels: 10, MaxRequestsInFlight: 20, Rate: 5, Burst: 7}
	st, err := newSettings(Options{
		Limits: Limits{PerClient: per},
		Forward: ForwardConfig{Users: []User{
			{Name: "big", KeySHA256: sha("b"), Limits: limit.Config{MaxTunnels: 500, Rate: 50}},
			{Name: "plain", KeySHA256: sha("p")},
		}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for user, want := range map[string]limit.Config{
		"big":   {MaxTunnels: 500, MaxRequestsInFlight: 20, Rate: 50, Burst: 7},
		"plain": per,
		"-":     per,
		"gone":  per,
	} {
		if got := st.clientLimits(user); got != want {
			t.Errorf("clientLimits(%q) = %+v, want %+v", user, got, want)
		}
	}
	// Only the connection servers' limits decide whether a reload rebuilds them.
	a, b := DefaultLimits(), DefaultLimits()
	b.PerClient.Rate, b.AuthFailures.Max = 1, 1
	if connLimits(a) != connLimits(b) {
		t.Error("per_client and auth_failures changes must not count as connection limit changes")
	}
	b.IdleTimeout++
	if connLimits(a) == connLimits(b) {
		t.Error("idle_timeout change not seen")
	}
}
