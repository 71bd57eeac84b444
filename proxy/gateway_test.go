package proxy

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
)

// countingResolver counts lookups: an IP-literal upstream must never reach DNS.
type countingResolver struct{ n int }

func (r *countingResolver) LookupNetIP(context.Context, string) ([]netip.Addr, error) {
	r.n++
	return nil, errors.New("no DNS in this test")
}

func TestRouteFleet(t *testing.T) {
	for _, tc := range []struct {
		upstream  string
		fleet     []netip.Addr // nil: resolved by name
		authority string
	}{
		{"https://127.0.1.5:8443", []netip.Addr{netip.MustParseAddr("127.0.1.5")}, "127.0.1.5:8443"},
		{"https://[::1]", []netip.Addr{netip.MustParseAddr("::1")}, "[::1]"},
		{"https://api.example.test", nil, "api.example.test"},
	} {
		g, err := newGateway([]RouteConfig{{Host: "gw.test", Upstream: tc.upstream}})
		if err != nil {
			t.Fatal(err)
		}
		rt := g.routes[0]
		res := &countingResolver{}
		s := &Server{resolver: res}
		a, errA := s.routeFleet(context.Background(), rt)
		b, _ := s.routeFleet(context.Background(), rt)
		if rt.authority != tc.authority {
			t.Errorf("%s: authority %q, want %q", tc.upstream, rt.authority, tc.authority)
		}
		if tc.fleet == nil {
			if res.n != 2 || errA == nil {
				t.Errorf("%s: %d lookups (err %v), want 2 failing ones", tc.upstream, res.n, errA)
			}
			continue
		}
		if res.n != 0 || errA != nil || !slices.Equal(a, tc.fleet) {
			t.Errorf("%s: fleet %v (err %v) after %d lookups, want %v and none", tc.upstream, a, errA, res.n, tc.fleet)
		}
		// The same slice every time, so the SSRF-guarded view of it is computed once.
		if !sameSlice(a, b) {
			t.Errorf("%s: a new fleet slice per call", tc.upstream)
		}
	}
}

func TestHostWithoutPort(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"gw.example", "gw.example"},
		{"gw.example:8443", "gw.example"},
		{"gw.example:", "gw.example"},
		{"192.0.2.1:80", "192.0.2.1"},
		{"[2001:db8::1]:443", "2001:db8::1"},
		{"[2001:db8::1]", "2001:db8::1"},
		{"2001:db8::1", "2001:db8::1"},
		{"", ""},
	} {
		if got := hostWithoutPort(tc.in); got != tc.want {
			t.Errorf("hostWithoutPort(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { hostWithoutPort("gw.example") }); n != 0 {
		t.Errorf("hostWithoutPort allocates %v times", n)
	}
}
