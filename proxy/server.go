package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/fixedgate/fixedgate/proxy/egress"
	"github.com/fixedgate/fixedgate/proxy/health"
	"github.com/fixedgate/fixedgate/proxy/limit"
)

const zapInfo = zapcore.InfoLevel

// Resolver turns a target name into addresses; *resolver.Resolver is the production one.
type Resolver interface {
	LookupNetIP(ctx context.Context, host string) ([]netip.Addr, error)
}

// TLSProvider hands out server TLS configurations for the TLS listeners (*fgtls.Manager).
type TLSProvider interface {
	ServerConfig(nextProtos []string) *tls.Config
}

// Options is everything a Server needs; cmd/fixedgate builds it from the config file.
type Options struct {
	Listen      []ListenConfig
	Forward     ForwardConfig
	Routes      []RouteConfig
	Gateway     GatewayConfig
	Health      health.Config
	Limits      Limits
	TLS         TLSProvider // required when a listener has tls: true
	UpstreamTLS *tls.Config // template for TLS to origins (upgrade_tls, https:// targets)
	Egress      *egress.Dialer
	Resolver    Resolver
	// Reserved are further addresses of this process (the admin listener) that the forward door
	// must never connect to.
	Reserved []netip.AddrPort
	// Contract serves /ip-ranges.json and its siblings on every listener; nil: not served.
	Contract http.Handler
	// StatusPage serves /status, /status.json and /status.atom on every listener for requests
	// that no route claims (it answers 404 itself while status.public is off); nil: not served.
	StatusPage http.Handler
	// IngressInUse says whether a listener's address may be bound now (the contract); nil
	// allows all. Reconcile applies a change.
	IngressInUse func(netip.Addr) bool
	Log          *zap.Logger
	Registerer   prometheus.Registerer
}

// Server runs the listeners and the doors behind them.
type Server struct {
	opts     Options // what does not reload: listeners, TLS, egress, resolver, contract
	self     []netip.AddrPort
	set      atomic.Pointer[settings] // what reloads (Reconfigure)
	reloadMu sync.Mutex
	log      *zap.Logger
	stdLog   *log.Logger
	panicLog *log.Logger // handler panics, at error level
	egress   *egress.Dialer
	resolver Resolver
	metrics  *metrics
	rp       http.Handler
	tunnels  tunnels
	limiter  *limit.Limiter // per-customer state; its settings come from settings.limits

	gwProxy     http.Handler
	health      *health.Tracker
	retryBudget *health.Budget

	stopChecks context.CancelFunc
	serving    bool
	shutdown   bool // Reconcile binds nothing once shutdown started

	mu         sync.Mutex
	listeners  []*listener
	transports map[netip.Addr]*http.Transport
	// unpooled are the forward door's transports for origins that get a PROXY header: one
	// connection per request, never reused, since the header names one client.
	unpooled     map[netip.Addr]*http.Transport
	poolsMu      sync.RWMutex // guards gwTransports and retired; read on every gateway attempt
	gwTransports map[transportKey]backendPool
	retired      []retiredTransport
}

// listener is one `listen:` entry: bound (ln set) while the contract allows its address.
type listener struct {
	cfg  ListenConfig
	ln   net.Listener
	srvs []*connServer // one per time it was bound and served
}

// New checks opts and builds a Server; it opens no sockets.
func New(opts Options) (*Server, error) {
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.Egress == nil {
		return nil, errors.New("proxy: Options.Egress is required")
	}
	if opts.Resolver == nil {
		return nil, errors.New("proxy: Options.Resolver is required")
	}
	self := append([]netip.AddrPort(nil), opts.Reserved...)
	for _, l := range opts.Listen {
		if l.TLS && opts.TLS == nil {
			return nil, fmt.Errorf("listen %s: tls: true needs a tls: section", l.Address)
		}
		self = append(self, l.AddrPort())
	}
	s := &Server{
		opts:         opts,
		self:         self,
		log:          opts.Log,
		stdLog:       newStdLog(opts.Log, zapcore.DebugLevel),
		panicLog:     newStdLog(opts.Log, zapcore.ErrorLevel),
		egress:       opts.Egress,
		resolver:     opts.Resolver,
		transports:   map[netip.Addr]*http.Transport{},
		unpooled:     map[netip.Addr]*http.Transport{},
		gwTransports: map[transportKey]backendPool{},
		limiter:      limit.New(nil),
	}
	st, err := newSettings(opts, self)
	if err != nil {
		return nil, err
	}
	s.set.Store(st)
	s.health = health.New(opts.Health, health.Options{Registerer: opts.Registerer, Logger: opts.Log.Named("health")})
	s.retryBudget = s.health.NewBudget(float64(opts.Gateway.RetryBudgetPercent)/100, 3, 10*time.Second)
	s.metrics = newMetrics(opts.Registerer, s)
	for _, rt := range st.gateway.routes {
		rt.backendDuration = s.metrics.backendDuration.WithLabelValues(rt.name)
	}
	s.rp = newReverseProxy(s)
	s.gwProxy = newGatewayProxy(s)
	return s, nil
}

func localAddrs() []netip.Addr {
	addrs, _ := net.InterfaceAddrs()
	var out []netip.Addr
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out
}

// Listen binds every configured listener whose address IngressInUse allows (all when it is
// nil); on error none stays bound. The others are bound later by Reconcile.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, cfg := range s.opts.Listen {
		s.listeners = append(s.listeners, &listener{cfg: cfg})
	}
	for i, l := range s.listeners {
		if !s.ingressAllowed(l.cfg) {
			continue
		}
		if err := s.bind(l); err != nil {
			for _, l := range s.listeners {
				if l.ln != nil {
					l.ln.Close()
				}
			}
			s.listeners = nil
			return fmt.Errorf("listen[%d] %s: %w", i, l.cfg.Address, err)
		}
	}
	return nil
}

func (s *Server) ingressAllowed(cfg ListenConfig) bool {
	return s.opts.IngressInUse == nil || s.opts.IngressInUse(cfg.AddrPort().Addr())
}

func (s *Server) bind(l *listener) error {
	ln, err := net.Listen("tcp", l.cfg.AddrPort().String())
	if err != nil {
		return err
	}
	l.ln = newLimitListener(ln, s.cur().limits.MaxConnsPerListener)
	return nil
}

type listenerKey struct{}

func listenerName(ctx context.Context) string {
	s, _ := ctx.Value(listenerKey{}).(string)
	return s
}

// Serve starts serving on the bound listeners, and the routes' active health checks, and
// returns at once.
func (s *Server) Serve() {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	s.stopChecks = cancel
	s.runChecks(ctx, s.cur())
	s.serving = true
	for _, l := range s.listeners {
		if l.ln != nil {
			s.serveListener(l)
		}
	}
}

// serveListener starts one listener's HTTP server. s.mu is held.
func (s *Server) serveListener(l *listener) {
	name := l.ln.Addr().String()
	if l.cfg.TLS {
		name = "tls:" + name
	}
	var tlsConfig *tls.Config
	if l.cfg.TLS {
		tlsConfig = s.opts.TLS.ServerConfig([]string{"h2", "http/1.1"})
	}
	cs := s.newConnServer(l.ln, name, tlsConfig, l.cfg.ProxyProtocol)
	l.srvs = append(l.srvs, cs)
	s.log.Info("listening", zap.String("listener", name))
	go func() {
		if err := cs.serve(); err != nil {
			s.log.Error("listener stopped", zap.String("listener", name), zap.Error(err))
		}
	}()
}

// Reconcile binds the listeners whose address IngressInUse now allows (an announced address
// whose enabled time has come) and stops accepting on those it no longer allows (retired):
// connections already accepted there finish. It returns the first bind error; the other
// listeners are still reconciled.
func (s *Server) Reconcile() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var first error
	for _, l := range s.listeners {
		allowed := s.ingressAllowed(l.cfg)
		switch {
		case allowed && l.ln == nil && !s.shutdown:
			if err := s.bind(l); err != nil {
				s.log.Error("cannot bind a listener the contract now allows", zap.String("listener", l.cfg.Address), zap.Error(err))
				if first == nil {
					first = fmt.Errorf("listen %s: %w", l.cfg.Address, err)
				}
				continue
			}
			s.log.Info("listener activated by the contract", zap.String("listener", l.cfg.Address))
			s.metrics.listenerChanges.WithLabelValues("activated").Inc()
			if s.serving {
				s.serveListener(l)
			}
		case !allowed && l.ln != nil:
			l.ln.Close()
			l.ln = nil
			s.log.Warn("listener stopped: its address is no longer in use in the contract", zap.String("listener", l.cfg.Address))
			s.metrics.listenerChanges.WithLabelValues("retired").Inc()
		}
	}
	return first
}

// Addrs returns the addresses bound now, in config order.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []net.Addr
	for _, l := range s.listeners {
		if l.ln != nil {
			out = append(out, l.ln.Addr())
		}
	}
	return out
}

// Ready returns nil when every listener the contract allows is bound and every route has at
// least one healthy backend, else what is missing (for /readyz).
func (s *Server) Ready(ctx context.Context) error {
	s.mu.Lock()
	bound, missing := 0, ""
	for _, l := range s.listeners {
		switch {
		case l.ln != nil:
			bound++
		case s.ingressAllowed(l.cfg):
			missing = l.cfg.Address
		}
	}
	s.mu.Unlock()
	if missing != "" {
		return fmt.Errorf("listener %s not bound", missing)
	}
	if bound == 0 {
		return errors.New("no listener bound")
	}
	for _, rt := range s.cur().gateway.routes {
		fleet, err := s.routeFleet(ctx, rt)
		if err != nil {
			return fmt.Errorf("route %s%s: %w", rt.host, rt.prefix, err)
		}
		if s.health.Healthy(fleet, rt.port) == 0 {
			return fmt.Errorf("route %s%s: no healthy backend among %d for %s", rt.host, rt.prefix, len(fleet), rt.target)
		}
	}
	return nil
}

// Shutdown stops accepting, lets requests and tunnels finish until ctx ends, then cuts the rest.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	var srvs []*connServer
	for _, l := range s.listeners {
		if l.ln != nil && len(l.srvs) == 0 {
			l.ln.Close() // bound, never served
		}
		srvs = append(srvs, l.srvs...)
	}
	s.shutdown = true
	if s.stopChecks != nil {
		s.stopChecks()
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, srv := range srvs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			srv.shutdown(ctx)
		}()
	}
	err := s.tunnels.drain(ctx)
	wg.Wait()
	s.mu.Lock()
	for _, t := range s.transports {
		t.CloseIdleConnections()
	}
	s.poolsMu.RLock()
	for _, t := range s.gwTransports {
		t.CloseIdleConnections()
	}
	s.poolsMu.RUnlock()
	s.mu.Unlock()
	if err == nil {
		err = ctx.Err()
	}
	return err
}

// egressTransport returns the RoundTripper of the forward door: one http.Transport per egress
// address, so pooled connections never mix source IPs.
func (s *Server) egressTransport() http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		fr := req.Context().Value(forwardKey{}).(*forwardReq)
		src, err := s.egress.Pick(fr.identity, fr.addrs[0])
		if err != nil {
			return nil, err
		}
		return s.transportFor(src, fr.pp != nil).RoundTrip(req)
	})
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// transportFor returns the forward door's transport dialling from src; unpooled, the one for
// requests whose connections start with a PROXY header (fr.pp), which are never reused.
func (s *Server) transportFor(src netip.Addr, unpooled bool) *http.Transport {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.transports
	if unpooled {
		m = s.unpooled
	}
	if t, ok := m[src]; ok {
		return t
	}
	st := s.cur()
	t := &http.Transport{
		Proxy: nil, // never the proxy's own HTTPS_PROXY
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			fr := ctx.Value(forwardKey{}).(*forwardReq)
			c, att, err := s.dial(ctx, fr.route)
			if err != nil {
				return nil, &dialError{err}
			}
			if fr.pp != nil {
				if err := writeProxyHeader(c, fr.pp); err != nil {
					att.Done(health.Reset)
					return nil, &dialError{err}
				}
			}
			att.Done(health.Success)
			return newRawConn(c), nil
		},
		DisableKeepAlives:      unpooled,
		TLSClientConfig:        st.upstreamTLS.Clone(), // the transport writes to it (HTTP/2 setup); the gateway's pools clone it too
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           1024,
		MaxIdleConnsPerHost:    64,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ResponseHeaderTimeout:  st.limits.ResponseHeaderTimeout,
		ExpectContinueTimeout:  time.Second,
		DisableCompression:     true,
		MaxResponseHeaderBytes: int64(st.limits.MaxHeaderBytes) * 4,
		HTTP2:                  &http.HTTP2Config{MaxReceiveBufferPerStream: upstreamH2StreamWindow},
	}
	m[src] = t
	return t
}

// newStdLog gives net/http-style code (which logs through a *log.Logger) a zap destination at
// level: debug for the HTTP servers' own messages (mostly TLS handshake failures from scanners
// and broken clients, which must not drown the summary lines), error for handler panics.
func newStdLog(l *zap.Logger, level zapcore.Level) *log.Logger {
	sl, err := zap.NewStdLogAt(l.Named("http"), level)
	if err != nil {
		return zap.NewStdLog(l)
	}
	return sl
}
