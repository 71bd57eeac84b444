// Package probe runs requests that walk a customer's path through the proxy's own public
// listener (listener, TLS, credentials, policy, resolver, health, egress address, backend), on
// an interval, and keeps what they saw: the last result for metrics and readiness, and an
// hourly history of availability and latency for the status page, persisted so that a restart
// loses nothing. Internal metrics can look fine while customers fail; these cannot.
package probe

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"time"
)

// Config is one `probes:` entry.
type Config struct {
	Name string `yaml:"name"`
	// URL is what a customer fetches: https://host[:port]/path.
	URL string `yaml:"url"`
	// Via is the door: connect (the proxy as HTTPS_PROXY: CONNECT, or an absolute-form request
	// for an http:// URL) or gateway (a GET to the TLS listener, routed by the URL's host).
	Via string `yaml:"via"`
	// Listener is one of listen[]'s addresses: the probe enters where customers enter.
	Listener string `yaml:"listener"`
	// User and Key are a forward.users name and its key in clear (use ${ENV}), for doors that
	// ask for credentials.
	User string `yaml:"user"`
	Key  string `yaml:"key"`
	// Interval between two runs (at least 1s); Timeout bounds one run (default 5s, at most
	// Interval); ExpectStatus is the status that counts as success (default 200).
	Interval     time.Duration `yaml:"interval"`
	Timeout      time.Duration `yaml:"timeout"`
	ExpectStatus int           `yaml:"expect_status"`
	// Readiness makes /readyz fail after 3 failures in a row.
	Readiness bool `yaml:"readiness"`
	// CAFile, when set, is the PEM bundle that verifies the target's certificate (connect) or
	// the listener's (gateway) instead of the proxy's own trust (upstream_tls.ca_file, or the
	// local CA of tls.self_signed, or the system roots).
	CAFile string `yaml:"ca_file"`
}

// Via values.
const (
	ViaConnect = "connect"
	ViaGateway = "gateway"
)

// Defaults fills what an entry leaves out.
func (c Config) withDefaults() Config {
	if c.Interval == 0 {
		c.Interval = 30 * time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = min(5*time.Second, c.Interval)
	}
	if c.ExpectStatus == 0 {
		c.ExpectStatus = 200
	}
	return c
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// Validate checks the list alone (messages carry the index: `[1].url: …`); the caller checks
// listener, user and key against the other sections.
func Validate(cs []Config) error {
	seen := map[string]int{}
	for i, c := range cs {
		if err := c.validate(); err != nil {
			return fmt.Errorf("[%d].%w", i, err)
		}
		if j, ok := seen[c.Name]; ok {
			return fmt.Errorf("[%d].name: %q is already used by [%d]", i, c.Name, j)
		}
		seen[c.Name] = i
	}
	return nil
}

func (c Config) validate() error {
	c = c.withDefaults()
	if !nameRE.MatchString(c.Name) {
		return fmt.Errorf("name: %q must be 1-63 of a-z 0-9 . _ - (it is a metric label and a file key)", c.Name)
	}
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		return errors.New("url: empty (the address a customer fetches, e.g. https://api.example.com/healthz)")
	case err != nil:
		return fmt.Errorf("url: %v", err)
	case u.Host == "" || u.User != nil:
		return fmt.Errorf("url: %q must be http(s)://host[:port]/path without credentials", c.URL)
	case u.Scheme != "https" && !(u.Scheme == "http" && c.Via == ViaConnect):
		return fmt.Errorf("url: %q must be https:// (http:// only with via: connect, as an HTTP_PROXY client would send it)", c.URL)
	}
	switch c.Via {
	case ViaConnect, ViaGateway:
	default:
		return fmt.Errorf("via: %q is not connect or gateway", c.Via)
	}
	switch {
	case c.Listener == "":
		return errors.New("listener: empty (one of listen[]: the probe enters where customers do)")
	case c.User == "" && c.Key != "":
		return errors.New("user: empty while key is set")
	case c.User != "" && c.Key == "":
		return errors.New("key: empty while user is set (the key in clear; use ${ENV})")
	case c.Interval < time.Second:
		return fmt.Errorf("interval: %s, must be at least 1s", c.Interval)
	case c.Timeout <= 0 || c.Timeout > c.Interval:
		return fmt.Errorf("timeout: %s must be positive and at most the interval (%s)", c.Timeout, c.Interval)
	case c.ExpectStatus < 100 || c.ExpectStatus > 599:
		return fmt.Errorf("expect_status: %d is not an HTTP status", c.ExpectStatus)
	}
	return nil
}
