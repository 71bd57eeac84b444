package main

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fixedgate/fixedgate/proxy"
	"github.com/fixedgate/fixedgate/proxy/policy"
	fgtls "github.com/fixedgate/fixedgate/tls"
)

// TestRestartOnly: which changed keys a reload refuses (a restart is needed), and which it applies.
func TestRestartOnly(t *testing.T) {
	base := func() *Config {
		c := defaultConfig()
		c.Listen = []proxy.ListenConfig{{Address: "127.0.0.10:3128"}, {Address: "127.0.0.10:3129", TLS: true}}
		c.TLS.SelfSigned = &fgtls.SelfSignedConfig{Dir: "/tmp/x"}
		c.Routes = []proxy.RouteConfig{{Host: "gw.test", Upstream: "https://fleet.test"}}
		return &c
	}
	for _, tc := range []struct {
		name string
		edit func(c *Config)
		want []string
	}{
		{"nothing", func(c *Config) {}, nil},
		{"forward, routes, limits, log.level: live", func(c *Config) {
			c.Forward.Allow = append(c.Forward.Allow, policy.AllowRule{Host: "a.test"})
			c.Routes = append(c.Routes, proxy.RouteConfig{Host: "gw.test", PathPrefix: "/v2", Upstream: "https://other.test"})
			c.Limits.IdleTimeout = time.Minute
			c.Log.Level = "warn"
			c.ShutdownGrace = time.Second
		}, nil},
		{"a listener", func(c *Config) { c.Listen[0].Address = "127.0.0.11:3128" }, []string{"listen"}},
		{"admin and egress", func(c *Config) {
			c.Admin.Listen = "127.0.0.1:9999"
			c.Egress.Addresses = []netip.Addr{netip.MustParseAddr("127.0.0.21")}
		}, []string{"egress", "admin"}},
		{"log format", func(c *Config) { c.Log.Format = "console" }, []string{"log.format"}},
		{"a route with a new host (a self-signed certificate is issued anew)", func(c *Config) {
			c.Routes = append(c.Routes, proxy.RouteConfig{Host: "new.test", Upstream: "https://fleet.test"})
		}, nil},
	} {
		cur, next := base(), base()
		tc.edit(next)
		if got := restartOnly(cur, next); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestChangedSections(t *testing.T) {
	a, b := defaultConfig(), defaultConfig()
	b.Forward.Allow = []policy.AllowRule{{Host: "a.test"}}
	b.Log.Level = "debug"
	if got := strings.Join(changedSections(&a, &b), ","); got != "forward,log" {
		t.Errorf("changed %q, want forward,log", got)
	}
}
