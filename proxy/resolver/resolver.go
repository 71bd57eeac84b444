// Package resolver turns target names into IP addresses for both doors. This first version asks
// the configured DNS servers (or the system's) through Go's resolver on every lookup; the
// TTL-aware fleet cache described in DESIGN.md replaces its internals without changing its API.
package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"
)

// Config is the `resolver:` section of the configuration.
type Config struct {
	Servers      []string      `yaml:"servers"` // host:port or IP (port 53); empty: /etc/resolv.conf
	MinTTL       time.Duration `yaml:"min_ttl"`
	MaxTTL       time.Duration `yaml:"max_ttl"`
	StaleIfError time.Duration `yaml:"stale_if_error"`
	CacheSize    int           `yaml:"cache_size"`
	Timeout      time.Duration `yaml:"timeout"` // one lookup, all servers and retries
}

// Defaults returns the documented defaults.
func Defaults() Config {
	return Config{MinTTL: 5 * time.Second, MaxTTL: 5 * time.Minute, StaleIfError: 10 * time.Minute, CacheSize: 4096, Timeout: 5 * time.Second}
}

// Validate checks the section; messages are relative to `resolver:`.
func (c Config) Validate() error {
	for i, s := range c.Servers {
		if _, err := serverAddr(s); err != nil {
			return fmt.Errorf("servers[%d]: %w", i, err)
		}
	}
	switch {
	case c.MinTTL > c.MaxTTL:
		return fmt.Errorf("min_ttl: %s is above max_ttl %s", c.MinTTL, c.MaxTTL)
	case c.CacheSize < 1:
		return fmt.Errorf("cache_size: %d, must be at least 1", c.CacheSize)
	case c.Timeout <= 0:
		return fmt.Errorf("timeout: must be positive")
	}
	return nil
}

func serverAddr(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not an IP or IP:port", s)
	}
	return netip.AddrPortFrom(a, 53), nil
}

// ErrNotFound is returned for names that do not exist or have no A/AAAA records.
var ErrNotFound = errors.New("no such host")

// Resolver looks up A and AAAA records.
type Resolver struct {
	r       *net.Resolver
	timeout time.Duration
}

// New returns a Resolver for cfg.
func New(cfg Config) (*Resolver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Resolver{r: &net.Resolver{PreferGo: true}, timeout: cfg.Timeout}
	if len(cfg.Servers) > 0 {
		servers := make([]string, len(cfg.Servers))
		for i, s := range cfg.Servers {
			ap, _ := serverAddr(s)
			servers[i] = ap.String()
		}
		var next atomic.Uint32
		r.r.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, servers[int(next.Add(1))%len(servers)])
		}
	}
	return r, nil
}

// LookupNetIP returns the addresses of host, IPv4 first.
func (r *Resolver) LookupNetIP(ctx context.Context, host string) ([]netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	addrs, err := r.r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			return nil, fmt.Errorf("resolve %s: %w", host, ErrNotFound)
		}
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if a.Unmap().Is4() {
			out = append(out, a.Unmap())
		}
	}
	for _, a := range addrs {
		if !a.Unmap().Is4() {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("resolve %s: %w", host, ErrNotFound)
	}
	return out, nil
}
