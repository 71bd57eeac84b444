package policy

import (
	"net/netip"
	"strings"
	"testing"
)

func TestNormalizeHost(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ip   bool
	}{
		// Names.
		{"example.com", "example.com", false},
		{"Example.COM", "example.com", false},
		{"example.com.", "example.com", false},
		{"a-b_c.example.com", "a-b_c.example.com", false},
		{"r3---sn-abc.googlevideo.com", "r3---sn-abc.googlevideo.com", false},
		{"localhost", "localhost", false},
		{"1.example.com", "1.example.com", false},
		{"0x1g.com", "0x1g.com", false},
		{"0x1g", "0x1g", false},
		{"1e5", "1e5", false},
		{"example.0x1g", "example.0x1g", false},
		{"bücher.example", "xn--bcher-kva.example", false},
		{"BÜCHER.example", "xn--bcher-kva.example", false},
		{"xn--bcher-kva.example", "xn--bcher-kva.example", false},
		{"XN--BCHER-KVA.example", "xn--bcher-kva.example", false},
		{"例え.テスト", "xn--r8jz45g.xn--zckzah", false},
		{"bücher\u3002example", "xn--bcher-kva.example", false}, // ideographic full stop
		{"ｅｘａｍｐｌｅ.com", "example.com", false},                   // full-width letters
		{strings.Repeat("a", 63) + ".com", strings.Repeat("a", 63) + ".com", false},
		{strings.Repeat("a.", 126) + "a", strings.Repeat("a.", 126) + "a", false}, // 253 characters

		// IPv4 in every spelling.
		{"127.0.0.1", "127.0.0.1", true},
		{"127.0.0.1.", "127.0.0.1", true},
		{"2130706433", "127.0.0.1", true},
		{"0177.0.0.1", "127.0.0.1", true},
		{"0x7f.0.0.1", "127.0.0.1", true},
		{"0X7F.0.0.1", "127.0.0.1", true},
		{"0x7f000001", "127.0.0.1", true},
		{"0x0000007f.1", "127.0.0.1", true},
		{"127.1", "127.0.0.1", true},
		{"127.0.1", "127.0.0.1", true},
		{"0x7f.1", "127.0.0.1", true},
		{"0177.0x0.1", "127.0.0.1", true},
		{"0x7f.0.0x0.01", "127.0.0.1", true},
		{"017700000001", "127.0.0.1", true},
		{"0", "0.0.0.0", true},
		{"0x", "0.0.0.0", true},
		{"00", "0.0.0.0", true},
		{"169.254.43518", "169.254.169.254", true},
		{"0xa9fea9fe", "169.254.169.254", true},
		{"2852039166", "169.254.169.254", true},
		{"8.8.8.8", "8.8.8.8", true},
		{"4294967295", "255.255.255.255", true},
		{"１２７.０.０.１", "127.0.0.1", true}, // full-width digits map to ASCII
		{"127\uff0e0\uff0e0\uff0e1", "127.0.0.1", true},

		// IPv6.
		{"::1", "::1", true},
		{"[::1]", "::1", true},
		{"0:0:0:0:0:0:0:1", "::1", true},
		{"[0:0:0:0:0:ffff:7f00:1]", "127.0.0.1", true},
		{"::ffff:127.0.0.1", "127.0.0.1", true},
		{"::FFFF:7F00:1", "127.0.0.1", true},
		{"2606:4700:0000::1111", "2606:4700::1111", true},
		{"2606:4700::1111", "2606:4700::1111", true},
		{"FE80::1", "fe80::1", true},
		{"::", "::", true},
		{"::127.0.0.1", "::7f00:1", true},
	}
	for _, tt := range tests {
		name, addr, err := NormalizeHost(tt.in)
		if err != nil {
			t.Errorf("NormalizeHost(%q): %v", tt.in, err)
			continue
		}
		if name != tt.want || addr.IsValid() != tt.ip {
			t.Errorf("NormalizeHost(%q) = %q, %v; want %q, IP %v", tt.in, name, addr, tt.want, tt.ip)
		}
		if tt.ip && (addr.String() != name || addr.Is4In6() || addr.Zone() != "") {
			t.Errorf("NormalizeHost(%q) addr = %v, not canonical", tt.in, addr)
		}
	}
}

func TestNormalizeHostErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "empty host"},
		{".", "empty host"},
		{"example..com", "empty label"},
		{".example.com", "empty label"},
		{"example.com..", "empty label"},
		{"-a.com", "starts or ends with '-'"},
		{"a-.com", "starts or ends with '-'"},
		{strings.Repeat("a", 64) + ".com", "longer than 63"},
		{strings.Repeat("a.", 127) + "a", "longer than 253"},
		{"exa mple.com", "contains ' '"},
		{"a*b.com", "contains '*'"},
		{"a/b", "contains '/'"},
		{"xn--zz.com", "not valid punycode"},
		{"xn--abc.com", "not valid punycode"}, // decodes to ASCII only
		{"a\u200db.com", "internationalised"},
		{"\u00ad", "empty host"}, // soft hyphen maps to nothing

		// Numeric last label: an IPv4 address or nothing.
		{"1.2.3.4.5", "ends in a number"},
		{"1.2.3.256", "ends in a number"},
		{"256.1.1.1", "out of range"},
		{"1.2.65536", "out of range"},
		{"1.16777216", "out of range"},
		{"4294967296", "out of range"},
		{"99999999999999999999999", "out of range"},
		{"0x100000000", "out of range"},
		{"08", "not a base-8 number"},
		{"1.2.3.09", "not a base-8 number"},
		{"example.123", "ends in a number"},
		{"example.0x1f", "ends in a number"},
		{"1..2", "empty part"},
		{"..1", "empty part"},
		{"1.2.3.4..", "empty label"},

		// IPv6.
		{"fe80::1%eth0", "zones are not allowed"},
		{"[fe80::1%25eth0]", "zones are not allowed"},
		{"[::1", "missing ']'"},
		{"[1.2.3.4]", "not an IPv6 address"},
		{"[example.com]", "not an IPv6 address"},
		{"[]", "not an IPv6 address"},
		{":::1", "not an IPv6 address"},
		{"::ffff:127.0.0.01", "not an IPv6 address"},
		{"1::2::3", "not an IPv6 address"},
	}
	for _, tt := range tests {
		name, addr, err := NormalizeHost(tt.in)
		if err == nil {
			t.Errorf("NormalizeHost(%q) = %q, %v; want error containing %q", tt.in, name, addr, tt.want)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NormalizeHost(%q) error %q; want it to contain %q", tt.in, err, tt.want)
		}
	}
}

func TestParseAuthority(t *testing.T) {
	v4 := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	tests := []struct {
		in   string
		want Target
	}{
		{"example.com:443", Target{Host: "example.com", Port: 443}},
		{"EXAMPLE.com.:8443", Target{Host: "example.com", Port: 8443}},
		{"example.com:0443", Target{Host: "example.com", Port: 443}},
		{"example.com:1", Target{Host: "example.com", Port: 1}},
		{"example.com:65535", Target{Host: "example.com", Port: 65535}},
		{"bücher.example:443", Target{Host: "xn--bcher-kva.example", Port: 443}},
		{"8.8.8.8:443", Target{Host: "8.8.8.8", Addr: v4("8.8.8.8"), Port: 443}},
		{"2130706433:443", Target{Host: "127.0.0.1", Addr: v4("127.0.0.1"), Port: 443}},
		{"0177.0.0.1:443", Target{Host: "127.0.0.1", Addr: v4("127.0.0.1"), Port: 443}},
		{"0x7f.0.0.1:443", Target{Host: "127.0.0.1", Addr: v4("127.0.0.1"), Port: 443}},
		{"0x7f000001:443", Target{Host: "127.0.0.1", Addr: v4("127.0.0.1"), Port: 443}},
		{"127.1:443", Target{Host: "127.0.0.1", Addr: v4("127.0.0.1"), Port: 443}},
		{"127.0.1:443", Target{Host: "127.0.0.1", Addr: v4("127.0.0.1"), Port: 443}},
		{"[::1]:443", Target{Host: "::1", Addr: v4("::1"), Port: 443}},
		{"[::ffff:127.0.0.1]:443", Target{Host: "127.0.0.1", Addr: v4("127.0.0.1"), Port: 443}},
		{"[0:0:0:0:0:ffff:7f00:1]:443", Target{Host: "127.0.0.1", Addr: v4("127.0.0.1"), Port: 443}},
		{"[2606:4700::1111]:443", Target{Host: "2606:4700::1111", Addr: v4("2606:4700::1111"), Port: 443}},
	}
	for _, tt := range tests {
		got, err := ParseAuthority(tt.in)
		if err != nil {
			t.Errorf("ParseAuthority(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseAuthority(%q) = %+v; want %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseAuthorityErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "empty"},
		{"example.com", "missing port"},
		{"example.com:", "missing port"},
		{"[::1]", "missing port"},
		{"[::1]:", "missing port"},
		{"example.com:0", "out of range"},
		{"example.com:65536", "out of range"},
		{"example.com:99999999999999999999", "out of range"},
		{"example.com:https", "not a number"},
		{"example.com:+443", "not a number"},
		{"example.com:-1", "not a number"},
		{"example.com:44 3", "whitespace"},
		{"user@example.com:443", "userinfo"},
		{"user:pass@example.com:443", "userinfo"},
		{":443", "empty host"},
		{"[]:443", "not an IPv6 address"},
		{"example.com:443/", "path, query or fragment"},
		{"example.com:443?x", "path, query or fragment"},
		{"example.com:443#x", "path, query or fragment"},
		{"/example.com:443", "path, query or fragment"},
		{"http://example.com:443", "path, query or fragment"},
		{" example.com:443", "whitespace"},
		{"example.com:443 ", "whitespace"},
		{"example.com\t:443", "whitespace"},
		{"example.com:443\r\n", "whitespace"},
		{"example.com\x00:443", "control"},
		{"example.com\u00a0:443", "whitespace"},
		{"[example.com]:443", "not an IPv6 address"},
		{"[1.2.3.4]:443", "not an IPv6 address"},
		{"[::1]x:443", "after ']'"},
		{"[::1:443", "missing ']'"},
		{"::1:443", "must be in brackets"},
		{"2606:4700::1111:443", "must be in brackets"},
		{"[fe80::1%eth0]:443", "zones are not allowed"},
		{"[fe80::1%25eth0]:443", "zones are not allowed"},
		{"1.2.3.4.5:443", "ends in a number"},
		{"example.com:443:443", "must be in brackets"},
	}
	for _, tt := range tests {
		got, err := ParseAuthority(tt.in)
		if err == nil {
			t.Errorf("ParseAuthority(%q) = %+v; want error containing %q", tt.in, got, tt.want)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseAuthority(%q) error %q; want it to contain %q", tt.in, err, tt.want)
		}
	}
}

func TestParseHostPort(t *testing.T) {
	tests := []struct {
		in      string
		def     uint16
		want    string
		wantErr string
	}{
		{"example.com", 80, "example.com:80", ""},
		{"example.com:", 80, "example.com:80", ""},
		{"example.com:8080", 80, "example.com:8080", ""},
		{"Example.com.", 443, "example.com:443", ""},
		{"[::1]", 80, "[::1]:80", ""},
		{"[::ffff:7f00:1]:81", 80, "127.0.0.1:81", ""},
		{"0x7f.1", 80, "127.0.0.1:80", ""},
		{"example.com", 0, "", "missing port"},
		{"::1", 80, "", "must be in brackets"},
		{"user@example.com", 80, "", "userinfo"},
		{"example.com/x", 80, "", "path"},
		{"example.com:80000", 80, "", "out of range"},
	}
	for _, tt := range tests {
		got, err := ParseHostPort(tt.in, tt.def)
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseHostPort(%q, %d) = %v, %v; want error containing %q", tt.in, tt.def, got, err, tt.wantErr)
			}
		case err != nil:
			t.Errorf("ParseHostPort(%q, %d): %v", tt.in, tt.def, err)
		case got.String() != tt.want:
			t.Errorf("ParseHostPort(%q, %d) = %v; want %v", tt.in, tt.def, got, tt.want)
		}
	}
}

func TestTargetString(t *testing.T) {
	tests := []struct {
		t    Target
		want string
	}{
		{Target{Host: "example.com", Port: 443}, "example.com:443"},
		{Target{Host: "127.0.0.1", Addr: netip.MustParseAddr("127.0.0.1"), Port: 80}, "127.0.0.1:80"},
		{Target{Host: "::1", Addr: netip.MustParseAddr("::1"), Port: 8443}, "[::1]:8443"},
	}
	for _, tt := range tests {
		if got := tt.t.String(); got != tt.want {
			t.Errorf("%+v.String() = %q; want %q", tt.t, got, tt.want)
		}
		if tt.t.IsIP() != tt.t.Addr.IsValid() {
			t.Errorf("%+v.IsIP() = %v", tt.t, tt.t.IsIP())
		}
	}
}
