package tls

import (
	"context"
	gotls "crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/fixedgate/fixedgate/tls/devca"
)

// SelfSignedValidity is how long the listener certificate issued from the
// local CA in `self_signed` mode is valid. It is issued anew at every start.
const SelfSignedValidity = 365 * 24 * time.Hour

// Manager holds the listener certificates in a certmagic cache and hands out
// server TLS configurations that select among them per handshake.
type Manager struct {
	log        *zap.Logger
	cache      *certmagic.Cache
	magic      *certmagic.Config
	minVersion uint16
	curves     []gotls.CurveID
	clientCAs  *x509.CertPool
	caPath     string
	selfCA     *devca.CA    // tls.self_signed: the local CA, for CoverNames
	selfNames  []string     // ... and the DNS names of the certificate it issued last
	selfAddrs  []netip.Addr // ... and its IP addresses
	acme       *acmeState   // nil without tls.acme
	files      []FilePair

	mu         sync.Mutex          // guards leaves and fileHashes (Reload)
	leaves     []*x509.Certificate // files / self_signed certificates, for metrics
	fileHashes []string            // certmagic cache keys of the files certificates
	closeOnce  sync.Once
	reloadMu   sync.Mutex    // one Reload at a time
	stopWatch  chan struct{} // closed by Close: ends watchFiles
	watchDone  chan struct{} // closed when watchFiles has returned
}

// New loads the listener certificates described by cfg into a certmagic
// cache. `files` pairs are cached as unmanaged certificates; `self_signed`
// loads or creates the local CA in its directory and issues a certificate for
// localhost, DefaultName, 127.0.0.1, ::1 and the given ips (the listener's
// fixed addresses). Clients that send no SNI, or an IP address as SNI, get
// the certificate covering the local address they connected to, else the one
// for DefaultName, else the only certificate if there is just one. `acme`
// sets up certmagic's ACME issuer for exactly the configured domains (never
// on demand); Start begins obtaining and renewing once the listeners accept.
// Close releases the cache's background maintenance.
func New(ctx context.Context, cfg Config, ips []netip.Addr, log *zap.Logger) (*Manager, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("tls config: %w", err)
	}
	if cfg.ACME == nil && len(cfg.Files) == 0 && cfg.SelfSigned == nil {
		return nil, errors.New("tls: no certificate source; set tls.acme, tls.files or tls.self_signed")
	}
	minVersion, err := parseMinVersion(cfg.MinVersion)
	if err != nil {
		return nil, fmt.Errorf("tls.%w", err)
	}
	curves, err := ParseCurves(cfg.Curves)
	if err != nil {
		return nil, fmt.Errorf("tls.%w", err)
	}
	m := &Manager{
		log:        log,
		minVersion: minVersion,
		curves:     curves,
	}
	if cfg.ClientCA != "" {
		if m.clientCAs, err = loadPool(cfg.ClientCA); err != nil {
			return nil, fmt.Errorf("tls.client_ca: %w", err)
		}
	}

	cmLog := log.Named("certmagic")
	var magicRef atomic.Pointer[certmagic.Config]
	cacheOpts := certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) {
			if c := magicRef.Load(); c != nil {
				return c, nil
			}
			return nil, errors.New("certificate configuration not initialised")
		},
		Logger: cmLog,
	}
	if cfg.ACME != nil {
		cacheOpts.RenewCheckInterval = cfg.ACME.RenewCheckInterval
	}
	m.cache = certmagic.NewCache(cacheOpts)
	tmpl := certmagic.Config{
		Logger: cmLog,
		// Unmanaged certificates only: OCSP stapling would make the proxy
		// fetch from responders outside the contract's egress addresses.
		OCSP: certmagic.OCSPConfig{DisableStapling: true},
	}
	if cfg.ACME != nil {
		m.acmeTemplate(cfg.ACME, &tmpl)
	}
	m.magic = certmagic.New(m.cache, tmpl)
	magicRef.Store(m.magic)

	if cfg.ACME != nil {
		if err := m.setupACME(cfg); err != nil {
			m.Close()
			return nil, err
		}
		if err := m.setACMEDefaultName(cfg.DefaultName); err != nil {
			m.Close()
			return nil, err
		}
		return m, nil
	}

	leaves, err := m.loadCertificates(ctx, cfg, ips)
	if err != nil {
		m.Close()
		return nil, err
	}
	m.leaves = leaves
	m.files = cfg.Files
	if err := m.setDefaultServerName(cfg.DefaultName, leaves); err != nil {
		m.Close()
		return nil, err
	}
	if len(m.files) > 0 && FilesPollInterval > 0 {
		m.stopWatch, m.watchDone = make(chan struct{}), make(chan struct{})
		go func() {
			defer close(m.watchDone)
			m.watchFiles(FilesPollInterval, m.stopWatch)
		}()
	}
	return m, nil
}

func (m *Manager) loadCertificates(ctx context.Context, cfg Config, ips []netip.Addr) ([]*x509.Certificate, error) {
	if cfg.SelfSigned != nil {
		leaf, err := m.loadSelfSigned(ctx, cfg.SelfSigned, cfg.DefaultName, ips)
		if err != nil {
			return nil, err
		}
		return []*x509.Certificate{leaf}, nil
	}
	leaves := make([]*x509.Certificate, 0, len(cfg.Files))
	for i, f := range cfg.Files {
		leaf, err := m.loadFilePair(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("tls.files[%d]: %w", i, err)
		}
		leaves = append(leaves, leaf)
	}
	return leaves, nil
}

// readFilePair reads and parses one certificate/key pair, without caching it.
func readFilePair(f FilePair) (gotls.Certificate, error) {
	certPEM, err := os.ReadFile(f.Cert)
	if err != nil {
		return gotls.Certificate{}, fmt.Errorf("load certificate %s: %w", f.Cert, err)
	}
	keyPEM, err := os.ReadFile(f.Key)
	if err != nil {
		return gotls.Certificate{}, fmt.Errorf("load key %s: %w", f.Key, err)
	}
	pair, err := gotls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return gotls.Certificate{}, fmt.Errorf("load certificate %s with key %s: %w", f.Cert, f.Key, err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return gotls.Certificate{}, fmt.Errorf("load certificate %s: %w", f.Cert, err)
		}
	}
	return pair, nil
}

func (m *Manager) loadFilePair(ctx context.Context, f FilePair) (*x509.Certificate, error) {
	pair, err := readFilePair(f)
	if err != nil {
		return nil, err
	}
	hash, err := m.magic.CacheUnmanagedTLSCertificate(ctx, pair, nil)
	if err != nil {
		return nil, fmt.Errorf("cache certificate %s: %w", f.Cert, err)
	}
	m.fileHashes = append(m.fileHashes, hash)
	now := time.Now()
	fields := []zap.Field{
		zap.String("source", "files"),
		zap.String("cert_file", f.Cert),
		zap.Strings("names", certNames(pair.Leaf)),
		zap.Time("not_after", pair.Leaf.NotAfter),
	}
	switch {
	case now.After(pair.Leaf.NotAfter):
		m.log.Warn("listener certificate has expired; clients will refuse it", fields...)
	case now.Before(pair.Leaf.NotBefore):
		m.log.Warn("listener certificate is not valid yet; clients will refuse it",
			append(fields, zap.Time("not_before", pair.Leaf.NotBefore))...)
	default:
		m.log.Info("loaded listener certificate", fields...)
	}
	return pair.Leaf, nil
}

func (m *Manager) loadSelfSigned(ctx context.Context, ss *SelfSignedConfig, defaultName string, ips []netip.Addr) (*x509.Certificate, error) {
	ca, created, err := devca.LoadOrCreate(ss.Dir)
	if err != nil {
		return nil, fmt.Errorf("tls.self_signed: %w", err)
	}
	m.caPath = ca.CertPath()
	if created {
		m.log.Info("created local CA; clients must trust its certificate", zap.String("ca_cert", m.caPath))
	} else {
		m.log.Info("using local CA", zap.String("ca_cert", m.caPath))
	}

	dnsNames := []string{"localhost"}
	addrs := make([]netip.Addr, 0, len(ips)+3)
	if defaultName != "" {
		if ip, err := netip.ParseAddr(defaultName); err == nil {
			addrs = append(addrs, ip)
		} else if !strings.EqualFold(defaultName, "localhost") {
			dnsNames = append(dnsNames, strings.ToLower(defaultName))
		}
	}
	for _, n := range ss.Names {
		if n = strings.ToLower(strings.TrimSuffix(n, ".")); n != "" && !slices.Contains(dnsNames, n) {
			dnsNames = append(dnsNames, n)
		}
	}
	addrs = append(addrs, ips...)
	addrs = append(addrs, netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback())
	addrs = certAddrs(addrs)
	m.selfCA, m.selfNames, m.selfAddrs = ca, dnsNames, addrs
	return m.issueSelfSigned(ctx)
}

// issueSelfSigned issues a listener certificate from the local CA for selfNames and selfAddrs
// and caches it for new handshakes.
func (m *Manager) issueSelfSigned(ctx context.Context) (*x509.Certificate, error) {
	pair, err := m.selfCA.Issue(m.selfNames, m.selfAddrs, SelfSignedValidity)
	if err != nil {
		return nil, fmt.Errorf("tls.self_signed: %w", err)
	}
	if _, err := m.magic.CacheUnmanagedTLSCertificate(ctx, pair, nil); err != nil {
		return nil, fmt.Errorf("tls.self_signed: cache certificate: %w", err)
	}
	m.log.Info("issued listener certificate from local CA",
		zap.String("source", "self_signed"),
		zap.Strings("names", certNames(pair.Leaf)),
		zap.Time("not_after", pair.Leaf.NotAfter),
		zap.String("ca_cert", m.caPath))
	return pair.Leaf, nil
}

// CoverNames makes the self-signed listener certificate name every one of names (the hosts of
// the gateway's routes, after a reload added one): when one is missing, a certificate for all of
// them is issued from the local CA and serves new handshakes. It does nothing for acme and
// files, whose names the operator chose.
func (m *Manager) CoverNames(ctx context.Context, names []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.selfCA == nil {
		return nil
	}
	added := false
	for _, n := range names {
		if n = strings.ToLower(strings.TrimSuffix(n, ".")); n == "" || slices.Contains(m.selfNames, n) {
			continue
		}
		if ip, err := netip.ParseAddr(n); err == nil {
			if !slices.Contains(m.selfAddrs, ip) {
				m.selfAddrs, added = append(m.selfAddrs, ip), true
			}
			continue
		}
		m.selfNames, added = append(m.selfNames, n), true
	}
	if !added {
		return nil
	}
	leaf, err := m.issueSelfSigned(ctx)
	if err != nil {
		return err
	}
	m.leaves = []*x509.Certificate{leaf} // it names everything the previous one did
	return nil
}

// setDefaultServerName tells certmagic which cached certificate serves
// clients without SNI. certmagic looks the default name up as an exact key
// in its name index, so a name covered by a wildcard is mapped to that
// wildcard's key.
func (m *Manager) setDefaultServerName(defaultName string, leaves []*x509.Certificate) error {
	switch {
	case defaultName != "":
		key := indexKeyFor(defaultName, leaves)
		if key == "" {
			return fmt.Errorf("tls.default_name: %q is not covered by any configured certificate", defaultName)
		}
		m.magic.DefaultServerName = key
	case len(leaves) == 1:
		m.magic.DefaultServerName = primaryName(leaves[0])
	default:
		m.log.Info("tls.default_name is not set: clients without SNI get a certificate only if one covers the address they connect to")
		return nil
	}
	m.log.Info("certificate for clients without SNI", zap.String("default_name", m.magic.DefaultServerName))
	return nil
}

// setACMEDefaultName picks the certificate for clients without SNI among
// the ACME domains: default_name, which must be one of them, else the only
// domain.
func (m *Manager) setACMEDefaultName(defaultName string) error {
	domains := m.acme.domains
	switch {
	case defaultName != "":
		name := strings.ToLower(strings.TrimSuffix(defaultName, "."))
		if !slices.Contains(domains, name) {
			return fmt.Errorf("tls.default_name: %q is not one of tls.acme.domains", defaultName)
		}
		m.magic.DefaultServerName = name
	case len(domains) == 1:
		m.magic.DefaultServerName = domains[0]
	default:
		m.log.Info("tls.default_name is not set: clients without SNI get no certificate")
		return nil
	}
	m.log.Info("certificate for clients without SNI", zap.String("default_name", m.magic.DefaultServerName))
	return nil
}

// ServerConfig returns a new TLS configuration for one listener: the
// configured minimum version and curves, the given ALPN protocols (e.g.
// ["h2", "http/1.1"]), certificates from the manager, and, when client_ca is
// set, mandatory verified client certificates.
func (m *Manager) ServerConfig(nextProtos []string) *gotls.Config {
	c := &gotls.Config{
		MinVersion:       m.minVersion,
		CurvePreferences: slices.Clone(m.curves),
		NextProtos:       slices.Clone(nextProtos),
		GetCertificate:   m.getCertificate,
	}
	if m.clientCAs != nil {
		c.ClientAuth = gotls.RequireAndVerifyClientCert
		c.ClientCAs = m.clientCAs
	}
	if m.acme != nil && m.acme.tlsALPN {
		// TLS-ALPN-01: the CA's validator offers only acme-tls/1 and gets
		// the challenge certificate from GetCertificate.
		if !slices.Contains(c.NextProtos, acmeTLS1) {
			c.NextProtos = append(c.NextProtos, acmeTLS1)
		}
		if m.clientCAs != nil {
			// The validator has no client certificate; it only completes
			// a handshake, and no request is served on such a connection.
			challenge := c.Clone()
			challenge.ClientAuth = gotls.NoClientCert
			challenge.ClientCAs = nil
			challenge.NextProtos = []string{acmeTLS1}
			c.GetConfigForClient = func(hello *gotls.ClientHelloInfo) (*gotls.Config, error) {
				if isACMEChallengeHello(hello) {
					return challenge, nil
				}
				return nil, nil
			}
		}
	}
	return c
}

func isACMEChallengeHello(hello *gotls.ClientHelloInfo) bool {
	return hello.ServerName != "" && len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acmeTLS1
}

// getCertificate treats an IP address sent as SNI like no SNI. RFC 6066
// forbids it, but some clients do it for IP-literal URLs; certmagic would
// otherwise look only for a certificate naming that IP and not fall back to
// the default name.
func (m *Manager) getCertificate(hello *gotls.ClientHelloInfo) (*gotls.Certificate, error) {
	if hello.ServerName != "" && isIP(hello.ServerName) {
		h := *hello
		h.ServerName = ""
		hello = &h
	}
	return m.magic.GetCertificate(hello)
}

// CAPath returns the path of the local CA certificate in `self_signed`
// mode, for the startup hint telling users what to trust; "" otherwise.
func (m *Manager) CAPath() string {
	return m.caPath
}

// Close stops certmagic's background certificate maintenance. It is safe to
// call more than once.
func (m *Manager) Close() {
	m.closeOnce.Do(func() {
		if m.acme != nil {
			m.acme.close()
		}
		if m.stopWatch != nil {
			close(m.stopWatch)
			<-m.watchDone
		}
		m.cache.Stop()
	})
}

func loadPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load CA certificates %s: %w", path, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("load CA certificates %s: no PEM certificates found", path)
	}
	return pool, nil
}

// certAddrs drops invalid and unspecified addresses (a wildcard listener
// has no address to certify), unmaps IPv4-in-IPv6 and removes duplicates.
func certAddrs(in []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(in))
	for _, a := range in {
		a = a.Unmap().WithZone("")
		if !a.IsValid() || a.IsUnspecified() || slices.Contains(out, a) {
			continue
		}
		out = append(out, a)
	}
	return out
}

// certNames lists the names certmagic indexes a certificate under.
func certNames(leaf *x509.Certificate) []string {
	var names []string
	if leaf.Subject.CommonName != "" {
		names = append(names, strings.ToLower(leaf.Subject.CommonName))
	}
	for _, n := range leaf.DNSNames {
		names = append(names, strings.ToLower(n))
	}
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	slices.Sort(names)
	return slices.Compact(names)
}

func primaryName(leaf *x509.Certificate) string {
	switch {
	case len(leaf.DNSNames) > 0:
		return strings.ToLower(leaf.DNSNames[0])
	case len(leaf.IPAddresses) > 0:
		return leaf.IPAddresses[0].String()
	default:
		return strings.ToLower(leaf.Subject.CommonName)
	}
}

// indexKeyFor returns the certmagic index key that serves name: name itself
// if a certificate lists it, else the wildcard form certmagic would match
// for an SNI of name; "" if no certificate covers it.
func indexKeyFor(name string, leaves []*x509.Certificate) string {
	name = strings.ToLower(name)
	candidates := []string{name}
	if ip := net.ParseIP(name); ip != nil {
		candidates = []string{ip.String()}
	} else {
		labels := strings.Split(name, ".")
		for i := range labels {
			labels[i] = "*"
			candidates = append(candidates, strings.Join(labels, "."))
		}
	}
	for _, c := range candidates {
		for _, leaf := range leaves {
			if slices.Contains(certNames(leaf), c) {
				return c
			}
		}
	}
	return ""
}
