package policy

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

var hostSeeds = []string{
	"example.com", "Example.COM.", "a.b.example.com", "a-b_c.example", "localhost",
	"0x1g.com", "0x1g", "1e5", "1.2.3.4.5", "example.123", "1..2",
	"bücher.example", "xn--bcher-kva.example", "XN--BCHER-KVA.example", "例え.テスト", "ｅｘａｍｐｌｅ.com",
	"a\u200db.com", "xn--zz.com", "\u00ad",
	"127.0.0.1", "2130706433", "0177.0.0.1", "0x7f.0.0.1", "0X7F000001", "127.1", "127.0.1",
	"0x7f.1", "0177.0x0.1", "017700000001", "0", "0x", "08", "4294967296", "１２７.０.０.１",
	"169.254.169.254", "0xa9fea9fe", "169.254.43518", "100.64.0.1", "10.0.0.5", "8.8.8.8",
	"::1", "[::1]", "[::ffff:127.0.0.1]", "[0:0:0:0:0:ffff:7f00:1]", "::ffff:10.0.0.1",
	"fe80::1%eth0", "fc00::1", "fe80::1", "64:ff9b::a00:1", "2002::1", "2001::1", "2606:4700::1111",
	"::ffff:8.8.8.8", "::127.0.0.1", "[1.2.3.4]", "[example.com]",
	"faß.de", "مثال.إختبار", "a.xn--mgbh0fb", "1.مثال", "ＡＢＣ．com", "Ⅻ.com", "a\uff61b", "x\u200cy.com",
}

func FuzzNormalizeHost(f *testing.F) {
	for _, s := range hostSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, addr, err := NormalizeHost(s)
		if err != nil {
			return
		}
		if name == "" || len(name) > 253 || !isASCII(name) || name != strings.ToLower(name) || strings.HasSuffix(name, ".") {
			t.Fatalf("NormalizeHost(%q) = %q, not canonical", s, name)
		}
		name2, addr2, err := NormalizeHost(name)
		if err != nil || name2 != name || addr2 != addr {
			t.Fatalf("NormalizeHost(%q) = %q, %v; again: %q, %v, %v", s, name, addr, name2, addr2, err)
		}
		if want, err := netip.ParseAddr(s); err == nil && want.Zone() == "" && addr != want.Unmap() {
			t.Fatalf("NormalizeHost(%q) = %v; netip says %v", s, addr, want.Unmap())
		}
		target := Target{Host: name, Addr: addr, Port: 443}
		if got, err := ParseAuthority(target.String()); err != nil || got != target {
			t.Fatalf("ParseAuthority(%q) = %+v, %v; want %+v", target.String(), got, err, target)
		}
		checkTarget(t, target)
	})
}

func FuzzParseAuthority(f *testing.F) {
	for _, s := range hostSeeds {
		if strings.Contains(s, ":") && !strings.HasPrefix(s, "[") {
			s = "[" + s + "]"
		}
		f.Add(s + ":443")
	}
	for _, s := range []string{
		"example.com", "example.com:", "example.com:0", "example.com:65536", "example.com:0443",
		"user@example.com:443", "example.com:443/", "example.com:443?q", "example.com:443#f",
		" example.com:443", "[::1]", "[::1]x:443", "::1:443", "[fe80::1%25eth0]:443", ":443", "[]:443",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		target, err := ParseAuthority(s)
		if err != nil {
			if _, err2 := ParseHostPort(s, 0); err2 == nil {
				t.Fatalf("ParseAuthority(%q) failed (%v) but ParseHostPort(_, 0) succeeded", s, err)
			}
			return
		}
		if target.Port == 0 {
			t.Fatalf("ParseAuthority(%q) = %+v with port 0", s, target)
		}
		if got, err := ParseAuthority(target.String()); err != nil || got != target {
			t.Fatalf("ParseAuthority(%q) = %+v; re-parsing %q gives %+v, %v", s, target, target.String(), got, err)
		}
		if got, err := ParseHostPort(target.String(), 1); err != nil || got != target {
			t.Fatalf("ParseHostPort(%q) = %+v, %v; want %+v", target.String(), got, err, target)
		}
		if name, addr, err := NormalizeHost(target.Host); err != nil || name != target.Host || addr != target.Addr {
			t.Fatalf("NormalizeHost(%q) = %q, %v, %v; not idempotent", target.Host, name, addr, err)
		}
		checkTarget(t, target)
	})
}

// checkTarget asserts invariants of a canonical target, and that CheckAddr
// refuses what the standard library considers special.
func checkTarget(t *testing.T, target Target) {
	t.Helper()
	if !target.IsIP() {
		if _, err := netip.ParseAddr(target.Host); err == nil {
			t.Fatalf("%+v: name is an IP address", target)
		}
		last := target.Host[strings.LastIndexByte(target.Host, '.')+1:]
		if isIPv4Number(last) {
			t.Fatalf("%+v: name ends in a number", target)
		}
		return
	}
	a := target.Addr
	if a.Is4In6() || a.Zone() != "" || a.String() != target.Host {
		t.Fatalf("%+v: address not canonical", target)
	}
	p, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	err = p.CheckAddr(a, target.Port)
	_, _, denied := DeniedNetwork(a)
	if (err != nil) != denied {
		t.Fatalf("CheckAddr(%v) = %v but DeniedNetwork says %v", a, err, denied)
	}
	ip := net.IP(a.AsSlice())
	special := ip.IsLoopback() || ip.IsPrivate() || ip.IsUnspecified() || ip.IsMulticast() ||
		ip.IsLinkLocalUnicast() || ip.IsInterfaceLocalMulticast() || ip.IsLinkLocalMulticast()
	if special && err == nil {
		t.Fatalf("CheckAddr(%v) allowed a special-purpose address", a)
	}
	mapped := netip.AddrFrom16(a.As16())
	if err2 := p.CheckAddr(mapped, target.Port); (err2 == nil) != (err == nil) {
		t.Fatalf("CheckAddr(%v) = %v but CheckAddr(%v) = %v", a, err, mapped, err2)
	}
}

func FuzzMatchHost(f *testing.F) {
	patterns := []string{"*", "*.example.com", "example.com", "*.EXAMPLE.com.", "8.8.8.8", "0x08080808",
		"[::1]", "*.bücher.example", "a*b.com", "*.*.com", "*.10.0.0.1", "*."}
	hosts := []string{"example.com", "a.example.com", "a.b.example.com", "EXAMPLE.COM", "aexample.com",
		"example.com.evil", "8.8.8.8", "134744072", "[::1]", "[::ffff:8.8.8.8]", "x.xn--bcher-kva.example", "x.BÜCHER.example"}
	for _, p := range patterns {
		for _, h := range hosts {
			f.Add(p, h)
		}
	}
	f.Add("0", "0:01")
	f.Add("example.com", "example.com:8443")
	f.Fuzz(func(t *testing.T, pattern, host string) {
		p, err := New(Config{Allow: []AllowRule{{Host: pattern}}})
		if (err != nil) != (AllowRule{Host: pattern}.Validate() != nil) {
			t.Fatalf("New and Validate disagree on %q: %v", pattern, err)
		}
		if err != nil {
			return
		}
		target, err := ParseHostPort(host, 443)
		if err != nil {
			return
		}
		_, allowErr := p.Allow(target)
		var d *Denied
		if allowErr != nil && !errors.As(allowErr, &d) {
			t.Fatalf("Allow(%+v) = %v, not *Denied", target, allowErr)
		}
		if got, want := allowErr == nil, target.Port == 443 && refMatch(t, pattern, target); got != want {
			t.Fatalf("pattern %q, target %+v: Allow says %v, reference says %v", pattern, target, got, want)
		}
		if suffix, ok := strings.CutPrefix(pattern, "*."); ok {
			apex, err := ParseHostPort(suffix, 443)
			if err == nil && !apex.IsIP() {
				if _, err := p.Allow(apex); err == nil {
					t.Fatalf("pattern %q allowed its apex %v", pattern, apex)
				}
			}
		}
		if isASCII(pattern) && isASCII(host) {
			upper, err := ParseHostPort(strings.ToUpper(host), 443)
			if err != nil || upper != target {
				t.Fatalf("ParseHostPort(%q) = %+v, %v; lowercase gives %+v", strings.ToUpper(host), upper, err, target)
			}
			up, err := New(Config{Allow: []AllowRule{{Host: strings.ToUpper(pattern)}}})
			if err != nil {
				t.Fatalf("pattern %q is valid but %q is not: %v", pattern, strings.ToUpper(pattern), err)
			}
			if _, err := up.Allow(target); (err == nil) != (allowErr == nil) {
				t.Fatalf("case changes the result for pattern %q, target %v", pattern, target)
			}
		}
	})
}

// refMatch is an independent, label-based statement of the glob semantics.
func refMatch(t *testing.T, pattern string, target Target) bool {
	if pattern == "*" {
		return true
	}
	if suffix, ok := strings.CutPrefix(pattern, "*."); ok {
		name, _, err := NormalizeHost(suffix)
		if err != nil {
			t.Fatalf("pattern %q accepted but suffix fails: %v", pattern, err)
		}
		if target.IsIP() {
			return false
		}
		labels, want := strings.Split(target.Host, "."), strings.Split(name, ".")
		return len(labels) > len(want) && slices.Equal(labels[len(labels)-len(want):], want)
	}
	name, addr, err := NormalizeHost(pattern)
	if err != nil {
		t.Fatalf("pattern %q accepted but fails: %v", pattern, err)
	}
	if addr.IsValid() {
		return target.Addr == addr
	}
	return !target.IsIP() && target.Host == name
}
