package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fixedgate/fixedgate/proxy/egress"
	"github.com/fixedgate/fixedgate/proxy/health"
	"github.com/fixedgate/fixedgate/proxy/limit"
	"github.com/fixedgate/fixedgate/proxy/policy"
	"github.com/fixedgate/fixedgate/proxy/resolver"
)

// ServeHTTP is the forward door and the fallback for everything else a listener receives.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x := &exchange{rec: record{start: time.Now(), client: r.RemoteAddr, listener: listenerName(r.Context())}, st: s.cur()}
	rec := &x.rec
	x.rw = responseRecorder{ResponseWriter: w, rec: rec}
	rw := &x.rw
	switch {
	case r.Method == http.MethodConnect:
		rec.door = "connect"
		s.serveConnect(rw, r, x)
	case r.URL.IsAbs():
		rec.door = "forward"
		s.serveForward(rw, r, x)
	case s.opts.Contract != nil && strings.HasPrefix(r.URL.Path, "/ip-ranges."):
		// The contract is served on every listener, ahead of any route.
		rec.door = "contract"
		rec.target = r.URL.Path
		s.opts.Contract.ServeHTTP(rw, r)
	default:
		if rt := x.st.gateway.match(r.Host, r.URL.Path); rt != nil {
			s.serveGateway(rw, r, x, rt)
			break
		}
		if s.opts.StatusPage != nil && isStatusPath(r.URL.Path) {
			// After the routes: a backend's own /status stays the backend's.
			rec.door = "status"
			rec.target = r.URL.Path
			s.opts.StatusPage.ServeHTTP(rw, r)
			break
		}
		rec.door = "local"
		rec.target = r.Host + r.URL.Path
		s.refuse(rw, rec, http.StatusNotFound, fmt.Sprintf("no route for %s%s; to use fixedgate as a proxy, set HTTPS_PROXY to this address", r.Host, r.URL.Path), nil)
	}
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	s.finish(rec)
}

func isStatusPath(p string) bool {
	return p == "/status" || p == "/status.json" || p == "/status.atom"
}

// rejected records a request refused before any door because its bytes are malformed or
// ambiguous (h1server's Rejected hook, h2Guard): a summary line and the request counters, with
// door "malformed". proto says which parser refused it.
func (s *Server) rejected(listener, client, proto string, status int, reason string) {
	s.finish(&record{start: time.Now(), listener: listener, client: client, door: "malformed",
		status: status, reason: proto + ": " + reason})
}

func (s *Server) finish(rec *record) {
	s.metrics.observe(rec)
	if ce := s.log.Check(zapInfo, "request"); ce != nil {
		rec.log(ce)
	}
}

// refuseLookup answers a request whose target name did not resolve: 504 when DNS timed out,
// else 502, with the name and what went wrong.
func (s *Server) refuseLookup(w http.ResponseWriter, rec *record, what string, err error) {
	code, reason := http.StatusBadGateway, "cannot resolve "+what
	switch {
	case errors.Is(err, resolver.ErrNotFound):
		reason += ": no such host"
	case isTimeout(err):
		code, reason = http.StatusGatewayTimeout, reason+": DNS timeout"
	}
	s.refuse(w, rec, code, reason, err)
}

// refuse answers with code and a one-line reason, for clients and for the summary log.
func (s *Server) refuse(w http.ResponseWriter, rec *record, code int, reason string, err error) {
	rec.status, rec.reason, rec.err = code, reason, err
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	if code == http.StatusProxyAuthRequired {
		h.Set("Proxy-Authenticate", `Basic realm="fixedgate"`)
	}
	w.WriteHeader(code)
	io.WriteString(w, "fixedgate: "+reason+"\n")
}

// authenticate returns the client's identity for policy and egress stickiness: the subject of
// a client certificate verified against tls.client_ca (TLS listeners with client_ca set), else
// the Basic user name, or the client IP when no users are configured. It answers 407 (or 403)
// itself when it fails.
//
// A verified client certificate replaces Basic credentials: Proxy-Authorization is not looked
// at then. When forward.users is set, the subject must also be one of its names: client_ca
// says who may complete a handshake, forward.users who may use the forward door, so a CA that
// also issues certificates for other purposes does not open the proxy to all of them, and
// removing a name from forward.users revokes that client without a CRL.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, x *exchange) (string, bool) {
	rec, auth := &x.rec, x.st.auth
	if subject, ok := certIdentity(r.TLS); ok {
		switch {
		case subject == "":
			s.refuse(w, rec, http.StatusForbidden, "client certificate names no subject (CommonName, DNS or URI SAN)", nil)
			return "", false
		case auth != nil && !auth.known(subject):
			rec.user = subject
			s.refuse(w, rec, http.StatusForbidden, "client certificate subject "+strconv.Quote(subject)+" is not in forward.users", nil)
			return "", false
		}
		rec.user = subject
		x.who = principal{user: subject, viaCert: true}
		if auth != nil {
			rec.users = s.metrics.user(subject)
		}
		return subject, true
	}
	clientIP := remoteIP(r)
	if auth == nil {
		return clientIP, true
	}
	// An address that failed too often gets 429 without its key being looked at: guessing is
	// slow, and an address that guesses does not lock out a customer's other addresses.
	addrKey := limit.AddrKey(clientIP)
	if ref := s.limiter.AuthBlocked(addrKey, x.st.limits.AuthFailures); ref != nil {
		s.refuseLimit(w, rec, ref, "-")
		return "", false
	}
	h := r.Header.Get("Proxy-Authorization")
	user, ok := auth.check(h)
	if !ok {
		reason := "proxy credentials required"
		if h != "" {
			reason = "proxy credentials rejected"
			s.limiter.AuthFailed(addrKey, x.st.limits.AuthFailures)
		}
		s.refuse(w, rec, http.StatusProxyAuthRequired, reason, nil)
		return "", false
	}
	rec.user = user
	rec.users = s.metrics.user(user)
	x.who = principal{user: user, key: auth.keys[user]}
	return user, true
}

// admit starts one request or tunnel of the request's customer under its limits: those of its
// forward.users name, or of its client address (an IPv6 client's /64) when it has none. Beyond a limit it answers
// 429 with Retry-After and reports false. The returned function ends what it started.
func (s *Server) admit(w http.ResponseWriter, x *exchange, addr string, k limit.Kind) (func(), bool) {
	var key, user string
	if x.rec.users != nil {
		user, key = x.rec.users.name, x.rec.users.limitKey
	} else {
		user, key = "-", "a:"+limit.AddrKey(addr)
	}
	release, ref := s.limiter.Acquire(key, x.st.clientLimits(user), k)
	if ref != nil {
		s.refuseLimit(w, &x.rec, ref, user)
		return nil, false
	}
	return release, true
}

// refuseLimit answers 429 with Retry-After and the limit's one-line reason; the summary line
// says reason=limit and which one, and fixedgate_limited_total{user,limit} counts it.
func (s *Server) refuseLimit(w http.ResponseWriter, rec *record, ref *limit.Refusal, user string) {
	secs := int(math.Ceil(ref.RetryAfter.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	s.refuse(w, rec, http.StatusTooManyRequests, ref.Reason, nil)
	rec.reason, rec.err = "limit", errors.New(ref.Limit+": "+ref.Reason)
	s.metrics.limited.WithLabelValues(user, ref.Limit).Inc()
}

// principal is who opened a tunnel, as a reload checks it again: a forward.users name and the
// key it proved, a client certificate's subject, or nobody (no users were configured).
type principal struct {
	user    string
	viaCert bool
	key     [32]byte
}

// route is a destination that passed policy: the addresses that were checked and may be dialled,
// nothing else (no second lookup, so a DNS answer cannot change between check and dial).
type route struct {
	addrs    []netip.Addr
	port     uint16
	identity string
	rec      *record
}

// resolveAndCheck applies the allow rules, resolves the name once and checks every address.
// It answers the client itself on failure.
func (s *Server) resolveAndCheck(ctx context.Context, w http.ResponseWriter, st *settings, t policy.Target, port uint16, rec *record) (*route, bool) {
	var addrs []netip.Addr
	if t.IsIP() {
		addrs = []netip.Addr{t.Addr}
	} else {
		var err error
		addrs, err = s.resolver.LookupNetIP(ctx, t.Host)
		if err != nil {
			s.refuseLookup(w, rec, t.Host, err)
			return nil, false
		}
	}
	for _, a := range addrs {
		if err := st.policy.CheckAddr(a, port); err != nil {
			reason := deniedReason(err)
			if !t.IsIP() {
				reason = t.Host + ": " + reason
			}
			rec.resolved = a
			s.refuse(w, rec, http.StatusForbidden, reason, nil)
			return nil, false
		}
	}
	return &route{addrs: addrs, port: port, rec: rec}, true
}

// maxDialAttempts bounds how many of a name's addresses one request tries.
const maxDialAttempts = 3

// dial connects to one of the route's addresses from the identity's egress address. The
// address is picked like the gateway's backends (two random choices, fewer in flight, ejected
// ones avoided), so the forward door spreads load and shares the outlier state of a name the
// gateway also uses; a failed connect is reported and the next pick excludes it.
//
// The returned Attempt is in flight until the caller reports its outcome: a tunnel reports when
// it ends, so in-flight counts open tunnels and a backend that accepts and then drops
// connections is seen failing.
func (s *Server) dial(ctx context.Context, rt *route) (*net.TCPConn, health.Attempt, error) {
	var lastErr error
	var triedBuf [8]netip.AddrPort // most names have few addresses: no allocation per request
	tried := triedBuf[:0]
	for attempts := 0; attempts < maxDialAttempts && len(tried) < len(rt.addrs); {
		ap, ok := s.health.Pick(rt.addrs, rt.port, tried)
		if !ok {
			break
		}
		tried = append(tried, ap)
		src, err := s.egress.Pick(rt.identity, ap.Addr())
		if err != nil {
			lastErr = err
			continue
		}
		attempts++
		rt.rec.resolved, rt.rec.egress = ap.Addr(), src
		att := s.health.Start(ap)
		c, err := s.egress.Dial(ctx, src, ap)
		if err == nil {
			return c, att, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			att.Done(health.Canceled)
			break
		}
		att.Done(health.ConnectFailure)
	}
	return nil, health.Attempt{}, lastErr
}

func (s *Server) dialFailed(w http.ResponseWriter, rec *record, target string, err error) {
	switch {
	case errors.Is(err, egress.ErrNoFamily):
		s.refuse(w, rec, http.StatusBadGateway, "no egress address for "+target+"'s IP family", err)
	case errors.Is(err, egress.ErrNoneActive):
		s.refuse(w, rec, http.StatusBadGateway, "no egress address is in service yet (the contract announces them before use)", err)
	case isTimeout(err):
		s.refuse(w, rec, http.StatusGatewayTimeout, "timeout connecting to "+target, err)
	default:
		s.refuse(w, rec, http.StatusBadGateway, "cannot connect to "+target+": "+shortNetErr(err), err)
	}
}

func (s *Server) serveConnect(w http.ResponseWriter, r *http.Request, x *exchange) {
	rec := &x.rec
	rec.target = r.RequestURI
	identity, ok := s.authenticate(w, r, x)
	if !ok {
		return
	}
	t, err := policy.ParseAuthority(r.RequestURI)
	if err != nil {
		s.refuse(w, rec, http.StatusBadRequest, "bad CONNECT target: "+err.Error(), nil)
		return
	}
	rec.target = t.String()
	rule, err := x.st.policy.Allow(t)
	if err != nil {
		s.refuse(w, rec, http.StatusForbidden, deniedReason(err), nil)
		return
	}
	release, ok := s.admit(w, x, remoteIP(r), limit.Tunnel)
	if !ok {
		return
	}
	defer release()
	rt, ok := s.resolveAndCheck(r.Context(), w, x.st, t, t.Port, rec)
	if !ok {
		return
	}
	rt.identity = identity
	upstream, att, err := s.dial(r.Context(), rt)
	if err != nil {
		s.dialFailed(w, rec, t.String(), err)
		return
	}
	if v, _ := parseProxyVersion(rule.ProxyProtocol); v != 0 {
		if err := writeProxyHeader(upstream, proxyOutFor(v, r, remoteIP(r)).header()); err != nil {
			att.Done(health.Reset)
			s.refuse(w, rec, http.StatusBadGateway, "cannot send the PROXY header to "+t.String()+": "+shortNetErr(err), err)
			return
		}
	}
	rec.status = http.StatusOK
	e := &tunnelEntry{principal: x.who, target: t, st: x.st}
	if ap, err := netip.ParseAddrPort(upstream.RemoteAddr().String()); err == nil {
		e.dialed = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	e.src = addrPortOf(upstream.LocalAddr()).Addr().Unmap()
	if r.ProtoMajor == 1 {
		s.tunnelHTTP1(w, upstream, x, e)
	} else {
		s.tunnelStream(w, r, upstream, x, e)
	}
	if rv := e.revoked.Load(); rv != nil {
		rec.reason, rec.err = rv.reason, errors.New(rv.msg)
	}
	// A backend that accepts and then drops the connection before answering anything (the
	// flapping link) connected fine, but failed the client.
	switch {
	case rec.bytesDown > 0:
		att.Done(health.Success)
	case rec.bytesUp > 0 || rec.err != nil: // sent and got nothing back, or the tunnel broke first
		att.Done(health.Reset)
	default:
		att.Done(health.Canceled)
	}
}

// tunnelHTTP1 takes over the client connection and splices it with upstream.
func (s *Server) tunnelHTTP1(w http.ResponseWriter, upstream *net.TCPConn, x *exchange, e *tunnelEntry) {
	rec := &x.rec
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		upstream.Close()
		rec.status, rec.err = http.StatusInternalServerError, fmt.Errorf("hijack: %w", err)
		return
	}
	closeBoth := func() { conn.Close(); upstream.Close() }
	e.close = closeBoth
	if !s.tunnels.add(e, s.cur()) {
		io.WriteString(conn, "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
		closeBoth()
		rec.status, rec.reason = http.StatusServiceUnavailable, "shutting down"
		return
	}
	defer s.tunnels.done(e)
	if rec.users != nil {
		rec.users.tunnels.Inc()
		defer rec.users.tunnels.Dec()
	}
	conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		closeBoth()
		rec.err = err
		return
	}
	// Bytes the client sent right behind the CONNECT (a TLS ClientHello, say) sit in the server's
	// buffer; they go first, then the sockets are joined directly.
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		if _, err := upstream.Write(b); err != nil {
			closeBoth()
			rec.err = err
			return
		}
		rec.bytesUp += int64(n)
	}
	// TCP on both sides: the raw relay and splice (copyTCP). A TLS client (the proxy's TLS
	// port) is relayed through a buffer, the upstream read and written with raw system calls.
	var client, up io.ReadWriter = conn, upstream
	if tcp := tcpOf(conn); tcp != nil {
		client = tcp
	} else {
		up = newRawConn(upstream)
	}
	p := &pipe{idle: x.st.limits.TunnelIdleTimeout}
	rec.err = p.run(client, up, closeBoth)
	rec.bytesUp += p.up.Load()
	rec.bytesDown += p.down.Load()
}

// tunnelStream serves CONNECT over HTTP/2 (RFC 9113 §8.5): the stream is the tunnel.
func (s *Server) tunnelStream(w http.ResponseWriter, r *http.Request, upstream *net.TCPConn, x *exchange, e *tunnelEntry) {
	rec := &x.rec
	rc := http.NewResponseController(w)
	closeBoth := func() { r.Body.Close(); upstream.Close() }
	e.close = closeBoth
	if !s.tunnels.add(e, s.cur()) {
		upstream.Close()
		s.refuse(w, rec, http.StatusServiceUnavailable, "shutting down", nil)
		return
	}
	defer s.tunnels.done(e)
	if rec.users != nil {
		rec.users.tunnels.Inc()
		defer rec.users.tunnels.Dec()
	}
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		upstream.Close()
		rec.err = err
		return
	}
	st := &stream{body: r.Body, w: w, rc: rc, upstream: upstream}
	p := &pipe{idle: x.st.limits.TunnelIdleTimeout}
	rec.err = p.run(st, upstream, closeBoth)
	rec.bytesUp, rec.bytesDown = p.up.Load(), p.down.Load()
}

// stream adapts an HTTP/2 CONNECT stream to the pipe. The response side cannot be half-closed
// without ending the handler, so the end of upstream's data ends the tunnel.
type stream struct {
	body     io.ReadCloser
	w        io.Writer
	rc       *http.ResponseController
	upstream *net.TCPConn
	closed   atomic.Bool
}

func (st *stream) Read(p []byte) (int, error) {
	n, err := st.body.Read(p)
	if err != nil && err != io.EOF && st.closed.Load() {
		err = net.ErrClosed
	}
	return n, err
}

func (st *stream) Write(p []byte) (int, error) {
	n, err := st.w.Write(p)
	if err == nil {
		err = st.rc.Flush()
	}
	return n, err
}

func (st *stream) SetReadDeadline(t time.Time) error { return st.rc.SetReadDeadline(t) }

// CloseWrite ends the tunnel: it stops reading the client's stream so the handler can return,
// which ends the response stream.
func (st *stream) CloseWrite() error {
	st.closed.Store(true)
	st.body.Close()
	return st.upstream.Close()
}

// serveForward proxies an absolute-form request (plain HTTP from an HTTP_PROXY client), upgraded
// to HTTPS upstream where the matching rule says upgrade_tls.
func (s *Server) serveForward(w http.ResponseWriter, r *http.Request, x *exchange) {
	rec := &x.rec
	rec.target = r.URL.Host
	identity, ok := s.authenticate(w, r, x)
	if !ok {
		return
	}
	release, ok := s.admit(w, x, remoteIP(r), limit.Request)
	if !ok {
		return
	}
	defer release()
	var defPort uint16
	switch r.URL.Scheme {
	case "http":
		defPort = 80
	case "https":
		defPort = 443
	default:
		s.refuse(w, rec, http.StatusBadRequest, "unsupported scheme "+strconv.Quote(r.URL.Scheme)+" (http or https)", nil)
		return
	}
	if r.URL.User != nil {
		s.refuse(w, rec, http.StatusBadRequest, "credentials in the request URL are not forwarded", nil)
		return
	}
	t, err := policy.ParseHostPort(r.URL.Host, defPort)
	if err != nil {
		s.refuse(w, rec, http.StatusBadRequest, "bad request target: "+err.Error(), nil)
		return
	}
	rec.target = t.String()
	rule, err := x.st.policy.Allow(t)
	if err != nil {
		s.refuse(w, rec, http.StatusForbidden, deniedReason(err), nil)
		return
	}
	scheme, port := r.URL.Scheme, t.Port
	if rule.UpgradeTLS && scheme == "http" {
		scheme = "https"
		if port == 80 {
			port = 443
		}
	}
	rt, ok := s.resolveAndCheck(r.Context(), w, x.st, t, port, rec)
	if !ok {
		return
	}
	rt.identity = identity
	host := t.Host
	if t.Addr.Is6() {
		host = "[" + host + "]"
	}
	if (scheme == "http" && port != 80) || (scheme == "https" && port != 443) {
		host = net.JoinHostPort(t.Host, strconv.Itoa(int(port)))
	}
	fr := &forwardReq{route: rt, scheme: scheme, host: host}
	if v, _ := parseProxyVersion(rule.ProxyProtocol); v != 0 {
		fr.pp = proxyOutFor(v, r, remoteIP(r)).header()
	}
	if r.Body != nil && r.Body != http.NoBody {
		x.body.ReadCloser = r.Body
		r.Body, fr.body = &x.body, &x.body
	}
	s.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), forwardKey{}, fr)))
	rec.bytesUp = x.body.n.Load()
}

type forwardKey struct{}

// forwardReq carries a checked route from serveForward to the transport's dialer.
type forwardReq struct {
	*route
	scheme, host string
	body         *countingBody // the client's request body, nil without one
	pp           []byte        // the PROXY header the origin's connection starts with, if its rule asks
}

func newReverseProxy(s *Server) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			fr := pr.In.Context().Value(forwardKey{}).(*forwardReq)
			pr.Out.URL.Scheme = fr.scheme
			pr.Out.URL.Host = fr.host
			pr.Out.Host = ""
			pr.Out.Header.Add("Via", "1.1 fixedgate")
		},
		Transport:      s.egressTransport(),
		ModifyResponse: closeAfterRefusedUpgrade,
		// 0: one write for headers and a small body. ReverseProxy still flushes every write of
		// a streaming response (text/event-stream, or no Content-Length), so SSE works.
		FlushInterval: 0,
		BufferPool:    copyBufferPool{},
		ErrorLog:      s.stdLog,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			fr := r.Context().Value(forwardKey{}).(*forwardReq)
			target := fr.scheme + "://" + fr.host
			switch {
			case s.refuseBadBody(w, r, fr.rec, fr.body):
			case errors.Is(err, egress.ErrNoFamily), errors.Is(err, egress.ErrNoneActive), isDialError(err):
				s.dialFailed(w, fr.rec, target, err)
			case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
				fr.rec.status, fr.rec.err = 499, err // client went away; nobody reads a reply
			case isTimeout(err):
				s.refuse(w, fr.rec, http.StatusGatewayTimeout, "timeout waiting for "+target, err)
			default:
				s.refuse(w, fr.rec, http.StatusBadGateway, "upstream "+target+" failed: "+shortNetErr(err), err)
			}
		},
	}
}

// closeAfterRefusedUpgrade ends an HTTP/1.x client connection after the response to a
// request that asked to switch protocols (Upgrade) and was refused. A balancer in front may
// have taken the Upgrade as done and now pass the client's bytes through unparsed; whatever
// the client sent after it must not be read here as further requests.
func closeAfterRefusedUpgrade(resp *http.Response) error {
	if req := resp.Request; resp.StatusCode != http.StatusSwitchingProtocols && req != nil &&
		req.ProtoMajor == 1 && req.Header.Get("Upgrade") != "" {
		resp.Header.Set("Connection", "close")
	}
	return nil
}

func deniedReason(err error) string {
	var d *policy.Denied
	if errors.As(err, &d) {
		return d.Reason
	}
	return err.Error()
}

// dialError marks a failure to connect, as opposed to a failure after connecting.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

func isDialError(err error) bool {
	var d *dialError
	return errors.As(err, &d)
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// shortNetErr drops the socket addresses Go puts in network errors; the log has them.
func shortNetErr(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		var se *os.SyscallError
		if errors.As(oe.Err, &se) {
			return se.Err.Error()
		}
		return oe.Err.Error()
	}
	return err.Error()
}

// countingBody is a client's request body on its way upstream: it counts the bytes for the
// summary line and keeps the first read error, so that a request that failed because the
// client's body was malformed is answered 400, not 502.
type countingBody struct {
	io.ReadCloser
	n   atomic.Int64          // the handler reads these while a transport's goroutine may
	err atomic.Pointer[error] // still be reading the body (an HTTP/2 backend that answered early)
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	if err != nil && err != io.EOF {
		b.err.CompareAndSwap(nil, &err)
	}
	return n, err
}

// refuseBadBody answers a proxied request that failed because reading the client's body
// failed, and reports whether it did: 400 when the body was malformed (bad chunked framing, a
// length the HTTP/2 stream did not keep), 499 in the log when the client left mid-body.
// Nothing complete reached the origin: the body was cut short there too.
func (s *Server) refuseBadBody(w http.ResponseWriter, r *http.Request, rec *record, body *countingBody) bool {
	if body == nil {
		return false
	}
	ep := body.err.Load()
	if ep == nil {
		return false
	}
	err := *ep
	if r.Context().Err() != nil || errors.Is(err, io.ErrUnexpectedEOF) {
		rec.status, rec.err = 499, err
		return true
	}
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close") // what is left of the body cannot be framed
	}
	s.refuse(w, rec, http.StatusBadRequest, "malformed request body: "+err.Error(), err)
	return true
}

// exchange is what one request carries through the doors, in a single allocation.
type exchange struct {
	rec  record
	rw   responseRecorder
	gw   gwReq
	body countingBody
	st   *settings // in force when the request arrived; it keeps them to its end
	who  principal // who authenticated, for tunnels a reload checks again
}

// responseRecorder notes status and bytes for the summary line; Unwrap keeps Flush and Hijack
// reachable through http.ResponseController.
type responseRecorder struct {
	http.ResponseWriter
	rec         *record
	wroteHeader bool
}

func (rw *responseRecorder) WriteHeader(code int) {
	if !rw.wroteHeader && code >= 200 {
		rw.wroteHeader = true
		if rw.rec.status == 0 || rw.rec.door == "forward" || rw.rec.door == "gateway" {
			rw.rec.status = code
		}
	}
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *responseRecorder) Write(p []byte) (int, error) {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	n, err := rw.ResponseWriter.Write(p)
	if rw.rec.door == "forward" || rw.rec.door == "gateway" {
		rw.rec.bytesDown += int64(n)
	}
	return n, err
}

func (rw *responseRecorder) Unwrap() http.ResponseWriter { return rw.ResponseWriter }

// remoteIP is the peer's address without its port.
func remoteIP(r *http.Request) string {
	ip, _, _ := net.SplitHostPort(r.RemoteAddr)
	return ip
}
