package resolver

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/fixedgate/fixedgate/proxy/resolver/dnstest"
)

func TestLookupNetIP(t *testing.T) {
	srv, err := dnstest.Start("127.0.0.53")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.Set("dual.test", 30, netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("192.0.2.1"))
	srv.SetRcode("broken.test", dns.RcodeServerFailure)
	cfg := Defaults()
	cfg.Servers = []string{srv.Addr}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	got, err := r.LookupNetIP(ctx, "dual.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != netip.MustParseAddr("192.0.2.1") || got[1] != netip.MustParseAddr("2001:db8::1") {
		t.Errorf("dual.test = %v, want IPv4 first then IPv6", got)
	}
	if _, err := r.LookupNetIP(ctx, "missing.test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing.test: %v, want ErrNotFound", err)
	}
	if _, err := r.LookupNetIP(ctx, "broken.test"); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("SERVFAIL: %v, want a resolver error that is not ErrNotFound", err)
	}
	if srv.Queries() == 0 {
		t.Error("the configured server was never asked")
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.Servers = []string{"dns.example"} }, `servers[0]: "dns.example" is not an IP or IP:port`},
		{func(c *Config) { c.MinTTL = c.MaxTTL * 2 }, "min_ttl:"},
		{func(c *Config) { c.CacheSize = 0 }, "cache_size: 0"},
		{func(c *Config) { c.Timeout = 0 }, "timeout: must be positive"},
	} {
		c := Defaults()
		tc.mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate() = %v, want %q", err, tc.want)
		}
	}
	c := Defaults()
	c.Servers = []string{"127.0.0.53", "[::1]:5353"}
	if err := c.Validate(); err != nil {
		t.Errorf("valid servers refused: %v", err)
	}
}
