package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fixedgate/fixedgate/cmd/fixedgate/internal/strictyaml"
	"github.com/fixedgate/fixedgate/ipranges"
	"github.com/fixedgate/fixedgate/proxy"
	"github.com/fixedgate/fixedgate/proxy/egress"
	"github.com/fixedgate/fixedgate/proxy/health"
	"github.com/fixedgate/fixedgate/proxy/policy"
	"github.com/fixedgate/fixedgate/proxy/probe"
	"github.com/fixedgate/fixedgate/proxy/resolver"
	"github.com/fixedgate/fixedgate/proxy/status"
	fgtls "github.com/fixedgate/fixedgate/tls"
)

// Config is the whole YAML file. Each section belongs to the package that uses it; this type only
// composes them, sets defaults and prefixes validation messages with the section's key.
type Config struct {
	Listen        []proxy.ListenConfig `yaml:"listen"`
	PublicIPs     []netip.Addr         `yaml:"public_ips"`
	TLS           fgtls.Config         `yaml:"tls"`
	Egress        egress.Config        `yaml:"egress"`
	Resolver      resolver.Config      `yaml:"resolver"`
	Forward       proxy.ForwardConfig  `yaml:"forward"`
	Routes        []proxy.RouteConfig  `yaml:"routes"`
	Gateway       proxy.GatewayConfig  `yaml:"gateway"`
	Health        health.Config        `yaml:"health"`
	UpstreamTLS   fgtls.UpstreamConfig `yaml:"upstream_tls"`
	Limits        proxy.Limits         `yaml:"limits"`
	Admin         AdminConfig          `yaml:"admin"`
	Log           LogConfig            `yaml:"log"`
	IPRanges      ipranges.Config      `yaml:"ipranges"`
	ShutdownGrace time.Duration        `yaml:"shutdown_grace"`
	Probes        []probe.Config       `yaml:"probes"`
	Status        status.Config        `yaml:"status"`
}

// AdminConfig is the `admin:` section: the operator's listener for /metrics, /healthz, /readyz.
type AdminConfig struct {
	Listen string `yaml:"listen"` // empty: no admin listener
}

// LogConfig is the `log:` section.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // json or console
	// FlushInterval, when set, buffers log lines (64 KiB) and writes them at least this often,
	// as nginx's access_log buffer=/flush= does: one write per batch instead of per request.
	// Warnings and errors are written at once. A crash loses at most this much of the log.
	FlushInterval time.Duration `yaml:"flush_interval"`
}

func defaultConfig() Config {
	return Config{
		Resolver:      resolver.Defaults(),
		Limits:        proxy.DefaultLimits(),
		Gateway:       proxy.DefaultGateway(),
		Health:        health.Defaults(),
		IPRanges:      ipranges.Defaults(),
		Admin:         AdminConfig{Listen: "127.0.0.1:9090"},
		Status:        status.Defaults(),
		Log:           LogConfig{Level: "info", Format: "json"},
		ShutdownGrace: 30 * time.Second,
	}
}

// loadConfig reads, decodes and validates path; every problem names its key path.
func loadConfig(path string) (*Config, error) {
	cfg, _, err := readConfig(path)
	return cfg, err
}

// readConfig is loadConfig that also returns the SHA-256 of the file's bytes, which says which
// config is running (fixedgate_config_info).
func readConfig(path string) (*Config, string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("read config: %w", err)
	}
	cfg := defaultConfig()
	if err := strictyaml.Decode(data, &cfg); err != nil {
		return nil, "", fmt.Errorf("config %s:\n%w", path, indent(err))
	}
	if err := cfg.validate(); err != nil {
		return nil, "", fmt.Errorf("config %s:\n%w", path, indent(err))
	}
	return &cfg, sha256Hex(data), nil
}

func indent(err error) error {
	lines := strings.Split(err.Error(), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return errors.New(strings.Join(lines, "\n"))
}

// validate checks every section and the rules that span sections.
func (c *Config) validate() error {
	var errs []error
	section := func(key string, err error) {
		if err != nil {
			sep := "."
			if strings.HasPrefix(err.Error(), "[") {
				sep = ""
			}
			errs = append(errs, fmt.Errorf("%s%s%w", key, sep, err))
		}
	}
	if len(c.Listen) == 0 {
		errs = append(errs, errors.New("listen: at least one listener is required"))
	}
	section("listen", proxy.ValidateListen(c.Listen))
	section("egress", c.Egress.Validate())
	section("resolver", c.Resolver.Validate())
	section("forward", c.Forward.Validate())
	section("routes", proxy.ValidateRoutes(c.Routes))
	section("gateway", c.Gateway.Validate())
	section("health", c.Health.Validate())
	section("ipranges", c.IPRanges.Validate())
	section("upstream_tls", c.UpstreamTLS.Validate())
	section("limits", c.Limits.Validate())
	section("probes", probe.Validate(c.Probes))
	section("status", c.Status.Validate())
	errs = append(errs, c.validateProbes()...)
	if err := c.TLS.Validate(); err != nil {
		section("tls", err)
	}
	for i, l := range c.Listen {
		if l.TLS && c.TLS.ACME == nil && len(c.TLS.Files) == 0 && c.TLS.SelfSigned == nil {
			errs = append(errs, fmt.Errorf("tls: listen[%d] has tls: true but no certificate source is set (tls.acme, tls.files or tls.self_signed)", i))
			break
		}
	}
	if c.Admin.Listen != "" {
		if _, err := netip.ParseAddrPort(c.Admin.Listen); err != nil {
			errs = append(errs, fmt.Errorf("admin.listen: %q must be IP:port (e.g. 127.0.0.1:9090)", c.Admin.Listen))
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level: %q is not one of debug, info, warn, error", c.Log.Level))
	}
	switch c.Log.Format {
	case "json", "console":
	default:
		errs = append(errs, fmt.Errorf("log.format: %q is not json or console", c.Log.Format))
	}
	if c.Log.FlushInterval < 0 || c.Log.FlushInterval > 10*time.Second {
		errs = append(errs, fmt.Errorf("log.flush_interval: %s must be between 0 (write every line) and 10s", c.Log.FlushInterval))
	}
	return errors.Join(errs...)
}

// validateProbes checks the probes against the sections they name: a listener of listen[], the
// gateway door on a TLS listener with a route for the URL's host, and a forward.users name whose
// key_sha256 the probe's key matches (a wrong key would only show as a probe failing forever).
func (c *Config) validateProbes() []error {
	var errs []error
	for i, p := range c.Probes {
		var ln *proxy.ListenConfig
		for j := range c.Listen {
			if la, err := netip.ParseAddrPort(p.Listener); err == nil && la == c.Listen[j].AddrPort() {
				ln = &c.Listen[j]
			}
		}
		if ln == nil {
			errs = append(errs, fmt.Errorf("probes[%d].listener: %s is not one of listen[] (the probe enters where customers do)", i, p.Listener))
			continue
		}
		if p.Via == probe.ViaGateway {
			u, err := url.Parse(p.URL)
			host := ""
			if err == nil {
				host = strings.ToLower(u.Hostname())
			}
			switch {
			case !ln.TLS:
				errs = append(errs, fmt.Errorf("probes[%d].listener: %s is a plain listener; via: gateway needs a TLS one", i, p.Listener))
			case !slices.Contains(c.routeHosts(), host):
				errs = append(errs, fmt.Errorf("probes[%d].url: no route answers host %q", i, host))
			case p.User != "":
				errs = append(errs, fmt.Errorf("probes[%d].user: the gateway door takes no proxy credentials", i))
			}
			continue
		}
		if p.User == "" {
			continue
		}
		k := slices.IndexFunc(c.Forward.Users, func(u proxy.User) bool { return u.Name == p.User })
		switch {
		case k < 0:
			errs = append(errs, fmt.Errorf("probes[%d].user: %q is not a forward.users name", i, p.User))
		case sha256Hex([]byte(p.Key)) != strings.ToLower(c.Forward.Users[k].KeySHA256):
			errs = append(errs, fmt.Errorf("probes[%d].key: does not match forward.users[%d].key_sha256 of %q", i, k, p.User))
		}
	}
	return errs
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// stateDir is where the files beside the contract live (probe history, status incidents);
// empty without ipranges.state.
func (c *Config) stateDir() string {
	if c.IPRanges.State == "" {
		return ""
	}
	return filepath.Dir(c.IPRanges.State)
}

// listenIPs returns the listener IPs, for the self-signed certificate's SANs.
func (c *Config) listenIPs() []netip.Addr {
	var ips []netip.Addr
	for _, l := range c.Listen {
		if a := l.AddrPort().Addr(); !a.IsUnspecified() {
			ips = append(ips, a)
		}
	}
	return ips
}

// routeHosts returns the names the gateway answers, for the self-signed certificate.
func (c *Config) routeHosts() []string {
	var hosts []string
	for _, r := range c.Routes {
		if h := strings.ToLower(strings.TrimSuffix(r.Host, ".")); h != "" && !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

func (c *Config) hasTLSListener() bool {
	for _, l := range c.Listen {
		if l.TLS {
			return true
		}
	}
	return false
}

// devConfig is `serve` without --config: a loopback setup for trying the proxy on a laptop.
func devConfig(dataDir string) Config {
	c := defaultConfig()
	c.Listen = []proxy.ListenConfig{{Address: "127.0.0.1:3128"}, {Address: "127.0.0.1:3129", TLS: true}}
	c.TLS.SelfSigned = &fgtls.SelfSignedConfig{Dir: dataDir}
	c.Forward.Allow = []policy.AllowRule{{Host: "*", Ports: []int{443}}, {Host: "*", Ports: []int{80}}}
	c.Log.Format = "console"
	return c
}

func hostPort(ap netip.AddrPort) string {
	return net.JoinHostPort(ap.Addr().String(), fmt.Sprint(ap.Port()))
}
