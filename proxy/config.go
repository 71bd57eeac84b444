// Package proxy holds fixedgate's listeners and doors: the forward door (CONNECT tunnels and
// absolute-form HTTP requests, the HTTPS_PROXY/HTTP_PROXY use) and the gateway door (routes to
// backend fleets), with their authentication, policy, limits and egress. Sub-packages own the
// parts with one job each: policy (which destinations), egress (from which source IP),
// resolver (which addresses a name has), health (which backends to avoid), limit (what one
// customer may hold), h1server and h1wire (HTTP/1.1), probe and status (the status page).
//
// A request's path, file by file:
//
//   - listener.go: accept, bounded per listener;
//   - accept.go: the PROXY header from a trusted balancer (proxyheader.go), the TLS handshake,
//     ALPN; alpn.go sniffs what an h2 client really speaks, h2guard.go checks HTTP/2 frames;
//   - forward.go: Server.ServeHTTP picks the door; CONNECT and absolute-form requests are
//     authenticated (auth.go), limited, checked against the policy, resolved and dialled from
//     an egress address; tunnel.go and relay_*.go carry a tunnel's bytes;
//   - gateway.go: a route for the Host and path; gateway_request.go sends the request to a
//     backend of its fleet, with retries; gateway_pool.go keeps the connections to backends;
//     gateway_check.go probes them;
//   - record.go and metrics.go: the summary line and the metrics of each request;
//   - settings.go: what a reload swaps in; server.go ties it together and shuts it down.
package proxy

import (
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/fixedgate/fixedgate/proxy/limit"
	"github.com/fixedgate/fixedgate/proxy/policy"
)

// ListenConfig is one `listen:` entry: a fixed ingress address and whether it speaks TLS.
type ListenConfig struct {
	Address       string           `yaml:"address"`
	TLS           bool             `yaml:"tls"`
	ProxyProtocol *ProxyProtocolIn `yaml:"proxy_protocol"`
}

// ProxyProtocolIn is `listen[].proxy_protocol`: connections from the Trusted networks (the TCP
// load balancers in front) must start with a PROXY protocol header, v1 or v2, whose source
// address then stands for the client everywhere (logs, X-Forwarded-For, egress stickiness,
// per-client limits); with Optional, a trusted connection may also come without one. A header
// from any other address is refused: a client must not choose its own address.
type ProxyProtocolIn struct {
	Trusted  []netip.Prefix `yaml:"trusted"`
	Optional bool           `yaml:"optional"`
}

// trusts reports whether a is in one of the trusted networks.
func (p *ProxyProtocolIn) trusts(a netip.Addr) bool {
	a = a.Unmap()
	for _, n := range p.Trusted {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// AddrPort returns the parsed address; Validate has checked it.
func (l ListenConfig) AddrPort() netip.AddrPort {
	ap, _ := parseListen(l.Address)
	return ap
}

func parseListen(s string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q must be IP:port (e.g. 203.0.113.10:443 or [2001:db8::10]:443): %v", s, err)
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: %q is not an IP address (listeners bind fixed IPs, not names)", s, host)
	}
	if a.Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("%q: zones are not supported", s)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return netip.AddrPort{}, fmt.Errorf("%q: port %q is not 1-65535", s, port)
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(p)), nil
}

// ValidateListen checks the `listen:` list; messages carry the index (`[1].address: …`).
func ValidateListen(ls []ListenConfig) error {
	seen := map[netip.AddrPort]int{}
	for i, l := range ls {
		ap, err := parseListen(l.Address)
		if err != nil {
			return fmt.Errorf("[%d].address: %w", i, err)
		}
		if j, ok := seen[ap]; ok {
			return fmt.Errorf("[%d].address: %s is already listed at [%d]", i, ap, j)
		}
		seen[ap] = i
		if pp := l.ProxyProtocol; pp != nil {
			if len(pp.Trusted) == 0 {
				return fmt.Errorf("[%d].proxy_protocol.trusted: list the networks of the load balancers that send the header (e.g. [10.0.0.0/8])", i)
			}
			for j, n := range pp.Trusted {
				if n != n.Masked() {
					return fmt.Errorf("[%d].proxy_protocol.trusted[%d]: %s has host bits set (did you mean %s?)", i, j, n, n.Masked())
				}
			}
		}
	}
	return nil
}

// User is one `forward.users` entry: a Basic credential whose key is stored only as a SHA-256,
// and, optionally, limits of its own in place of limits.per_client (a field left out inherits).
type User struct {
	Name      string       `yaml:"name"`
	KeySHA256 string       `yaml:"key_sha256"`
	Limits    limit.Config `yaml:"limits"`
}

// ForwardConfig is the `forward:` section: the HTTPS_PROXY door.
type ForwardConfig struct {
	Users         []User             `yaml:"users"`
	Allow         []policy.AllowRule `yaml:"allow"`
	AllowNetworks []netip.Prefix     `yaml:"allow_networks"`
}

// Validate checks the section; messages are relative to `forward:`.
func (f ForwardConfig) Validate() error {
	names := map[string]bool{}
	for i, u := range f.Users {
		switch {
		case u.Name == "":
			return fmt.Errorf("users[%d].name: empty", i)
		case containsColon(u.Name):
			return fmt.Errorf("users[%d].name: %q contains ':', which Basic credentials cannot carry", i, u.Name)
		case names[u.Name]:
			return fmt.Errorf("users[%d].name: %q is listed twice", i, u.Name)
		}
		names[u.Name] = true
		if b, err := hex.DecodeString(u.KeySHA256); err != nil || len(b) != 32 {
			return fmt.Errorf("users[%d].key_sha256: must be 64 hex digits (sha256 of the key: printf %%s KEY | sha256sum)", i)
		}
		if err := u.Limits.ValidateOverride(); err != nil {
			return fmt.Errorf("users[%d].limits.%w", i, err)
		}
	}
	for i, r := range f.Allow {
		if err := r.Validate(); err != nil {
			return fmt.Errorf("allow[%d].%w", i, err)
		}
	}
	for i, p := range f.AllowNetworks {
		if p != p.Masked() {
			return fmt.Errorf("allow_networks[%d]: %s has host bits set (did you mean %s?)", i, p, p.Masked())
		}
	}
	return nil
}

func containsColon(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			return true
		}
	}
	return false
}

// Limits bound what one client can hold or cost; every field has a production default.
type Limits struct {
	ReadHeaderTimeout     time.Duration `yaml:"read_header_timeout"`
	MaxHeaderBytes        int           `yaml:"max_header_bytes"`
	DialTimeout           time.Duration `yaml:"dial_timeout"`
	ResponseHeaderTimeout time.Duration `yaml:"response_header_timeout"`
	IdleTimeout           time.Duration `yaml:"idle_timeout"`
	SendTimeout           time.Duration `yaml:"send_timeout"`
	TunnelIdleTimeout     time.Duration `yaml:"tunnel_idle_timeout"`
	MaxConnsPerListener   int           `yaml:"max_conns_per_listener"`
	// PerClient bounds each user (each client address without credentials): tunnels and
	// requests at once, and new ones per second. AuthFailures slows key guessing per address.
	PerClient    limit.Config       `yaml:"per_client"`
	AuthFailures limit.AuthFailures `yaml:"auth_failures"`
}

// DefaultLimits returns the documented defaults (see deploy/fixedgate.example.yaml).
func DefaultLimits() Limits {
	return Limits{
		ReadHeaderTimeout:     10 * time.Second,
		MaxHeaderBytes:        32 << 10,
		DialTimeout:           10 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		IdleTimeout:           90 * time.Second,
		SendTimeout:           60 * time.Second,
		TunnelIdleTimeout:     5 * time.Minute,
		MaxConnsPerListener:   10000,
		PerClient:             limit.Defaults(),
		AuthFailures:          limit.DefaultAuthFailures(),
	}
}

// Validate checks the section; messages are relative to `limits:`.
func (l Limits) Validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"read_header_timeout", l.ReadHeaderTimeout},
		{"dial_timeout", l.DialTimeout},
		{"response_header_timeout", l.ResponseHeaderTimeout},
		{"idle_timeout", l.IdleTimeout},
		{"send_timeout", l.SendTimeout},
		{"tunnel_idle_timeout", l.TunnelIdleTimeout},
	} {
		if d.v <= 0 {
			return fmt.Errorf("%s: must be positive", d.name)
		}
	}
	if l.MaxHeaderBytes < 4096 || l.MaxHeaderBytes > 1<<20 {
		return fmt.Errorf("max_header_bytes: %d is outside 4096..1048576", l.MaxHeaderBytes)
	}
	if l.MaxConnsPerListener < 1 {
		return fmt.Errorf("max_conns_per_listener: must be at least 1")
	}
	if err := l.PerClient.Validate(); err != nil {
		return fmt.Errorf("per_client.%w", err)
	}
	if err := l.AuthFailures.Validate(); err != nil {
		return fmt.Errorf("auth_failures.%w", err)
	}
	return nil
}
