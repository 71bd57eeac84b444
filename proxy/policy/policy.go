package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// AllowRule is one forward.allow entry of the YAML config (field tags are the
// public config keys); a destination is reachable only if some rule allows it.
type AllowRule struct {
	// Host is an exact name, "*.example.com" (subdomains at any depth, not
	// example.com itself), "*" (any host, IP literals included) or an IP literal.
	Host string `yaml:"host"`
	// Ports lists the allowed ports; empty means [443].
	Ports []int `yaml:"ports"`
	// UpgradeTLS makes the proxy fetch http:// requests to this host over https://.
	UpgradeTLS bool `yaml:"upgrade_tls"`
	// ProxyProtocol ("v1" or "v2"; empty: off) sends a PROXY protocol header naming the client
	// before anything else on connections to origins this rule matches, for origins that
	// allow-list or log by customer. An origin that does not expect the header breaks.
	ProxyProtocol string `yaml:"proxy_protocol"`
}

// Validate reports the first problem with the rule. Messages are relative to
// the rule (e.g. `ports[1]: 70000 is not a port (1-65535)`); the caller
// prefixes the key path.
func (r AllowRule) Validate() error {
	_, err := compileRule(r)
	return err
}

// Config is what New needs to build a Policy; the caller fills it from the
// YAML config and from the host's network interfaces.
type Config struct {
	// Allow lists the forward.allow rules in order; the first match wins.
	Allow []AllowRule
	// AllowNetworks are exempt from the denied-network check, for
	// deployments that must reach internal services (tests use 127.0.0.0/8).
	AllowNetworks []netip.Prefix
	// Self lists the proxy's own listeners and admin port, which are always
	// refused so that the proxy cannot be looped through itself. An
	// unspecified IP (0.0.0.0 or ::) means every local address at that port.
	Self []netip.AddrPort
	// LocalAddrs are the addresses of this host, against which unspecified
	// Self entries are matched; the caller fills them from net.InterfaceAddrs.
	LocalAddrs []netip.Addr
}

// Policy decides which destinations the forward proxy may reach. It is
// immutable once built, so one Policy may serve all connections concurrently.
type Policy struct {
	rules         []rule
	allowNetworks []netip.Prefix
	self          []netip.AddrPort
	localAddrs    []netip.Addr
}

type rule struct {
	rule  AllowRule
	host  hostPattern
	ports []uint16
}

// hostPattern is a compiled AllowRule.Host; exactly one of its forms is set.
type hostPattern struct {
	any    bool
	suffix string // ".example.com" for "*.example.com"
	name   string
	addr   netip.Addr
}

var defaultPorts = []uint16{443}

// New validates c and builds the Policy it describes; a bad entry is named by
// its index, e.g. "allow[2].host: ...".
func New(c Config) (*Policy, error) {
	p := &Policy{}
	for i, r := range c.Allow {
		cr, err := compileRule(r)
		if err != nil {
			return nil, fmt.Errorf("allow[%d].%w", i, err)
		}
		p.rules = append(p.rules, cr)
	}
	for i, n := range c.AllowNetworks {
		if !n.IsValid() {
			return nil, fmt.Errorf("allow_networks[%d]: invalid prefix %q", i, n)
		}
		p.allowNetworks = append(p.allowNetworks, unmapPrefix(n))
	}
	for i, s := range c.Self {
		if !s.Addr().IsValid() || s.Port() == 0 {
			return nil, fmt.Errorf("self[%d]: %q is not an address with a port", i, s)
		}
		p.self = append(p.self, netip.AddrPortFrom(canonicalAddr(s.Addr()), s.Port()))
	}
	for i, a := range c.LocalAddrs {
		if !a.IsValid() {
			return nil, fmt.Errorf("local_addrs[%d]: invalid address", i)
		}
		p.localAddrs = append(p.localAddrs, canonicalAddr(a))
	}
	return p, nil
}

func compileRule(r AllowRule) (rule, error) {
	h, err := compileHost(r.Host)
	if err != nil {
		return rule{}, fmt.Errorf("host: %q: %w", r.Host, err)
	}
	ports := defaultPorts
	if len(r.Ports) > 0 {
		ports = make([]uint16, len(r.Ports))
	}
	for i, n := range r.Ports {
		if n < 1 || n > 65535 {
			return rule{}, fmt.Errorf("ports[%d]: %d is not a port (1-65535)", i, n)
		}
		ports[i] = uint16(n)
	}
	switch r.ProxyProtocol {
	case "", "v1", "v2":
	default:
		return rule{}, fmt.Errorf("proxy_protocol: %q must be v1 or v2 (or left out)", r.ProxyProtocol)
	}
	r.Ports = slices.Clone(r.Ports)
	return rule{rule: r, host: h, ports: ports}, nil
}

var errWildcard = errors.New(`"*" is only allowed as the whole leftmost label`)

func compileHost(h string) (hostPattern, error) {
	if h == "*" {
		return hostPattern{any: true}, nil
	}
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		if strings.Contains(rest, "*") {
			return hostPattern{}, errWildcard
		}
		name, addr, err := normalizeHost(rest)
		if err != nil {
			return hostPattern{}, err
		}
		if addr.IsValid() {
			return hostPattern{}, errors.New(`"*." must be followed by a domain name, not an IP address`)
		}
		return hostPattern{suffix: "." + name}, nil
	}
	if strings.Contains(h, "*") {
		return hostPattern{}, errWildcard
	}
	name, addr, err := normalizeHost(h)
	if err != nil {
		return hostPattern{}, err
	}
	return hostPattern{name: name, addr: addr}, nil
}

// match reports whether a canonical host (name, and addr for an IP literal)
// fits the pattern.
func (h hostPattern) match(name string, addr netip.Addr) bool {
	switch {
	case h.any:
		return true
	case addr.IsValid():
		return h.addr == addr
	case h.suffix != "":
		return strings.HasSuffix(name, h.suffix)
	default:
		return !h.addr.IsValid() && h.name == name
	}
}

// Denied is the error for a destination refused by policy; Reason is one line
// for the 403 body and logs.
type Denied struct{ Reason string }

// Error returns the reason with context, for when the error travels wrapped.
func (d *Denied) Error() string { return "denied by policy: " + d.Reason }

// Allow returns the first rule (as configured) that matches the target's host
// and port, or a *Denied naming the host and port when none does. The host is
// re-canonicalised, so a hand-built Target cannot slip past a rule by
// spelling. Allow does not look at resolved addresses: the caller checks each
// one with CheckAddr before dialling.
func (p *Policy) Allow(t Target) (AllowRule, error) {
	name, addr := t.Host, t.Addr
	if addr.IsValid() {
		addr = canonicalAddr(addr)
		name = addr.String()
	} else {
		var err error
		if name, addr, err = normalizeHost(t.Host); err != nil {
			return AllowRule{}, &Denied{Reason: fmt.Sprintf("host %q is not a valid host name", t.Host)}
		}
		if IsLocalhostName(name) {
			return AllowRule{}, &Denied{Reason: fmt.Sprintf("host %s is a loopback name (RFC 6761 reserves localhost and *.localhost for this machine)", name)}
		}
	}
	for _, r := range p.rules {
		if r.host.match(name, addr) && slices.Contains(r.ports, t.Port) {
			return r.rule, nil
		}
	}
	return AllowRule{}, &Denied{Reason: fmt.Sprintf("host %s port %d matches no forward.allow rule", name, t.Port)}
}

// IsLocalhostName reports whether name, canonical (lower case, no trailing dot), is localhost
// or under it: RFC 6761 reserves those names for the loopback interface, so they are refused by
// name, whatever a resolver or an allow rule would say.
func IsLocalhostName(name string) bool {
	return name == "localhost" || strings.HasSuffix(name, ".localhost")
}

// CheckAddr checks one resolved (or literal) address and port before dialling:
// the proxy's own listeners are always refused, and denied networks are
// refused unless the address is inside AllowNetworks.
func (p *Policy) CheckAddr(ip netip.Addr, port uint16) error {
	if !ip.IsValid() {
		return &Denied{Reason: "invalid destination address"}
	}
	ip = canonicalAddr(ip)
	if p.isSelf(ip, port) {
		return &Denied{Reason: fmt.Sprintf("%s is this proxy's own listener", netip.AddrPortFrom(ip, port))}
	}
	for _, n := range p.allowNetworks {
		if n.Contains(ip) {
			return nil
		}
	}
	if n, name, ok := DeniedNetwork(ip); ok {
		return &Denied{Reason: fmt.Sprintf("%s is in a denied network (%s %s)", ip, name, n)}
	}
	return nil
}

// isSelf reports whether dialling ip:port would reach one of the proxy's own
// listeners. Dialling an unspecified address reaches the local host, so it
// counts as self at any listener port.
func (p *Policy) isSelf(ip netip.Addr, port uint16) bool {
	for _, s := range p.self {
		if s.Port() != port {
			continue
		}
		if s.Addr() == ip || ip.IsUnspecified() || s.Addr().IsUnspecified() && p.isLocal(ip) {
			return true
		}
	}
	return false
}

func (p *Policy) isLocal(ip netip.Addr) bool {
	return ip.IsLoopback() || slices.Contains(p.localAddrs, ip)
}

// DeniedNetwork reports whether ip is in the built-in list of special-purpose
// networks, with the prefix and its short IANA name. IPv4-mapped IPv6
// addresses are judged by their IPv4 address; an invalid ip is in no network.
func DeniedNetwork(ip netip.Addr) (netip.Prefix, string, bool) {
	ip = canonicalAddr(ip)
	for _, n := range deniedNetworks {
		if n.prefix.Contains(ip) {
			return n.prefix, n.name, true
		}
	}
	return netip.Prefix{}, "", false
}

// canonicalAddr unmaps IPv4-mapped addresses and drops the zone, which would
// otherwise make netip.Prefix.Contains report false for every prefix.
func canonicalAddr(a netip.Addr) netip.Addr {
	return a.Unmap().WithZone("")
}

// unmapPrefix turns an IPv4-mapped IPv6 prefix into the IPv4 prefix it
// covers, since addresses are unmapped before they are matched.
func unmapPrefix(n netip.Prefix) netip.Prefix {
	n = n.Masked()
	if n.Addr().Is4In6() && n.Bits() >= 96 {
		return netip.PrefixFrom(n.Addr().Unmap(), n.Bits()-96)
	}
	return n
}

// deniedNetworks is the IANA IPv4 and IPv6 special-purpose address registries
// plus multicast, the reserved 240/4 and the deprecated IPv4-compatible and
// site-local IPv6 ranges. More specific entries come first so that the name
// reported is the most precise one. ::ffff:0:0/96 is absent because
// addresses are unmapped before lookup.
var deniedNetworks = []struct {
	prefix netip.Prefix
	name   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "this network"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private-use"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared address space (CGNAT)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private-use"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation (TEST-NET-1)"},
	{netip.MustParsePrefix("192.31.196.0/24"), "AS112-v4"},
	{netip.MustParsePrefix("192.52.193.0/24"), "AMT"},
	{netip.MustParsePrefix("192.88.99.0/24"), "deprecated 6to4 relay anycast"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private-use"},
	{netip.MustParsePrefix("192.175.48.0/24"), "direct delegation AS112 service"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation (TEST-NET-2)"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation (TEST-NET-3)"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("255.255.255.255/32"), "limited broadcast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},

	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("::/96"), "IPv4-compatible (deprecated)"},
	{netip.MustParsePrefix("64:ff9b::/96"), "IPv4-IPv6 translation (NAT64)"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "IPv4-IPv6 local-use translation"},
	{netip.MustParsePrefix("100::/64"), "discard-only"},
	{netip.MustParsePrefix("2001::/32"), "Teredo"},
	{netip.MustParsePrefix("2001::/23"), "IETF protocol assignments"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation"},
	{netip.MustParsePrefix("2002::/16"), "6to4"},
	{netip.MustParsePrefix("2620:4f:8000::/48"), "direct delegation AS112 service"},
	{netip.MustParsePrefix("3fff::/20"), "documentation"},
	{netip.MustParsePrefix("5f00::/16"), "segment routing (SRv6) SIDs"},
	{netip.MustParsePrefix("fc00::/7"), "unique-local"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("fec0::/10"), "site-local (deprecated)"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}
