package proxy

// One gateway request, from the door to a backend: the client's limits, the fleet, the reverse
// proxy and its transport (backend picks, retries, the retry budget), and the error answers.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/fixedgate/fixedgate/proxy/egress"
	"github.com/fixedgate/fixedgate/proxy/health"
	"github.com/fixedgate/fixedgate/proxy/limit"
)

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
	client, named := x.st.gatewayClient(r)
	if named {
		release, ok := s.admit(w, x, client, limit.Request)
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
