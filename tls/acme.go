package tls

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// acmeTLS1 is the ALPN protocol of the TLS-ALPN-01 challenge (RFC 8737).
const acmeTLS1 = "acme-tls/1"

// acmeState is what the manager keeps for `tls.acme`.
type acmeState struct {
	domains  []string
	issuer   *certmagic.ACMEIssuer
	tlsALPN  bool // TLS-ALPN-01 is answered on the TLS listeners
	httpLn   net.Listener
	httpSrv  *http.Server
	cancel   context.CancelFunc
	startErr error
	started  sync.Once

	mu      sync.Mutex
	lastErr map[string]string // domain → why its last attempt failed
}

// noProxy makes the proxy's own ACME and OCSP traffic ignore HTTPS_PROXY and
// HTTP_PROXY from its environment: those name where clients send traffic, not
// a way out for the proxy itself.
func noProxy(*http.Request) (*url.URL, error) { return nil, nil }

// acmeTemplate fills the parts of the certmagic configuration that ACME
// needs before certmagic.New: storage, OCSP and the event hook.
func (m *Manager) acmeTemplate(a *ACMEConfig, tmpl *certmagic.Config) {
	st := &acmeState{lastErr: map[string]string{}}
	for _, d := range a.Domains {
		st.domains = append(st.domains, strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), ".")))
	}
	m.acme = st
	if a.Storage != "" {
		tmpl.Storage = &certmagic.FileStorage{Path: a.Storage}
	} // else certmagic's default directory (under $XDG_DATA_HOME or ~/.local/share)
	// Managed certificates get OCSP stapling, fetched without any proxy
	// from the environment.
	tmpl.OCSP = certmagic.OCSPConfig{HTTPProxy: noProxy}
	tmpl.OnEvent = m.onCertEvent
}

func (m *Manager) onCertEvent(_ context.Context, event string, data map[string]any) error {
	st := m.acme
	if st == nil {
		return nil
	}
	name, _ := data["identifier"].(string)
	switch event {
	case "cert_failed":
		reason := "unknown error"
		if err, ok := data["error"].(error); ok && err != nil {
			reason = err.Error()
		}
		renewal, _ := data["renewal"].(bool)
		st.mu.Lock()
		st.lastErr[name] = reason
		st.mu.Unlock()
		m.log.Error("ACME: could not obtain a certificate; certmagic retries with backoff",
			zap.String("domain", name), zap.Bool("renewal", renewal), zap.String("reason", reason))
	case "cert_obtained":
		renewal, _ := data["renewal"].(bool)
		st.mu.Lock()
		delete(st.lastErr, name)
		st.mu.Unlock()
		m.log.Info("ACME: certificate obtained", zap.String("domain", name), zap.Bool("renewal", renewal))
	}
	return nil
}

// setupACME creates the ACME issuer on the manager's certmagic config and
// binds the HTTP-01 listener when http_listen is set.
func (m *Manager) setupACME(cfg Config) error {
	a := cfg.ACME
	st := m.acme
	var roots *x509.CertPool
	if a.CARoot != "" {
		var err error
		if roots, err = loadPool(a.CARoot); err != nil {
			return fmt.Errorf("tls.acme.ca_root: %w", err)
		}
	}
	iss := certmagic.ACMEIssuer{
		CA:           a.CA,
		Email:        a.Email,
		Agreed:       true,
		TrustedRoots: roots,
		HTTPProxy:    noProxy,
		Logger:       m.log.Named("certmagic").Named("acme"),
	}
	if iss.CA == "" {
		iss.CA = certmagic.LetsEncryptProductionCA
	}
	// TLS-ALPN-01 is answered by the TLS listener itself (GetCertificate
	// sees acme-tls/1). certmagic only tries to bind host:port to find out
	// whether something serves it already; pointing it at the listener
	// makes that attempt fail as "in use", so it starts no server of its own.
	var tlsHost string
	if cfg.ListenerAddress != "" {
		host, port, err := net.SplitHostPort(cfg.ListenerAddress)
		if err != nil {
			return fmt.Errorf("tls: listener address %q: %w", cfg.ListenerAddress, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return fmt.Errorf("tls: listener address %q: bad port", cfg.ListenerAddress)
		}
		tlsHost = host
		iss.AltTLSALPNPort = p
		iss.ListenHost = host
		st.tlsALPN = true
	} else {
		iss.DisableTLSALPNChallenge = true
	}
	if a.HTTPListen != "" {
		ln, err := net.Listen("tcp", a.HTTPListen)
		if err != nil {
			return fmt.Errorf("tls.acme.http_listen: %w", err)
		}
		st.httpLn = ln
		host, port, _ := net.SplitHostPort(ln.Addr().String())
		iss.AltHTTPPort, _ = strconv.Atoi(port)
		if tlsHost == "" || tlsHost == host {
			iss.ListenHost = host
		}
	} else {
		iss.DisableHTTPChallenge = true
	}
	if iss.DisableHTTPChallenge && iss.DisableTLSALPNChallenge {
		return errors.New("tls.acme: no challenge can be answered: there is no TLS listener and acme.http_listen is not set")
	}
	st.issuer = certmagic.NewACMEIssuer(m.magic, iss)
	m.magic.Issuers = []certmagic.Issuer{st.issuer}
	if st.httpLn != nil {
		notFound := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "only ACME HTTP-01 challenges are answered here", http.StatusNotFound)
		})
		st.httpSrv = &http.Server{
			Handler:           st.issuer.HTTPChallengeHandler(notFound),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       time.Minute,
		}
		go func() {
			if err := st.httpSrv.Serve(st.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				m.log.Error("ACME HTTP-01 listener stopped", zap.Error(err))
			}
		}()
		m.log.Info("ACME HTTP-01 challenges answered", zap.String("http_listen", st.httpLn.Addr().String()))
	}
	m.log.Info("ACME certificates managed",
		zap.Strings("domains", st.domains), zap.String("ca", iss.CA),
		zap.String("storage", storagePath(m.magic.Storage)), zap.Bool("tls_alpn_01", st.tlsALPN), zap.Bool("http_01", st.httpLn != nil))
	return nil
}

// Start begins ACME certificate management: certificates in storage are
// loaded, missing or expiring ones are obtained in the background (with
// certmagic's retries), and renewal runs from then on. Call it once the TLS
// listeners accept connections, since TLS-ALPN-01 is answered there. It does
// nothing without `tls.acme`, and only the first call counts.
func (m *Manager) Start() error {
	st := m.acme
	if st == nil {
		return nil
	}
	st.started.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		st.cancel = cancel
		st.startErr = m.magic.ManageAsync(ctx, st.domains)
		if st.startErr != nil {
			st.startErr = fmt.Errorf("tls.acme: %w", st.startErr)
		}
	})
	return st.startErr
}

// Ready returns nil when every ACME domain has a currently valid certificate
// in the cache, else which ones are missing and why (for /readyz). Without
// `tls.acme`, every `files` (or `self_signed`) certificate must be valid now:
// one that has expired, or is not valid yet, makes it fail.
func (m *Manager) Ready() error {
	now := time.Now()
	st := m.acme
	if st == nil {
		return m.filesReady(now)
	}
	var missing []string
	for _, d := range st.domains {
		ok := false
		for _, c := range m.cache.AllMatchingCertificates(d) {
			if c.Leaf != nil && now.After(c.Leaf.NotBefore) && now.Before(c.Leaf.NotAfter) {
				ok = true
				break
			}
		}
		if ok {
			continue
		}
		st.mu.Lock()
		reason := st.lastErr[d]
		st.mu.Unlock()
		if reason == "" {
			reason = "not obtained yet"
		}
		missing = append(missing, d+": "+reason)
	}
	if len(missing) > 0 {
		return fmt.Errorf("no valid TLS certificate for %s", strings.Join(missing, "; "))
	}
	return nil
}

func (st *acmeState) close() {
	if st.cancel != nil {
		st.cancel()
	}
	if st.httpSrv != nil {
		st.httpSrv.Close()
	} else if st.httpLn != nil {
		st.httpLn.Close()
	}
}

func storagePath(s certmagic.Storage) string {
	if fs, ok := s.(*certmagic.FileStorage); ok {
		return fs.Path
	}
	return fmt.Sprintf("%T", s)
}
