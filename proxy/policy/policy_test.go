package policy

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func mustNew(t *testing.T, c Config) *Policy {
	t.Helper()
	p, err := New(c)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func TestDeniedNetwork(t *testing.T) {
	tests := []struct {
		ip     string
		prefix string // empty: not denied
	}{
		{"0.0.0.0", "0.0.0.0/8"},
		{"0.1.2.3", "0.0.0.0/8"},
		{"10.0.0.5", "10.0.0.0/8"},
		{"100.64.0.1", "100.64.0.0/10"},
		{"100.127.255.255", "100.64.0.0/10"},
		{"127.0.0.1", "127.0.0.0/8"},
		{"127.255.255.254", "127.0.0.0/8"},
		{"169.254.169.254", "169.254.0.0/16"},
		{"172.16.0.1", "172.16.0.0/12"},
		{"172.31.255.255", "172.16.0.0/12"},
		{"192.0.0.8", "192.0.0.0/24"},
		{"192.0.2.1", "192.0.2.0/24"},
		{"192.31.196.1", "192.31.196.0/24"},
		{"192.52.193.1", "192.52.193.0/24"},
		{"192.88.99.1", "192.88.99.0/24"},
		{"192.168.1.1", "192.168.0.0/16"},
		{"192.175.48.1", "192.175.48.0/24"},
		{"198.18.0.1", "198.18.0.0/15"},
		{"198.19.255.255", "198.18.0.0/15"},
		{"198.51.100.7", "198.51.100.0/24"},
		{"203.0.113.9", "203.0.113.0/24"},
		{"224.0.0.1", "224.0.0.0/4"},
		{"239.255.255.250", "224.0.0.0/4"},
		{"240.0.0.1", "240.0.0.0/4"},
		{"255.255.255.255", "255.255.255.255/32"},
		{"::", "::/128"},
		{"::1", "::1/128"},
		{"::10.0.0.1", "::/96"},
		{"::8.8.8.8", "::/96"},
		{"::ffff:10.0.0.1", "10.0.0.0/8"},
		{"::ffff:127.0.0.1", "127.0.0.0/8"},
		{"::ffff:169.254.169.254", "169.254.0.0/16"},
		{"64:ff9b::a00:1", "64:ff9b::/96"},
		{"64:ff9b::808:808", "64:ff9b::/96"},
		{"64:ff9b:1::1", "64:ff9b:1::/48"},
		{"100::1", "100::/64"},
		{"2001::1", "2001::/32"},
		{"2001:2::1", "2001::/23"},
		{"2001:1ff::1", "2001::/23"},
		{"2001:db8::1", "2001:db8::/32"},
		{"2002::1", "2002::/16"},
		{"2002:a00:1::1", "2002::/16"},
		{"2620:4f:8000::1", "2620:4f:8000::/48"},
		{"3fff::1", "3fff::/20"},
		{"5f00::1", "5f00::/16"},
		{"fc00::1", "fc00::/7"},
		{"fd12:3456::1", "fc00::/7"},
		{"fe80::1", "fe80::/10"},
		{"fe80::1%eth0", "fe80::/10"},
		{"febf::1", "fe80::/10"},
		{"fec0::1", "fec0::/10"},
		{"ff02::1", "ff00::/8"},

		{"8.8.8.8", ""},
		{"1.1.1.1", ""},
		{"100.63.255.255", ""},
		{"100.128.0.0", ""},
		{"172.32.0.1", ""},
		{"198.20.0.1", ""},
		{"223.255.255.255", ""},
		{"::ffff:8.8.8.8", ""},
		{"2606:4700::1111", ""},
		{"2001:200::1", ""},
		{"2001:4860:4860::8888", ""},
		{"64:ff9c::1", ""},
	}
	for _, tt := range tests {
		ip := netip.MustParseAddr(tt.ip)
		prefix, name, ok := DeniedNetwork(ip)
		if tt.prefix == "" {
			if ok {
				t.Errorf("DeniedNetwork(%s) = %s %q; want not denied", ip, prefix, name)
			}
			continue
		}
		if !ok || prefix.String() != tt.prefix || name == "" {
			t.Errorf("DeniedNetwork(%s) = %s %q %v; want %s", ip, prefix, name, ok, tt.prefix)
		}
	}
	if _, _, ok := DeniedNetwork(netip.Addr{}); ok {
		t.Error("DeniedNetwork(zero Addr) reported a network")
	}
}

func TestCheckAddr(t *testing.T) {
	loopback := netip.MustParsePrefix("127.0.0.0/8")
	tests := []struct {
		name string
		cfg  Config
		ip   string
		port uint16
		want string // empty: allowed
	}{
		{"public IPv4", Config{}, "8.8.8.8", 443, ""},
		{"public IPv6", Config{}, "2606:4700::1111", 443, ""},
		{"mapped public", Config{}, "::ffff:8.8.8.8", 443, ""},
		{"private", Config{}, "10.0.0.5", 443, "10.0.0.5 is in a denied network (private-use 10.0.0.0/8)"},
		{"metadata", Config{}, "169.254.169.254", 80, "169.254.169.254 is in a denied network (link-local 169.254.0.0/16)"},
		{"CGNAT", Config{}, "100.64.0.1", 443, "100.64.0.1 is in a denied network"},
		{"ULA", Config{}, "fc00::1", 443, "fc00::1 is in a denied network (unique-local fc00::/7)"},
		{"link-local v6", Config{}, "fe80::1", 443, "fe80::1 is in a denied network"},
		{"zoned link-local", Config{}, "fe80::1%eth0", 443, "fe80::1 is in a denied network"},
		{"NAT64", Config{}, "64:ff9b::a00:1", 443, "is in a denied network (IPv4-IPv6 translation (NAT64) 64:ff9b::/96)"},
		{"6to4", Config{}, "2002::1", 443, "2002::1 is in a denied network (6to4 2002::/16)"},
		{"Teredo", Config{}, "2001::1", 443, "2001::1 is in a denied network (Teredo 2001::/32)"},
		{"mapped private", Config{}, "::ffff:10.0.0.1", 443, "10.0.0.1 is in a denied network (private-use 10.0.0.0/8)"},
		{"loopback", Config{}, "127.0.0.1", 443, "127.0.0.1 is in a denied network (loopback 127.0.0.0/8)"},
		{"v6 loopback", Config{}, "::1", 443, "::1 is in a denied network (loopback ::1/128)"},

		{"allow network", Config{AllowNetworks: []netip.Prefix{loopback}}, "127.0.0.1", 8080, ""},
		{"allow network mapped", Config{AllowNetworks: []netip.Prefix{loopback}}, "::ffff:127.0.0.2", 8080, ""},
		{"allow network mapped prefix", Config{AllowNetworks: []netip.Prefix{netip.MustParsePrefix("::ffff:10.1.0.0/112")}}, "10.1.2.3", 443, ""},
		{"allow network other", Config{AllowNetworks: []netip.Prefix{loopback}}, "10.0.0.1", 443, "10.0.0.1 is in a denied network"},
		{"allow network v4 not v6", Config{AllowNetworks: []netip.Prefix{loopback}}, "::1", 443, "::1 is in a denied network"},

		{"self in allowed network", Config{
			AllowNetworks: []netip.Prefix{loopback},
			Self:          []netip.AddrPort{netip.MustParseAddrPort("127.0.0.10:3128")},
		}, "127.0.0.10", 3128, "127.0.0.10:3128 is this proxy's own listener"},
		{"self mapped", Config{
			AllowNetworks: []netip.Prefix{loopback},
			Self:          []netip.AddrPort{netip.MustParseAddrPort("127.0.0.10:3128")},
		}, "::ffff:127.0.0.10", 3128, "127.0.0.10:3128 is this proxy's own listener"},
		{"self other port", Config{
			AllowNetworks: []netip.Prefix{loopback},
			Self:          []netip.AddrPort{netip.MustParseAddrPort("127.0.0.10:3128")},
		}, "127.0.0.10", 3129, ""},
		{"self other address", Config{
			AllowNetworks: []netip.Prefix{loopback},
			Self:          []netip.AddrPort{netip.MustParseAddrPort("127.0.0.10:3128")},
		}, "127.0.0.11", 3128, ""},
		{"self public", Config{
			Self: []netip.AddrPort{netip.MustParseAddrPort("[2606:4700::1111]:443")},
		}, "2606:4700::1111", 443, "[2606:4700::1111]:443 is this proxy's own listener"},
		{"dial unspecified at self port", Config{
			AllowNetworks: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")},
			Self:          []netip.AddrPort{netip.MustParseAddrPort("127.0.0.10:3128")},
		}, "0.0.0.0", 3128, "0.0.0.0:3128 is this proxy's own listener"},

		{"wildcard self, local address", Config{
			AllowNetworks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			Self:          []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:3128")},
			LocalAddrs:    []netip.Addr{netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("fe80::1%eth0")},
		}, "10.1.2.3", 3128, "10.1.2.3:3128 is this proxy's own listener"},
		{"wildcard self, public local address", Config{
			Self:       []netip.AddrPort{netip.MustParseAddrPort("[::]:9090")},
			LocalAddrs: []netip.Addr{netip.MustParseAddr("203.0.114.7")},
		}, "203.0.114.7", 9090, "203.0.114.7:9090 is this proxy's own listener"},
		{"wildcard self, zoned local address", Config{
			AllowNetworks: []netip.Prefix{netip.MustParsePrefix("fe80::/10")},
			Self:          []netip.AddrPort{netip.MustParseAddrPort("[::]:3128")},
			LocalAddrs:    []netip.Addr{netip.MustParseAddr("fe80::1%eth0")},
		}, "fe80::1%eth1", 3128, "[fe80::1]:3128 is this proxy's own listener"},
		{"wildcard self, loopback", Config{
			AllowNetworks: []netip.Prefix{loopback},
			Self:          []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:3128")},
		}, "127.0.0.53", 3128, "127.0.0.53:3128 is this proxy's own listener"},
		{"wildcard self, other host", Config{
			AllowNetworks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			Self:          []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:3128")},
			LocalAddrs:    []netip.Addr{netip.MustParseAddr("10.1.2.3")},
		}, "10.1.2.4", 3128, ""},
		{"wildcard self, other port", Config{
			AllowNetworks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			Self:          []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:3128")},
			LocalAddrs:    []netip.Addr{netip.MustParseAddr("10.1.2.3")},
		}, "10.1.2.3", 443, ""},

		{"invalid address", Config{}, "", 443, "invalid destination address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ip netip.Addr
			if tt.ip != "" {
				ip = netip.MustParseAddr(tt.ip)
			}
			err := mustNew(t, tt.cfg).CheckAddr(ip, tt.port)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("CheckAddr(%s, %d) = %v; want allowed", ip, tt.port, err)
				}
				return
			}
			var d *Denied
			if !errors.As(err, &d) {
				t.Fatalf("CheckAddr(%s, %d) = %v; want *Denied", ip, tt.port, err)
			}
			if !strings.Contains(d.Reason, tt.want) {
				t.Errorf("CheckAddr(%s, %d) reason %q; want it to contain %q", ip, tt.port, d.Reason, tt.want)
			}
		})
	}
}

func TestAllow(t *testing.T) {
	p := mustNew(t, Config{Allow: []AllowRule{
		{Host: "api.Example.com"},
		{Host: "*.example.com", Ports: []int{443, 8443}},
		{Host: "*.Upgrade.test.", UpgradeTLS: true, Ports: []int{80}},
		{Host: "0x08080808", Ports: []int{53}},
		{Host: "[2606:4700::1111]"},
		{Host: "bücher.example"},
	}})
	tests := []struct {
		target   string
		wantRule int // index into the rules above, -1 for denied
	}{
		{"api.example.com:443", 0},
		{"API.EXAMPLE.COM.:443", 0},
		{"api.example.com:8443", 1},
		{"a.example.com:443", 1},
		{"a.b.example.com:8443", 1},
		{"A.B.C.Example.Com:443", 1},
		{"example.com:443", -1},
		{"example.com:8443", -1},
		{"a.example.com:80", -1},
		{"aexample.com:443", -1},
		{"example.com.evil.test:443", -1},
		{"a.upgrade.test:80", 2},
		{"upgrade.test:80", -1},
		{"8.8.8.8:53", 3},
		{"134744072:53", 3},
		{"[::ffff:8.8.8.8]:53", 3},
		{"8.8.8.8:443", -1},
		{"[2606:4700::1111]:443", 4},
		{"[2606:4700:0::1111]:443", 4},
		{"xn--bcher-kva.example:443", 5},
		{"BÜCHER.example:443", 5},
		{"10.0.0.1:443", -1},
	}
	for _, tt := range tests {
		target, err := ParseAuthority(tt.target)
		if err != nil {
			t.Fatalf("ParseAuthority(%q): %v", tt.target, err)
		}
		rule, err := p.Allow(target)
		if tt.wantRule < 0 {
			var d *Denied
			if !errors.As(err, &d) {
				t.Errorf("Allow(%v) = %+v, %v; want *Denied", target, rule, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Allow(%v): %v", target, err)
			continue
		}
		if want := p.rules[tt.wantRule].rule; rule.Host != want.Host {
			t.Errorf("Allow(%v) matched %q; want %q", target, rule.Host, want.Host)
		}
	}
}

func TestAllowAny(t *testing.T) {
	p := mustNew(t, Config{Allow: []AllowRule{{Host: "*", Ports: []int{443, 80}}}})
	for _, s := range []string{"example.com:443", "a.b.c:80", "8.8.8.8:443", "[::1]:443", "localhost.example.com:80", "mylocalhost:443"} {
		target, err := ParseAuthority(s)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Allow(target); err != nil {
			t.Errorf("Allow(%v): %v", target, err)
		}
	}
	target, _ := ParseAuthority("example.com:8443")
	if _, err := p.Allow(target); err == nil {
		t.Error("Allow(example.com:8443) allowed a port outside the rule")
	}
}

// TestAllowRefusesLocalhostNames: localhost and *.localhost are refused by name, before any DNS
// question, however they are spelled and even when a rule names them (RFC 6761).
func TestAllowRefusesLocalhostNames(t *testing.T) {
	p := mustNew(t, Config{Allow: []AllowRule{{Host: "*", Ports: []int{443}}, {Host: "localhost"}, {Host: "*.localhost"}}})
	for _, s := range []string{"localhost:443", "LOCALHOST:443", "localhost.:443", "LocalHost.:443", "a.localhost:443", "A.B.LOCALHOST.:443"} {
		target, err := ParseAuthority(s)
		if err != nil {
			t.Fatalf("ParseAuthority(%q): %v", s, err)
		}
		_, err = p.Allow(target)
		var d *Denied
		if !errors.As(err, &d) || !strings.Contains(d.Reason, "loopback name") {
			t.Errorf("Allow(%s) = %v, want a *Denied naming the loopback name", s, err)
		}
	}
}

func TestAllowDeniedReason(t *testing.T) {
	p := mustNew(t, Config{Allow: []AllowRule{{Host: "example.com"}}})
	for _, tt := range []struct {
		target Target
		want   string
	}{
		{Target{Host: "x.example.com", Port: 443}, "host x.example.com port 443 matches no forward.allow rule"},
		{Target{Host: "::1", Addr: netip.MustParseAddr("::1"), Port: 80}, "host ::1 port 80 matches no forward.allow rule"},
		{Target{Host: "a b", Port: 443}, `host "a b" is not a valid host name`},
	} {
		_, err := p.Allow(tt.target)
		var d *Denied
		if !errors.As(err, &d) || d.Reason != tt.want {
			t.Errorf("Allow(%+v) = %v; want reason %q", tt.target, err, tt.want)
		}
		if err != nil && !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Error() = %q; want it to contain the reason", err)
		}
	}
}

func TestAllowHandBuiltTarget(t *testing.T) {
	p := mustNew(t, Config{Allow: []AllowRule{{Host: "example.com"}, {Host: "127.0.0.1"}}})
	for _, target := range []Target{
		{Host: "EXAMPLE.com.", Port: 443},
		{Host: "0x7f.1", Port: 443},
		{Addr: netip.MustParseAddr("::ffff:127.0.0.1"), Port: 443},
	} {
		if _, err := p.Allow(target); err != nil {
			t.Errorf("Allow(%+v): %v", target, err)
		}
	}
}

func TestAllowReturnsRule(t *testing.T) {
	ports := []int{80}
	p := mustNew(t, Config{Allow: []AllowRule{{Host: "example.com", Ports: ports, UpgradeTLS: true}}})
	ports[0] = 81
	rule, err := p.Allow(Target{Host: "example.com", Port: 80})
	if err != nil {
		t.Fatal(err)
	}
	if !rule.UpgradeTLS || rule.Host != "example.com" || len(rule.Ports) != 1 || rule.Ports[0] != 80 {
		t.Errorf("Allow returned %+v", rule)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		rule AllowRule
		want string // empty: valid
	}{
		{AllowRule{Host: "example.com"}, ""},
		{AllowRule{Host: "*"}, ""},
		{AllowRule{Host: "*.example.com", Ports: []int{1, 65535}}, ""},
		{AllowRule{Host: "*.com"}, ""},
		{AllowRule{Host: "8.8.8.8"}, ""},
		{AllowRule{Host: "[::1]"}, ""},
		{AllowRule{Host: "::1"}, ""},
		{AllowRule{Host: "bücher.example"}, ""},
		{AllowRule{Host: ""}, `host: "": empty host`},
		{AllowRule{Host: "a*b.com"}, `host: "a*b.com": "*" is only allowed as the whole leftmost label`},
		{AllowRule{Host: "*example.com"}, `host: "*example.com": "*" is only allowed as the whole leftmost label`},
		{AllowRule{Host: "*.*.example.com"}, `host: "*.*.example.com": "*" is only allowed as the whole leftmost label`},
		{AllowRule{Host: "a.*.example.com"}, `host: "a.*.example.com": "*" is only allowed as the whole leftmost label`},
		{AllowRule{Host: "example.*"}, `host: "example.*": "*" is only allowed as the whole leftmost label`},
		{AllowRule{Host: "**"}, `host: "**": "*" is only allowed as the whole leftmost label`},
		{AllowRule{Host: "*."}, `host: "*.": empty host`},
		{AllowRule{Host: "*.10.0.0.1"}, `host: "*.10.0.0.1": "*." must be followed by a domain name, not an IP address`},
		{AllowRule{Host: "example..com"}, `host: "example..com": empty label`},
		{AllowRule{Host: "1.2.3.4.5"}, `host: "1.2.3.4.5": ends in a number but is not an IPv4 address: 5 parts, at most 4 allowed`},
		{AllowRule{Host: "fe80::1%eth0"}, `host: "fe80::1%eth0": IPv6 zones are not allowed`},
		{AllowRule{Host: "example.com:443"}, `host: "example.com:443": not an IPv6 address`},
		{AllowRule{Host: "example.com", Ports: []int{443, 70000}}, `ports[1]: 70000 is not a port (1-65535)`},
		{AllowRule{Host: "example.com", Ports: []int{0}}, `ports[0]: 0 is not a port (1-65535)`},
		{AllowRule{Host: "example.com", Ports: []int{-443}}, `ports[0]: -443 is not a port (1-65535)`},
	}
	for _, tt := range tests {
		err := tt.rule.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%+v.Validate() = %v", tt.rule, err)
		case tt.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.want)):
			t.Errorf("%+v.Validate() = %v; want %s", tt.rule, err, tt.want)
		}
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{Allow: []AllowRule{{Host: "a.com"}, {Host: "b.com"}, {Host: "a*b.com"}}},
			`allow[2].host: "a*b.com": "*" is only allowed as the whole leftmost label`},
		{Config{Allow: []AllowRule{{Host: "a.com", Ports: []int{443, 70000}}}},
			`allow[0].ports[1]: 70000 is not a port (1-65535)`},
		{Config{AllowNetworks: []netip.Prefix{{}}}, "allow_networks[0]: invalid prefix"},
		{Config{Self: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}}, "self[0]:"},
		{Config{Self: []netip.AddrPort{{}}}, "self[0]:"},
		{Config{LocalAddrs: []netip.Addr{{}}}, "local_addrs[0]: invalid address"},
	}
	for _, tt := range tests {
		_, err := New(tt.cfg)
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v; want %s", tt.cfg, err, tt.want)
		}
	}
}
