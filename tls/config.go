// Package tls provides the certificates for fixedgate's TLS listeners and the
// TLS settings for connections from the proxy to origins and backends.
//
// Listener certificates are held by certmagic: from files, from a local
// development CA (`self_signed`), and later from ACME. The package owns the
// `tls:` and `upstream_tls:` sections of the configuration; error messages
// from Validate name keys relative to those sections.
package tls

import (
	gotls "crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Config is the `tls:` section: where the listener certificate comes from and
// how the listener's TLS is set up. Exactly one certificate source (ACME,
// Files or SelfSigned) is used; whether one is needed at all depends on
// whether a TLS listener exists, which the caller decides.
type Config struct {
	// ACME obtains and renews certificates from an ACME CA.
	ACME *ACMEConfig `yaml:"acme"`
	// Files are certificate and key PEM files the operator provides.
	Files []FilePair `yaml:"files"`
	// SelfSigned issues the listener certificate from a local CA kept in a
	// directory, for development and demos.
	SelfSigned *SelfSignedConfig `yaml:"self_signed"`
	// DefaultName selects the certificate for clients that send no SNI, as
	// clients using an IP-literal proxy URL do.
	DefaultName string `yaml:"default_name"`
	// ClientCA is a PEM file of CAs; when set, clients must present a
	// certificate issued by one of them (mTLS identities).
	ClientCA string `yaml:"client_ca"`
	// MinVersion is "1.2" (the default) or "1.3"; older versions are refused.
	MinVersion string `yaml:"min_version"`
	// Curves restricts the key exchanges offered, by name (case-insensitive),
	// e.g. [X25519MLKEM768, X25519, P256]. Empty means Go's default set.
	// Go picks among the allowed ones in its own preference order, so the
	// order of this list does not matter.
	Curves []string `yaml:"curves"`

	// ListenerAddress is the host:port of the TLS listener, where ACME
	// TLS-ALPN-01 challenges are answered; the caller sets it from
	// `listen`. Empty: TLS-ALPN-01 is not offered.
	ListenerAddress string `yaml:"-"`
}

// ACMEConfig is the `tls.acme:` section: certmagic-managed certificates for
// exactly Domains, through TLS-ALPN-01 on the TLS listener and HTTP-01 on
// HTTPListen.
type ACMEConfig struct {
	// Email is the ACME account contact.
	Email string `yaml:"email"`
	// Domains are the only names certificates are obtained for; there is no
	// on-demand issuance for arbitrary SNI.
	Domains []string `yaml:"domains"`
	// CA is the ACME directory URL; empty means Let's Encrypt production.
	CA string `yaml:"ca"`
	// CARoot is a PEM file trusted for a private ACME server's own TLS.
	CARoot string `yaml:"ca_root"`
	// Storage is the certificate storage directory, which a fleet of nodes
	// may share to share one certificate.
	Storage string `yaml:"storage"`
	// HTTPListen is where HTTP-01 challenges are answered.
	HTTPListen string `yaml:"http_listen"`
	// RenewCheckInterval is how often certificates are checked for
	// renewal (and ACME renewal information refreshed); 0 means
	// certmagic's default of 10 minutes. Short-lived certificates need
	// a shorter interval.
	RenewCheckInterval time.Duration `yaml:"renew_check_interval"`
}

// FilePair is one certificate chain and its private key, both PEM files.
type FilePair struct {
	// Cert is the certificate chain file, leaf first.
	Cert string `yaml:"cert"`
	// Key is the private key file.
	Key string `yaml:"key"`
}

// SelfSignedConfig is the `tls.self_signed:` section.
type SelfSignedConfig struct {
	// Dir holds the local CA (ca.crt, ca.key); it is created if missing, and
	// the CA in it is reused across restarts so clients trust it once.
	Dir string `yaml:"dir"`
	// Names are further DNS names for the issued certificate; serve adds every route's host.
	Names []string `yaml:"names"`
}

// UpstreamConfig is the `upstream_tls:` section: TLS from the proxy to
// origins and backends. Certificate verification is always on.
type UpstreamConfig struct {
	// CAFile is a PEM file of roots that replaces the system roots; empty
	// means the system roots.
	CAFile string `yaml:"ca_file"`
	// ClientCert is the proxy's client certificate (PEM chain) for mTLS to
	// application servers; set together with ClientKey.
	ClientCert string `yaml:"client_cert"`
	// ClientKey is the private key for ClientCert.
	ClientKey string `yaml:"client_key"`
	// MinVersion is "1.2" (the default) or "1.3".
	MinVersion string `yaml:"min_version"`
}

type curveName struct {
	name string
	id   gotls.CurveID
	// hybrid key exchanges exist only in TLS 1.3.
	tls13Only bool
}

// knownCurves is in the order error messages list them.
var knownCurves = []curveName{
	{"X25519MLKEM768", gotls.X25519MLKEM768, true},
	{"SecP256r1MLKEM768", gotls.SecP256r1MLKEM768, true},
	{"SecP384r1MLKEM1024", gotls.SecP384r1MLKEM1024, true},
	{"X25519", gotls.X25519, false},
	{"P256", gotls.CurveP256, false},
	{"P384", gotls.CurveP384, false},
	{"P521", gotls.CurveP521, false},
}

// curveAliases are other common spellings of the same key exchanges.
var curveAliases = map[string]gotls.CurveID{
	"p-256":      gotls.CurveP256,
	"secp256r1":  gotls.CurveP256,
	"prime256v1": gotls.CurveP256,
	"p-384":      gotls.CurveP384,
	"secp384r1":  gotls.CurveP384,
	"p-521":      gotls.CurveP521,
	"secp521r1":  gotls.CurveP521,
}

func knownCurveList() string {
	names := make([]string, len(knownCurves))
	for i, c := range knownCurves {
		names[i] = c.name
	}
	return strings.Join(names, ", ")
}

func lookupCurve(name string) (gotls.CurveID, bool) {
	for _, c := range knownCurves {
		if strings.EqualFold(c.name, name) {
			return c.id, true
		}
	}
	id, ok := curveAliases[strings.ToLower(name)]
	return id, ok
}

func curveTLS13Only(id gotls.CurveID) bool {
	for _, c := range knownCurves {
		if c.id == id {
			return c.tls13Only
		}
	}
	return false
}

// ParseCurves maps configured key exchange names (case-insensitive) to Go's
// curve IDs. Errors name the offending entry as `curves[i]`. An empty list
// returns nil, which means Go's default set.
func ParseCurves(names []string) ([]gotls.CurveID, error) {
	if len(names) == 0 {
		return nil, nil
	}
	ids := make([]gotls.CurveID, 0, len(names))
	seen := make(map[gotls.CurveID]int, len(names))
	for i, raw := range names {
		name := strings.TrimSpace(raw)
		if name == "" {
			return nil, fmt.Errorf("curves[%d]: empty", i)
		}
		id, ok := lookupCurve(name)
		if !ok {
			return nil, fmt.Errorf("curves[%d]: unknown curve %q (known: %s)", i, raw, knownCurveList())
		}
		if j, dup := seen[id]; dup {
			return nil, fmt.Errorf("curves[%d]: %q repeats curves[%d]", i, raw, j)
		}
		seen[id] = i
		ids = append(ids, id)
	}
	return ids, nil
}

// parseMinVersion maps a min_version value to Go's TLS version constant.
func parseMinVersion(v string) (uint16, error) {
	switch strings.TrimSpace(v) {
	case "", "1.2":
		return gotls.VersionTLS12, nil
	case "1.3":
		return gotls.VersionTLS13, nil
	case "1.0", "1.1", "1":
		return 0, fmt.Errorf("min_version: %q is below the minimum 1.2", v)
	default:
		return 0, fmt.Errorf("min_version: unknown TLS version %q (known: 1.2, 1.3)", v)
	}
}

// Validate checks the section for consistency without opening any file: at
// most one certificate source, well-formed names, a known min_version and
// curves. Each problem is reported relative to the `tls:` key, e.g.
// `files[0].key: empty`.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	var sources []string
	if c.ACME != nil {
		sources = append(sources, "acme")
	}
	if len(c.Files) > 0 {
		sources = append(sources, "files")
	}
	if c.SelfSigned != nil {
		sources = append(sources, "self_signed")
	}
	if len(sources) > 1 {
		add("only one of acme, files, self_signed may be set (found: %s)", strings.Join(sources, ", "))
	}

	if a := c.ACME; a != nil {
		errs = append(errs, a.validate()...)
	}
	for i, f := range c.Files {
		if strings.TrimSpace(f.Cert) == "" {
			add("files[%d].cert: empty", i)
		}
		if strings.TrimSpace(f.Key) == "" {
			add("files[%d].key: empty", i)
		}
	}
	if s := c.SelfSigned; s != nil && strings.TrimSpace(s.Dir) == "" {
		add("self_signed.dir: empty")
	}
	if c.DefaultName != "" {
		if _, err := netip.ParseAddr(c.DefaultName); err != nil && !validHostName(c.DefaultName) {
			add("default_name: %q is not a host name or IP address", c.DefaultName)
		}
	}
	minVersion, err := parseMinVersion(c.MinVersion)
	if err != nil {
		errs = append(errs, err)
	}
	curves, err := ParseCurves(c.Curves)
	if err != nil {
		errs = append(errs, err)
	}
	if len(curves) > 0 && minVersion == gotls.VersionTLS12 {
		tls12Usable := false
		for _, id := range curves {
			if !curveTLS13Only(id) {
				tls12Usable = true
			}
		}
		if !tls12Usable {
			add("curves: only post-quantum hybrids are listed, which TLS 1.2 clients cannot use; add X25519 or set min_version: \"1.3\"")
		}
	}
	return errors.Join(errs...)
}

func (a *ACMEConfig) validate() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if a.Email != "" && !strings.Contains(a.Email, "@") {
		add("acme.email: %q is not an email address", a.Email)
	}
	if len(a.Domains) == 0 {
		add("acme.domains: empty")
	}
	for i, d := range a.Domains {
		switch {
		case strings.TrimSpace(d) == "":
			add("acme.domains[%d]: empty", i)
		case strings.HasPrefix(d, "*."):
			add("acme.domains[%d]: %q is a wildcard, which needs the DNS challenge; list each name instead", i, d)
		case isIP(d):
			add("acme.domains[%d]: %q is an IP address; ACME here is for DNS names", i, d)
		case !validHostName(d):
			add("acme.domains[%d]: %q is not a valid host name", i, d)
		}
	}
	if a.CA != "" {
		u, err := url.Parse(a.CA)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			add("acme.ca: %q is not an https:// ACME directory URL", a.CA)
		}
	}
	if a.RenewCheckInterval < 0 || (a.RenewCheckInterval > 0 && a.RenewCheckInterval < time.Second) {
		add("acme.renew_check_interval: %s is below 1s", a.RenewCheckInterval)
	}
	if a.HTTPListen != "" {
		if _, _, err := net.SplitHostPort(a.HTTPListen); err != nil {
			add("acme.http_listen: %q is not host:port", a.HTTPListen)
		}
	}
	return errs
}

// Validate checks the section for consistency without opening any file:
// client_cert and client_key both or neither, and a known min_version.
// Problems are reported relative to the `upstream_tls:` key.
func (u UpstreamConfig) Validate() error {
	var errs []error
	switch {
	case u.ClientCert != "" && u.ClientKey == "":
		errs = append(errs, errors.New("client_key: empty while client_cert is set; set both or neither"))
	case u.ClientCert == "" && u.ClientKey != "":
		errs = append(errs, errors.New("client_cert: empty while client_key is set; set both or neither"))
	}
	if _, err := parseMinVersion(u.MinVersion); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// validHostName accepts a DNS name of letters, digits, hyphens and
// underscores in labels of at most 63 characters, without a trailing dot.
func validHostName(name string) bool {
	if name == "" || len(name) > 253 || isIP(name) {
		return false
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			switch {
			case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			default:
				return false
			}
		}
	}
	return true
}
