package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/fixedgate/fixedgate/cmd/fixedgate/internal/strictyaml"
	"github.com/fixedgate/fixedgate/ipranges"
	"github.com/fixedgate/fixedgate/proxy"
	"github.com/fixedgate/fixedgate/proxy/egress"
	"github.com/fixedgate/fixedgate/proxy/health"
	"github.com/fixedgate/fixedgate/proxy/policy"
	"github.com/fixedgate/fixedgate/proxy/resolver"
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
	sum := sha256.Sum256(data)
	return &cfg, hex.EncodeToString(sum[:]), nil
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
