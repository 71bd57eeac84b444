package proxy

// The gateway door's routes: their config, parsing, and matching a request's Host and path to
// one. A request then goes through gateway_request.go (to a backend, with retries) and the
// backend pools of gateway_pool.go; gateway_check.go runs the routes' active health checks.

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// RouteConfig is one `routes:` entry of the gateway door: requests whose Host (and path prefix)
// match are re-encrypted to the fleet behind upstream.
type RouteConfig struct {
	Host       string `yaml:"host"`
	PathPrefix string `yaml:"path_prefix"`
	// Upstream is https://name[:port]; name is resolved to the backend fleet and is the SNI and
	// certificate name expected from every backend.
	Upstream string `yaml:"upstream"`
	// Check is an optional active health check of every backend of the fleet.
	Check *CheckConfig `yaml:"check"`
	// ProxyProtocol ("v1" or "v2"; empty: off) sends every backend connection a PROXY protocol
	// header naming the client before TLS. Such connections are pooled per client address.
	ProxyProtocol string `yaml:"proxy_protocol"`
}

// CheckConfig is a route's active health check: GET path on every backend each interval.
type CheckConfig struct {
	Path     string        `yaml:"path"`
	Interval time.Duration `yaml:"interval"`
	Timeout  time.Duration `yaml:"timeout"`
}

// GatewayConfig is the `gateway:` section: settings shared by every route.
type GatewayConfig struct {
	// TrustedProxies are client networks whose X-Forwarded-For/-Host/-Proto are kept and
	// extended; from anyone else those headers are replaced.
	TrustedProxies []netip.Prefix `yaml:"trusted_proxies"`
	// MaxRetries is how many other backends one request may try after the first (default 2).
	MaxRetries int `yaml:"max_retries"`
	// RetryBudgetPercent caps retries at this share of requests over ten seconds (default 20).
	RetryBudgetPercent int `yaml:"retry_budget_percent"`
}

// DefaultGateway returns the documented defaults.
func DefaultGateway() GatewayConfig {
	return GatewayConfig{MaxRetries: 2, RetryBudgetPercent: 20}
}

// Validate checks the section; messages are relative to `gateway:`.
func (g GatewayConfig) Validate() error {
	for i, p := range g.TrustedProxies {
		if p != p.Masked() {
			return fmt.Errorf("trusted_proxies[%d]: %s has host bits set (did you mean %s?)", i, p, p.Masked())
		}
	}
	if g.MaxRetries < 0 || g.MaxRetries > 5 {
		return fmt.Errorf("max_retries: %d is outside 0..5", g.MaxRetries)
	}
	if g.RetryBudgetPercent < 0 || g.RetryBudgetPercent > 100 {
		return fmt.Errorf("retry_budget_percent: %d is outside 0..100", g.RetryBudgetPercent)
	}
	return nil
}

// ValidateRoutes checks the `routes:` list; messages carry the index (`[1].upstream: …`).
func ValidateRoutes(rs []RouteConfig) error {
	seen := map[string]int{}
	for i, r := range rs {
		if _, err := newRoute(r); err != nil {
			return fmt.Errorf("[%d].%w", i, err)
		}
		key := strings.ToLower(r.Host) + " " + r.PathPrefix
		if j, ok := seen[key]; ok {
			return fmt.Errorf("[%d]: host %q with path_prefix %q is already routed at [%d]", i, r.Host, r.PathPrefix, j)
		}
		seen[key] = i
	}
	return nil
}

// gwRoute is a parsed route.
type gwRoute struct {
	cfg       RouteConfig
	host      string // the Host it answers, lower case, no port
	prefix    string
	name      string       // upstream name (or IP literal) resolved to the fleet; SNI and Host sent
	literal   []netip.Addr // the fleet when the upstream is an IP literal; nil when it is a name
	port      uint16
	authority string // name[:port] as in the Host header sent upstream
	target    string // https://authority, for logs and reasons

	allowed   atomic.Pointer[fleetView] // the last fleet after the SSRF guard, reused while unchanged
	ppVersion byte                      // 1 or 2: a PROXY header before TLS to each backend; 0: none

	backendDuration prometheus.Observer // this route's series, resolved once
}

// fleetView is a resolver snapshot and the part of it the guard lets through.
type fleetView struct {
	from    []netip.Addr
	allowed []netip.Addr
	denied  netip.Addr // one refused address, for the reason when nothing is left
}

func newRoute(c RouteConfig) (*gwRoute, error) {
	host := strings.ToLower(strings.TrimSuffix(c.Host, "."))
	switch {
	case host == "":
		return nil, errors.New("host: empty (the Host clients send, e.g. proxy.api.example.com)")
	case strings.ContainsAny(host, "/:*@ "):
		return nil, fmt.Errorf("host: %q must be a plain host name (no port, scheme, path or wildcard)", c.Host)
	}
	if c.PathPrefix != "" && !strings.HasPrefix(c.PathPrefix, "/") {
		return nil, fmt.Errorf("path_prefix: %q must start with /", c.PathPrefix)
	}
	u, err := url.Parse(c.Upstream)
	switch {
	case c.Upstream == "":
		return nil, errors.New("upstream: empty (https://name[:port])")
	case err != nil:
		return nil, fmt.Errorf("upstream: %q: %v", c.Upstream, err)
	case u.Scheme != "https":
		return nil, fmt.Errorf("upstream: %q must be https:// (the gateway always re-encrypts)", c.Upstream)
	case u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("upstream: %q must be https://name[:port] without credentials, path or query", c.Upstream)
	case u.Hostname() == "":
		return nil, fmt.Errorf("upstream: %q has no host", c.Upstream)
	}
	r := &gwRoute{cfg: c, host: host, prefix: strings.TrimSuffix(c.PathPrefix, "/"), name: strings.ToLower(u.Hostname()), port: 443}
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("upstream: %q: port %q is not 1-65535", c.Upstream, p)
		}
		r.port = uint16(n)
	}
	if a, err := netip.ParseAddr(r.name); err == nil {
		r.literal = []netip.Addr{a.Unmap()}
	}
	r.authority = u.Host
	if r.port == 443 {
		r.authority = u.Hostname()
		if r.literal != nil && r.literal[0].Is6() {
			r.authority = "[" + r.name + "]"
		}
	}
	r.authority = strings.ToLower(r.authority)
	r.target = "https://" + r.authority
	v, err := parseProxyVersion(c.ProxyProtocol)
	if err != nil {
		return nil, err
	}
	r.ppVersion = v
	if c.Check != nil {
		switch {
		case !strings.HasPrefix(c.Check.Path, "/"):
			return nil, fmt.Errorf("check.path: %q must start with /", c.Check.Path)
		case c.Check.Interval < time.Second:
			return nil, fmt.Errorf("check.interval: %s, must be at least 1s", c.Check.Interval)
		case c.Check.Timeout < 0 || c.Check.Timeout > c.Check.Interval:
			return nil, fmt.Errorf("check.timeout: %s must be between 0 (default 2s) and the interval", c.Check.Timeout)
		}
	}
	return r, nil
}

// matches reports whether path is under the route's prefix (whole segments only).
func (r *gwRoute) matches(path string) bool {
	return r.prefix == "" || path == r.prefix || (strings.HasPrefix(path, r.prefix) && path[len(r.prefix)] == '/')
}

// gateway holds the routes, longest prefix first per host.
type gateway struct {
	byHost map[string][]*gwRoute
	routes []*gwRoute
}

func newGateway(cfgs []RouteConfig) (*gateway, error) {
	g := &gateway{byHost: map[string][]*gwRoute{}}
	for i, c := range cfgs {
		r, err := newRoute(c)
		if err != nil {
			return nil, fmt.Errorf("routes[%d].%w", i, err)
		}
		g.routes = append(g.routes, r)
		g.byHost[r.host] = append(g.byHost[r.host], r)
	}
	for _, rs := range g.byHost {
		slices.SortStableFunc(rs, func(a, b *gwRoute) int { return len(b.prefix) - len(a.prefix) })
	}
	return g, nil
}

// match returns the route for a request's Host and path, or nil.
func (g *gateway) match(hostport, path string) *gwRoute {
	if len(g.byHost) == 0 {
		return nil
	}
	host := hostWithoutPort(hostport)
	rs := g.byHost[host]
	if rs == nil {
		rs = g.byHost[strings.ToLower(strings.TrimSuffix(host, "."))]
	}
	for _, r := range rs {
		if r.matches(path) {
			return r
		}
	}
	return nil
}

// hostWithoutPort strips a trailing :port and the brackets of an IPv6 literal, without the
// error allocation net.SplitHostPort makes for a Host that has no port.
func hostWithoutPort(hostport string) string {
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && strings.IndexByte(hostport[i:], ']') < 0 {
		if strings.IndexByte(hostport[:i], ':') >= 0 && hostport[0] != '[' {
			return hostport // a bare IPv6 literal
		}
		hostport = hostport[:i]
	}
	if len(hostport) > 1 && hostport[0] == '[' && hostport[len(hostport)-1] == ']' {
		return hostport[1 : len(hostport)-1]
	}
	return hostport
}
