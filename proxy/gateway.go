package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/fixedgate/fixedgate/proxy/egress"
	"github.com/fixedgate/fixedgate/proxy/health"
	"github.com/fixedgate/fixedgate/proxy/limit"
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

type gatewayKey struct{}

// gwReq travels with one gateway request from the door to the transport.
type gwReq struct {
	route    *gwRoute
	fleet    []netip.Addr
	identity string
	pp       proxyOut // the PROXY header of the route's backend connections, if it sends one
	rec      *record
	st       *settings
	body     *countingBody // the client's request body, nil without one
	attempts int
	tried    [4]netip.AddrPort
}

// serveGateway re-encrypts a request to the route's fleet.
func (s *Server) serveGateway(w http.ResponseWriter, r *http.Request, x *exchange, rt *gwRoute) {
	rec := &x.rec
	rec.door = "gateway"
	rec.target = rt.target
	// Per client address: behind a trusted balancer, the client it names in X-Forwarded-For.
	if addr, ok := x.st.gatewayClient(r); ok {
		release, ok := s.admit(w, x, addr, limit.Request)
		if !ok {
			return
		}
		defer release()
	}
	fleet, ok := s.gatewayFleet(r.Context(), w, x.st, rt, rec)
	if !ok {
		return
	}
	clientIP := remoteIP(r)
	gr := &x.gw
	*gr = gwReq{route: rt, fleet: fleet, identity: clientIP, rec: rec, st: x.st}
	if rt.ppVersion != 0 {
		client, _ := x.st.gatewayClient(r)
		gr.pp = proxyOutFor(rt.ppVersion, r, client)
	}
	if r.Body != nil && r.Body != http.NoBody {
		x.body.ReadCloser = r.Body
		r.Body, gr.body = &x.body, &x.body
	}
	s.gwProxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), gatewayKey{}, gr)))
	rec.bytesUp = x.body.n.Load()
}

// gatewayFleet resolves the route's upstream (warm names come from the cache without a query)
// and keeps the addresses the SSRF guard allows. It answers the client itself on failure.
func (s *Server) gatewayFleet(ctx context.Context, w http.ResponseWriter, st *settings, rt *gwRoute, rec *record) ([]netip.Addr, bool) {
	fleet, err := s.routeFleet(ctx, rt)
	if err != nil {
		s.refuseLookup(w, rec, "upstream "+rt.name, err)
		return nil, false
	}
	v := rt.allowed.Load()
	if v == nil || !sameSlice(v.from, fleet) {
		v = &fleetView{from: fleet, allowed: make([]netip.Addr, 0, len(fleet))}
		for _, a := range fleet {
			if err := st.policy.CheckAddr(a, rt.port); err != nil {
				v.denied = a
				continue
			}
			v.allowed = append(v.allowed, a)
		}
		if v.denied.IsValid() {
			s.log.Warn("upstream resolved into a denied network; those backends are skipped",
				zap.String("upstream", rt.name), zap.Stringer("address", v.denied))
		}
		rt.allowed.Store(v)
	}
	if len(v.allowed) == 0 {
		rec.resolved = v.denied
		s.refuse(w, rec, http.StatusBadGateway, fmt.Sprintf("upstream %s resolved only into denied networks (%s); list them in forward.allow_networks if they are yours", rt.name, v.denied), nil)
		return nil, false
	}
	return v.allowed, true
}

func sameSlice(a, b []netip.Addr) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

func newGatewayProxy(s *Server) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			gr := pr.In.Context().Value(gatewayKey{}).(*gwReq)
			pr.Out.URL.Scheme = "https"
			pr.Out.URL.Host = gr.route.authority
			pr.Out.Host = gr.route.authority
			if gr.st.trustedClient(pr.In.RemoteAddr) {
				for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
					if v, ok := pr.In.Header[h]; ok {
						pr.Out.Header[h] = v
					}
				}
			}
			pr.SetXForwarded()
			if pr.In.TLS == nil && !gr.st.trustedClient(pr.In.RemoteAddr) {
				pr.Out.Header.Set("X-Forwarded-Proto", "http")
			}
			for k := range pr.Out.Header {
				if len(k) > 6 && strings.EqualFold(k[:6], "Proxy-") {
					delete(pr.Out.Header, k)
				}
			}
		},
		Transport:      roundTripperFunc(s.gatewayRoundTrip),
		ModifyResponse: closeAfterRefusedUpgrade,
		// 0: one write for headers and a small body. ReverseProxy still flushes every write of
		// a streaming response (text/event-stream, or no Content-Length), so SSE works.
		FlushInterval: 0,
		BufferPool:    copyBufferPool{},
		ErrorLog:      s.stdLog,
		ErrorHandler:  s.gatewayError,
	}
}

func (st *settings) trustedClient(remote string) bool {
	ap, err := netip.ParseAddrPort(remote)
	return err == nil && st.trustedAddr(ap.Addr())
}

func (st *settings) trustedAddr(a netip.Addr) bool {
	for _, p := range st.gw.TrustedProxies {
		if p.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}

// gatewayClient is the address a gateway request is limited by: the peer's, or, when the peer
// is a trusted balancer, the last X-Forwarded-For entry that is not itself a trusted balancer
// (what an untrusted client writes further left is not believed). A trusted peer that names no
// such client is not limited (false): it speaks for many clients.
func (st *settings) gatewayClient(r *http.Request) (string, bool) {
	if !st.trustedClient(r.RemoteAddr) {
		return remoteIP(r), true
	}
	xff := r.Header.Values("X-Forwarded-For")
	for i := len(xff) - 1; i >= 0; i-- {
		parts := strings.Split(xff[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return "", false
			}
			if !st.trustedAddr(a) {
				return a.Unmap().String(), true
			}
		}
	}
	return "", false
}

// errNoBackend is returned when every backend of a fleet was tried or excluded.
var errNoBackend = errors.New("no backend left to try")

// backendError is the last failure of a gateway request, after its retries.
type backendError struct {
	route    *gwRoute
	attempts int
	err      error
}

func (e *backendError) Error() string {
	return fmt.Sprintf("%s: %d attempt(s): %v", e.route.name, e.attempts, e.err)
}
func (e *backendError) Unwrap() error { return e.err }

// gatewayRoundTrip sends one request to a backend picked from the fleet and, when it is safe,
// retries on a different backend: after a failed connection or TLS handshake always (nothing
// was sent), after a connection that died before any response byte only for idempotent
// requests without a body. Retries are bounded by max_retries, the retry budget and the
// request's own deadline.
func (s *Server) gatewayRoundTrip(req *http.Request) (*http.Response, error) {
	gr := req.Context().Value(gatewayKey{}).(*gwReq)
	rt := gr.route
	hasBody := req.Body != nil && req.Body != http.NoBody
	if hasBody {
		// The transport closes the body on failure; a retry after a failed dial still needs it.
		// The server closes the real body when the handler returns.
		req.Body = io.NopCloser(req.Body)
	}
	upgrade := req.Header.Get("Upgrade") != ""
	s.retryBudget.Request()
	var lastErr error
	for {
		if gr.attempts > 0 {
			if !retryable(lastErr, req.Method, hasBody) || gr.attempts > gr.st.gw.MaxRetries || req.Context().Err() != nil {
				break
			}
			if !s.retryBudget.TryRetry() {
				s.metrics.retries.WithLabelValues(rt.name, "budget_exhausted").Inc()
				break
			}
			s.metrics.retries.WithLabelValues(rt.name, "retried").Inc()
		}
		ap, ok := s.health.Pick(gr.fleet, rt.port, gr.tried[:min(gr.attempts, len(gr.tried))])
		if !ok {
			if lastErr == nil {
				lastErr = errNoBackend
			}
			break
		}
		if gr.attempts < len(gr.tried) {
			gr.tried[gr.attempts] = ap
		}
		gr.attempts++
		src, err := s.egress.Pick(gr.identity, ap.Addr())
		if err != nil {
			lastErr = &dialError{err}
			continue
		}
		gr.rec.resolved, gr.rec.egress = ap.Addr(), src
		att := s.health.Start(ap)
		start := time.Now()
		// The request keeps the route's authority in its URL: each backend has transports of
		// its own, so the URL need not name the backend, and retries send the same request.
		resp, err := s.backendTransport(src, rt.name, ap, upgrade, gr.pp).RoundTrip(req)
		rt.backendDuration.Observe(time.Since(start).Seconds())
		if err == nil && resp.StatusCode < 500 && resp.StatusCode != http.StatusSwitchingProtocols && resp.Body != nil && resp.Body != http.NoBody {
			if resp.ProtoMajor == 2 {
				resp.Body = &bigReads{ReadCloser: resp.Body}
			}
			// In flight until the body is done: a long stream (SSE, a download) keeps its backend busy.
			resp.Body = &attemptBody{ReadCloser: resp.Body, att: att}
			return resp, nil
		}
		if err != nil && gr.body != nil && gr.body.err.Load() != nil {
			// The client's body failed (malformed, or the client left): nothing to hold
			// against the backend, or a client could eject backends at will.
			att.Done(health.Canceled)
			return nil, err
		}
		att.Done(outcome(resp, err, req.Context()))
		if err == nil {
			return resp, nil
		}
		lastErr = err
		s.log.Debug("backend attempt failed", zap.String("upstream", rt.name), zap.Stringer("backend", ap), zap.Int("attempt", gr.attempts), zap.Error(err))
	}
	return nil, &backendError{route: rt, attempts: gr.attempts, err: lastErr}
}

// bigReads is the body of a response from an HTTP/2 backend. net/http's HTTP/2 client returns
// flow-control credit (a WINDOW_UPDATE: a TLS record and a write each way) for every read of
// 4 KiB or more, and ReverseProxy reads 16 KiB at a time: a large download paid for a round of
// window updates every 16 KiB (about 230 MiB/s and 2.5 s of CPU per GiB on loopback). Once a
// read shows the body is large (it fills the caller's buffer), the body is read from the
// backend into a 256 KiB buffer and handed out from there: one update per 256 KiB. Small
// responses never take a buffer.
type bigReads struct {
	io.ReadCloser
	buf  *[]byte // from bigBufs once the body shows itself large
	r, w int     // what of buf is left to hand out
	err  error   // the backend's read error, after buf[r:w]
}

const bigBufSize = 256 << 10

// upstreamH2StreamWindow is the flow-control window fixedgate gives each stream it opens to an
// HTTP/2 backend or origin: how far a backend may send ahead of the client. It bounds what a
// client that asks and never reads can make the proxy hold (this plus bigBufSize per stream;
// net/http's default, 4 MiB, let one connection of 250 such streams pin about 1 GiB). Twice
// bigBufSize, so that a backend fills one half while the other is handed to the client; one
// stream then carries at most 512 KiB per round trip to its backend (about 500 MiB/s at 1 ms,
// 10 MiB/s at 50 ms).
const upstreamH2StreamWindow = 2 * bigBufSize

var bigBufs = sync.Pool{New: func() any { b := make([]byte, bigBufSize); return &b }}

func (b *bigReads) Read(p []byte) (int, error) {
	if b.buf == nil {
		n, err := b.ReadCloser.Read(p)
		if err == nil && n == len(p) && n > 0 {
			b.buf = bigBufs.Get().(*[]byte)
		}
		return n, err
	}
	if b.r == b.w {
		if b.err != nil {
			return 0, b.err
		}
		b.r, b.w = 0, 0
		b.w, b.err = b.ReadCloser.Read(*b.buf)
		if b.w == 0 {
			return 0, b.err
		}
	}
	n := copy(p, (*b.buf)[b.r:b.w])
	b.r += n
	return n, nil
}

func (b *bigReads) Close() error {
	if b.buf != nil {
		bigBufs.Put(b.buf)
		b.buf = nil
	}
	return b.ReadCloser.Close()
}

// attemptBody reports a successful attempt when its response body is closed.
type attemptBody struct {
	io.ReadCloser
	att  health.Attempt
	once sync.Once
}

func (b *attemptBody) Close() error {
	b.once.Do(func() { b.att.Done(health.Success) })
	return b.ReadCloser.Close()
}

// retryable says whether a failed attempt may be repeated on another backend.
func retryable(err error, method string, hasBody bool) bool {
	switch {
	case err == nil:
		return false
	case isDialError(err):
		return true
	case errors.Is(err, context.Canceled), isTimeout(err):
		return false
	}
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return !hasBody
	}
	return false
}

// outcome classifies one attempt for the health tracker.
func outcome(resp *http.Response, err error, ctx context.Context) health.Outcome {
	switch {
	case err == nil && resp.StatusCode >= 500:
		return health.Status5xx
	case err == nil:
		return health.Success
	case ctx.Err() != nil && !isDialError(err):
		return health.Canceled
	case isDialError(err):
		return health.ConnectFailure
	case isTimeout(err):
		return health.Timeout
	}
	return health.Reset
}

// transportKey names one pool of connections: to one backend, from one egress address, for
// one upstream name (the SNI and certificate name), and, on routes with proxy_protocol, for one
// client (the header each connection starts with names it).
type transportKey struct {
	src     netip.Addr
	name    string
	backend netip.AddrPort
	h1      bool // WebSocket and other upgrades need HTTP/1.1
	pp      proxyOut
}

// backendPool is what a backend's requests go through: CloseIdleConnections drops its idle
// connections when the backend leaves the fleet.
type backendPool interface {
	http.RoundTripper
	CloseIdleConnections()
}

// backendTransport returns the pool for a backend. Pools are per backend so that a request
// goes where the load-spreading pick sent it, and so that the pool of a backend that leaves
// the fleet can be closed alone. A backend that negotiates HTTP/2 is served by net/http's
// HTTP/2 client (one multiplexed connection); one that speaks HTTP/1.1 by h1Pool. Upgrades
// (WebSocket) use an HTTP/1.1-only net/http Transport, which hands the upgraded connection over.
func (s *Server) backendTransport(src netip.Addr, name string, backend netip.AddrPort, h1 bool, pp proxyOut) backendPool {
	key := transportKey{src, name, backend, h1, pp}
	s.poolsMu.RLock()
	t, ok := s.gwTransports[key]
	s.poolsMu.RUnlock()
	if ok {
		if pp.version != 0 {
			t.(*clientPool).used.Store(time.Now().UnixNano())
		}
		return t
	}
	s.poolsMu.Lock()
	defer s.poolsMu.Unlock()
	if t, ok := s.gwTransports[key]; ok {
		return t
	}
	if pp.version != 0 {
		s.sweepClientPools()
	}
	st := s.cur()
	tlsCfg := st.upstreamTLS.Clone()
	if tlsCfg == nil {
		tlsCfg = &tls.Config{}
	}
	tlsCfg.ServerName = name
	tlsCfg.NextProtos = []string{"h2", "http/1.1"}
	if h1 {
		tlsCfg.NextProtos = []string{"http/1.1"}
	}
	tlsCfg.ClientSessionCache = tls.NewLRUClientSessionCache(64)
	header := pp.header()
	dial := func(ctx context.Context) (*tls.Conn, error) {
		c, err := s.egress.Dial(ctx, src, backend)
		if err != nil {
			return nil, &dialError{err}
		}
		if header != nil {
			if err := writeProxyHeader(c, header); err != nil {
				return nil, &dialError{err}
			}
		}
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		tc := tls.Client(newRawConn(c), tlsCfg)
		if err := tc.HandshakeContext(hctx); err != nil {
			c.Close()
			return nil, &dialError{&tlsError{name: name, err: err}}
		}
		return tc, nil
	}
	newTransport := func() *http.Transport {
		return &http.Transport{
			Proxy: nil, // never the proxy's own HTTPS_PROXY
			DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return dial(ctx)
			},
			ForceAttemptHTTP2:      !h1,
			MaxIdleConns:           256,
			MaxIdleConnsPerHost:    256,
			IdleConnTimeout:        90 * time.Second,
			ResponseHeaderTimeout:  st.limits.ResponseHeaderTimeout,
			ExpectContinueTimeout:  time.Second,
			DisableCompression:     true,
			MaxResponseHeaderBytes: int64(st.limits.MaxHeaderBytes) * 4,
			HTTP2:                  &http.HTTP2Config{MaxReadFrameSize: 1 << 20, MaxReceiveBufferPerStream: upstreamH2StreamWindow},
		}
	}
	if h1 {
		t = newTransport()
	} else {
		t = &learnedPool{
			h1: &h1Pool{dial: dial, responseHeaderTimeout: st.limits.ResponseHeaderTimeout,
				idleTimeout: 90 * time.Second, maxIdle: 256, maxHeaderBytes: int64(st.limits.MaxHeaderBytes) * 4},
			newH2: newTransport,
		}
	}
	if pp.version != 0 {
		cp := &clientPool{backendPool: t}
		cp.used.Store(time.Now().UnixNano())
		t = cp
	}
	s.gwTransports[key] = t
	return t
}

// clientPool is the pool of one client's connections to a backend that gets PROXY headers:
// the header names the client, so these connections are never shared. It remembers when it
// was last used, and sweepClientPools closes those idle for longer than clientPoolIdle.
type clientPool struct {
	backendPool
	used atomic.Int64 // UnixNano
}

// clientPoolIdle is how long a client's pool may go unused before it is closed: longer than
// the pools' own idle timeout (90 s), so that it only drops pools whose connections are gone.
const clientPoolIdle = 2 * time.Minute

// sweepClientPools closes and forgets the per-client pools unused for clientPoolIdle; it runs
// as a new one is made, which bounds them by the clients of the last two minutes. s.poolsMu is
// held.
func (s *Server) sweepClientPools() {
	cutoff := time.Now().Add(-clientPoolIdle).UnixNano()
	for k, t := range s.gwTransports {
		if cp, ok := t.(*clientPool); ok && cp.used.Load() < cutoff {
			cp.CloseIdleConnections()
			delete(s.gwTransports, k)
		}
	}
}

// learnedPool starts with HTTP/1.1 (h1Pool) and switches to net/http's Transport for good once
// the backend negotiates HTTP/2 in a TLS handshake.
type learnedPool struct {
	h1    *h1Pool
	newH2 func() *http.Transport
	isH2  atomic.Bool
	once  sync.Once
	h2    *http.Transport
}

func (p *learnedPool) RoundTrip(req *http.Request) (*http.Response, error) {
	if !p.isH2.Load() {
		resp, err := p.h1.RoundTrip(req)
		if !errors.Is(err, errH2Negotiated) {
			return resp, err
		}
		p.isH2.Store(true)
	}
	p.once.Do(func() { p.h2 = p.newH2() })
	return p.h2.RoundTrip(req)
}

func (p *learnedPool) CloseIdleConnections() {
	p.h1.CloseIdleConnections()
	if p.isH2.Load() {
		p.once.Do(func() { p.h2 = p.newH2() })
		p.h2.CloseIdleConnections()
	}
}

// FleetChanged is called by the resolver when a name's fleet changes: the pools of backends
// that left it are closed once idle (in-flight requests finish on their connections).
func (s *Server) FleetChanged(name string, fleet []netip.Addr) {
	s.retirePools(nil, func(k transportKey) bool { return k.name == name && !slices.Contains(fleet, k.backend.Addr()) })
}

// EgressRetired is called when the contract takes egress addresses out of use: tunnels that
// leave from one of them are closed (reason egress_retired), and the connection pools dialled
// from them are closed once idle, so that nothing leaves from an address after its
// retirement. It returns how many tunnels it closed.
func (s *Server) EgressRetired(addrs []netip.Addr) int {
	if len(addrs) == 0 {
		return 0
	}
	gone := func(a netip.Addr) bool { return slices.Contains(addrs, a) }
	s.retirePools(gone, func(k transportKey) bool { return gone(k.src) })
	return s.tunnels.closeFrom(addrs)
}

type retiredTransport struct {
	t  backendPool
	at time.Time
}

// tlsError marks a TLS handshake failure with a backend (often certificate verification).
type tlsError struct {
	name string
	err  error
}

func (e *tlsError) Error() string { return "TLS handshake: " + e.err.Error() }
func (e *tlsError) Unwrap() error { return e.err }

func (s *Server) gatewayError(w http.ResponseWriter, r *http.Request, err error) {
	gr := r.Context().Value(gatewayKey{}).(*gwReq)
	rt := gr.route
	var te *tlsError
	var cve *tls.CertificateVerificationError
	switch {
	case s.refuseBadBody(w, r, gr.rec, gr.body):
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		gr.rec.status, gr.rec.err = 499, err
	case errors.As(err, &cve):
		s.refuse(w, gr.rec, http.StatusBadGateway, fmt.Sprintf("backend of %s failed certificate verification: %v", rt.target, cve.Err), err)
	case errors.As(err, &te):
		s.refuse(w, gr.rec, http.StatusBadGateway, fmt.Sprintf("TLS to backend of %s failed: %v", rt.target, te.err), err)
	case errors.Is(err, egress.ErrNoneActive):
		s.refuse(w, gr.rec, http.StatusBadGateway, "no egress address is in service yet (the contract announces them before use)", err)
	case errors.Is(err, egress.ErrNoFamily):
		s.refuse(w, gr.rec, http.StatusBadGateway, "no egress address for the IP family of "+rt.target+"'s backends", err)
	case isTimeout(err):
		s.refuse(w, gr.rec, http.StatusGatewayTimeout, "timeout waiting for "+rt.target, err)
	case isDialError(err):
		s.refuse(w, gr.rec, http.StatusBadGateway, fmt.Sprintf("no backend of %s could be reached (%d tried): %s", rt.target, gr.attempts, shortNetErr(err)), err)
	default:
		s.refuse(w, gr.rec, http.StatusBadGateway, fmt.Sprintf("backend of %s failed: %s", rt.target, shortNetErr(err)), err)
	}
}

// runChecks probes every backend of each route that has a `check:` until ctx ends: GET path,
// any status below 500 is a success. Results feed the same outlier detection as live traffic,
// so a dead backend is ejected before a customer's request finds it.
func (s *Server) runChecks(ctx context.Context, st *settings) {
	for _, rt := range st.gateway.routes {
		if rt.cfg.Check == nil {
			continue
		}
		go func() {
			t := time.NewTicker(rt.cfg.Check.Interval)
			defer t.Stop()
			for {
				s.checkRoute(ctx, st, rt)
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
}

// routeFleet returns the route's backend addresses: its IP literal, or what its name resolves to.
func (s *Server) routeFleet(ctx context.Context, rt *gwRoute) ([]netip.Addr, error) {
	if rt.literal != nil {
		return rt.literal, nil
	}
	return s.resolver.LookupNetIP(ctx, rt.name)
}

func (s *Server) checkRoute(ctx context.Context, st *settings, rt *gwRoute) {
	timeout := rt.cfg.Check.Timeout
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	fleet, err := s.routeFleet(ctx, rt)
	if err != nil {
		s.log.Warn("health check: cannot resolve upstream", zap.String("upstream", rt.name), zap.Error(err))
		return
	}
	for _, a := range fleet {
		if st.policy.CheckAddr(a, rt.port) != nil {
			continue
		}
		ap := netip.AddrPortFrom(a, rt.port)
		src, err := s.egress.Pick("health-check", a)
		if err != nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		req, _ := http.NewRequestWithContext(cctx, http.MethodGet, "https://"+ap.String()+rt.cfg.Check.Path, nil)
		req.Host = rt.authority
		req.Header.Set("User-Agent", "fixedgate-health-check")
		att := s.health.Start(ap)
		resp, err := s.backendTransport(src, rt.name, ap, false, proxyOut{version: rt.ppVersion, local: rt.ppVersion != 0}).RoundTrip(req)
		if err == nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		if ctx.Err() != nil {
			att.Done(health.Canceled)
			cancel()
			return
		}
		att.Done(outcome(resp, err, cctx))
		cancel()
		if err != nil {
			s.log.Debug("health check failed", zap.String("upstream", rt.name), zap.Stringer("backend", ap), zap.Error(err))
		}
	}
}

// RouteState is one route's fleet as the status page shows it.
type RouteState struct {
	Host, PathPrefix, Upstream string
	Backends                   []netip.Addr // known now (DNS within its TTL), after the SSRF guard
	Ejected                    []netip.Addr // of Backends, ejected by outlier detection now
}

// RouteStates returns every route's fleet, from the resolver's cache (a name not looked up yet
// is looked up, within ctx) and the outlier detection's state.
func (s *Server) RouteStates(ctx context.Context) []RouteState {
	st := s.cur()
	ejected := map[netip.AddrPort]bool{}
	for _, e := range s.health.Ejected() {
		ejected[e.Addr] = true
	}
	out := make([]RouteState, 0, len(st.gateway.routes))
	for _, rt := range st.gateway.routes {
		rs := RouteState{Host: rt.host, PathPrefix: rt.prefix, Upstream: rt.target}
		if fleet, err := s.routeFleet(ctx, rt); err == nil {
			for _, a := range fleet {
				if st.policy.CheckAddr(a, rt.port) != nil {
					continue
				}
				rs.Backends = append(rs.Backends, a)
				if ejected[netip.AddrPortFrom(a, rt.port)] {
					rs.Ejected = append(rs.Ejected, a)
				}
			}
		}
		out = append(out, rs)
	}
	return out
}
