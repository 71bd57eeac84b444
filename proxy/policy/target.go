// Package policy decides which destinations fixedgate's forward proxy may
// reach: it canonicalises request targets, matches them against the
// forward.allow rules and refuses special-purpose and self addresses.
package policy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"unicode"

	"golang.org/x/net/idna"
)

// Target is a normalised destination (after parsing a CONNECT authority or an
// absolute-form URL host), so that policy never sees two spellings of one host.
type Target struct {
	// Host is a lowercase ASCII (punycode) name without a trailing dot, or
	// Addr.String() when the host was an IP literal.
	Host string
	// Addr is the address when the host was an IP literal (never IPv4-mapped,
	// never zoned), and the zero Addr otherwise.
	Addr netip.Addr
	// Port is the destination port, 1-65535.
	Port uint16
}

// IsIP reports whether the host was an IP literal, which only IP rules and "*"
// may allow.
func (t Target) IsIP() bool { return t.Addr.IsValid() }

// String returns the target as host:port with IPv6 in brackets, the form to
// dial and to log.
func (t Target) String() string {
	return net.JoinHostPort(t.Host, strconv.FormatUint(uint64(t.Port), 10))
}

// ParseAuthority parses a CONNECT request-target "host:port" (RFC 9110
// section 9.3.6); the port is required because a tunnel has no default.
// Errors describe malformed input and map to HTTP 400.
func ParseAuthority(s string) (Target, error) {
	t, err := parseHostPort(s, 0)
	if err != nil {
		return Target{}, fmt.Errorf("CONNECT authority %q: %w", s, err)
	}
	return t, nil
}

// ParseHostPort parses "host" or "host:port" as found in an absolute-form
// URL; defaultPort is used when the port is absent or empty (a defaultPort of
// 0 makes the port required).
func ParseHostPort(hostport string, defaultPort uint16) (Target, error) {
	t, err := parseHostPort(hostport, defaultPort)
	if err != nil {
		return Target{}, fmt.Errorf("host %q: %w", hostport, err)
	}
	return t, nil
}

// NormalizeHost canonicalises a host (a name, or an IP literal in any
// spelling, IPv6 with or without brackets) so that equal destinations compare
// equal. For an IP literal, addr is valid and name is addr.String().
func NormalizeHost(host string) (name string, addr netip.Addr, err error) {
	name, addr, err = normalizeHost(host)
	if err != nil {
		return "", netip.Addr{}, fmt.Errorf("host %q: %w", host, err)
	}
	return name, addr, nil
}

func parseHostPort(s string, defaultPort uint16) (Target, error) {
	switch {
	case s == "":
		return Target{}, errors.New("empty")
	case strings.IndexFunc(s, isSpaceOrControl) >= 0:
		return Target{}, errors.New("contains whitespace or a control character")
	case strings.ContainsAny(s, "/?#"):
		return Target{}, errors.New("must not contain a path, query or fragment")
	case strings.Contains(s, "@"):
		return Target{}, errors.New("must not contain userinfo")
	}
	host, port, err := splitHostPort(s)
	if err != nil {
		return Target{}, err
	}
	name, addr, err := normalizeHost(host)
	if err != nil {
		return Target{}, err
	}
	t := Target{Host: name, Addr: addr, Port: defaultPort}
	if port != "" {
		if t.Port, err = parsePort(port); err != nil {
			return Target{}, err
		}
	}
	if t.Port == 0 {
		return Target{}, errors.New("missing port")
	}
	return t, nil
}

// splitHostPort splits s into a host (IPv6 keeps its brackets) and a port,
// which is empty when absent.
func splitHostPort(s string) (host, port string, err error) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", errors.New("missing ']' after IPv6 address")
		}
		host, rest := s[:end+1], s[end+1:]
		if rest != "" && rest[0] != ':' {
			return "", "", fmt.Errorf("unexpected %q after ']'", rest)
		}
		return host, strings.TrimPrefix(rest, ":"), nil
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return s, "", nil
	}
	if strings.IndexByte(s[:i], ':') >= 0 {
		return "", "", errors.New("an IPv6 address must be in brackets")
	}
	return s[:i], s[i+1:], nil
}

func parsePort(s string) (uint16, error) {
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("port %q is not a number", s)
		}
		if n = n*10 + int(c-'0'); n > 65535 {
			break
		}
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %q is out of range (1-65535)", s)
	}
	return uint16(n), nil
}

func isSpaceOrControl(r rune) bool {
	return unicode.IsSpace(r) || unicode.IsControl(r)
}

func normalizeHost(h string) (string, netip.Addr, error) {
	if h == "" {
		return "", netip.Addr{}, errors.New("empty host")
	}
	if strings.HasPrefix(h, "[") {
		if !strings.HasSuffix(h, "]") {
			return "", netip.Addr{}, errors.New("missing ']' after IPv6 address")
		}
		return parseIPv6(h[1 : len(h)-1])
	}
	if strings.Contains(h, ":") {
		return parseIPv6(h)
	}
	if !isASCII(h) {
		a, err := idna.Lookup.ToASCII(h)
		if err != nil {
			return "", netip.Addr{}, fmt.Errorf("invalid internationalised name: %w", err)
		}
		h = a
	}
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if h == "" {
		return "", netip.Addr{}, errors.New("empty host")
	}
	// WHATWG URL host parsing: a host whose last label is a number is an
	// IPv4 address or nothing, so "0x7f.1" cannot pass as a name.
	if isIPv4Number(h[strings.LastIndexByte(h, '.')+1:]) {
		a, err := parseIPv4(h)
		if err != nil {
			return "", netip.Addr{}, fmt.Errorf("ends in a number but is not an IPv4 address: %w", err)
		}
		return a.String(), a, nil
	}
	name, err := canonicalName(h)
	if err != nil {
		return "", netip.Addr{}, err
	}
	return name, netip.Addr{}, nil
}

func parseIPv6(s string) (string, netip.Addr, error) {
	if strings.Contains(s, "%") {
		return "", netip.Addr{}, errors.New("IPv6 zones are not allowed")
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", netip.Addr{}, fmt.Errorf("not an IPv6 address: %w", err)
	}
	if !a.Is6() {
		return "", netip.Addr{}, fmt.Errorf("%q in brackets is not an IPv6 address", s)
	}
	a = a.Unmap()
	return a.String(), a, nil
}

// canonicalName checks a lowercase ASCII name label by label and rewrites
// punycode labels into their canonical encoding.
func canonicalName(h string) (string, error) {
	if len(h) > 253 {
		return "", errors.New("name is longer than 253 characters")
	}
	labels := strings.Split(h, ".")
	for i, l := range labels {
		switch {
		case l == "":
			return "", errors.New("empty label")
		case len(l) > 63:
			return "", fmt.Errorf("label %q is longer than 63 characters", l)
		case l[0] == '-' || l[len(l)-1] == '-':
			return "", fmt.Errorf("label %q starts or ends with '-'", l)
		}
		for _, c := range []byte(l) {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("label %q contains %q", l, rune(c))
			}
		}
		if strings.HasPrefix(l, "xn--") {
			a, err := idna.Lookup.ToASCII(l)
			if err != nil {
				return "", fmt.Errorf("label %q is not valid punycode: %w", l, err)
			}
			labels[i] = a
		}
	}
	return strings.Join(labels, "."), nil
}

// isIPv4Number reports whether s is a number to the WHATWG IPv4 parser:
// decimal digits, or "0x" followed by hex digits.
func isIPv4Number(s string) bool {
	if rest, ok := strings.CutPrefix(s, "0x"); ok {
		return strings.Trim(rest, "0123456789abcdef") == ""
	}
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// parseIPv4 parses a lowercase IPv4 address with inet_aton semantics: one to
// four parts, each decimal, 0x-hex or 0-octal, the last one filling the
// remaining bytes.
func parseIPv4(s string) (netip.Addr, error) {
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, fmt.Errorf("%d parts, at most 4 allowed", len(parts))
	}
	var v uint64
	for i, p := range parts {
		n, err := parseIPv4Part(p)
		if err != nil {
			return netip.Addr{}, err
		}
		last := i == len(parts)-1
		if !last && n > 0xff || last && n >= 1<<(8*(5-len(parts))) {
			return netip.Addr{}, fmt.Errorf("part %q is out of range", p)
		}
		if last {
			v += n
		} else {
			v += n << (8 * (3 - i))
		}
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), nil
}

// parseIPv4Part parses one part of an IPv4 address; values above 32 bits
// saturate so that the caller reports them as out of range.
func parseIPv4Part(p string) (uint64, error) {
	if p == "" {
		return 0, errors.New("empty part")
	}
	base, digits := uint64(10), p
	if rest, ok := strings.CutPrefix(p, "0x"); ok {
		base, digits = 16, rest
	} else if len(p) > 1 && p[0] == '0' {
		base, digits = 8, p[1:]
	}
	var n uint64
	for _, c := range []byte(digits) {
		d := uint64(base)
		switch {
		case '0' <= c && c <= '9':
			d = uint64(c - '0')
		case 'a' <= c && c <= 'f':
			d = uint64(c-'a') + 10
		}
		if d >= base {
			return 0, fmt.Errorf("part %q is not a base-%d number", p, base)
		}
		n = min(n*base+d, 1<<32)
	}
	return n, nil
}

func isASCII(s string) bool {
	for _, c := range []byte(s) {
		if c >= 0x80 {
			return false
		}
	}
	return true
}
