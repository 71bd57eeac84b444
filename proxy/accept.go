package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/http2"

	"github.com/fixedgate/fixedgate/proxy/h1server"
)

// connServer serves one bound listener: it accepts, does the TLS handshake itself on TLS
// listeners, and hands each connection to the HTTP/1.1 server (h1server) or, when the client
// negotiated h2 and sends its preface, to the HTTP/2 server.
type connServer struct {
	s         *Server
	ln        net.Listener
	name      string
	tlsConfig *tls.Config      // nil on a plain listener
	proxyIn   *ProxyProtocolIn // listen[].proxy_protocol; nil: connections come straight from clients
	h2handler http.Handler     // s, behind presizeStack: each HTTP/2 request runs on a new goroutine
	gen       atomic.Pointer[connGen]

	acceptDone chan struct{}
	closing    atomic.Bool
	wg         sync.WaitGroup // one per connection
	mu         sync.Mutex
	conns      map[net.Conn]*connGen // every accepted connection, for the hard stop
	early      map[net.Conn]struct{} // in the TLS handshake or the h2 sniff: shutdown closes these at once
	gens       []*connGen            // the current generation and older ones still serving
}

// connGen is the per-connection servers built from one set of limits. A reload with new limits
// starts a new generation for new connections; an older one serves its connections to their end.
type connGen struct {
	limits Limits
	h1     *h1server.Server
	h2     *http2.Server
	h2base *http.Server // the HTTP/2 server's settings; its Shutdown sends GOAWAY on every h2 connection
}

func (s *Server) newConnServer(ln net.Listener, name string, tlsConfig *tls.Config, proxyIn *ProxyProtocolIn) *connServer {
	cs := &connServer{
		s:          s,
		ln:         ln,
		name:       name,
		tlsConfig:  tlsConfig,
		proxyIn:    proxyIn,
		acceptDone: make(chan struct{}),
		conns:      map[net.Conn]*connGen{},
		early:      map[net.Conn]struct{}{},
	}
	if tlsConfig != nil {
		cs.h2handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			presizeStack()
			s.ServeHTTP(w, r)
		})
	}
	cs.setLimits(s.cur().limits)
	return cs
}

// setLimits starts a generation of servers with l for the connections accepted from now on.
func (cs *connServer) setLimits(l Limits) {
	s := cs.s
	g := &connGen{
		limits: l,
		h1: &h1server.Server{
			Handler:           s,
			ReadHeaderTimeout: l.ReadHeaderTimeout,
			IdleTimeout:       l.IdleTimeout,
			SendTimeout:       l.SendTimeout,
			MaxHeaderBytes:    l.MaxHeaderBytes,
			ErrorLog:          s.panicLog, // h1server logs only handler panics
			Rejected: func(remote string, status int, reason string) {
				s.rejected(cs.name, remote, "HTTP/1.x", status, reason)
			},
		},
	}
	if cs.tlsConfig != nil {
		g.h2 = &http2.Server{IdleTimeout: l.IdleTimeout, WriteByteTimeout: l.SendTimeout, MaxUploadBufferPerStream: 1 << 20,
			MaxReadFrameSize: h2MaxFrameSize}
		g.h2base = &http.Server{
			Handler:           s,
			ReadHeaderTimeout: l.ReadHeaderTimeout,
			IdleTimeout:       l.IdleTimeout,
			MaxHeaderBytes:    l.MaxHeaderBytes,
			ErrorLog:          s.stdLog,
		}
		if err := http2.ConfigureServer(g.h2base, g.h2); err != nil {
			// Only a TLS config with unusable cipher suites fails here, and h2base has none.
			s.log.Error("http2 server setup", zap.Error(err))
		}
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	// Older generations without connections are done.
	inUse := map[*connGen]bool{}
	for _, og := range cs.conns {
		inUse[og] = true
	}
	cs.gens = slices.DeleteFunc(cs.gens, func(og *connGen) bool { return !inUse[og] })
	cs.gens = append(cs.gens, g)
	cs.gen.Store(g)
}

// serve accepts until the listener closes.
func (cs *connServer) serve() error {
	defer close(cs.acceptDone)
	var delay time.Duration
	for {
		c, err := cs.ln.Accept()
		if err != nil {
			if cs.closing.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne interface{ Temporary() bool }
			if errors.As(err, &ne) && ne.Temporary() { // out of descriptors, say: wait, as net/http does
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				cs.s.log.Warn("accept failed; retrying", zap.String("listener", cs.name), zap.Error(err), zap.Duration("retry_in", delay))
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		cs.wg.Add(1)
		go cs.handle(c)
	}
}

func (cs *connServer) track(c net.Conn, g *connGen) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if g != nil {
		cs.conns[c] = g
		if !slices.Contains(cs.gens, g) { // pruned between its Load and now: shutdown must see it
			cs.gens = append(cs.gens, g)
		}
	} else {
		delete(cs.conns, c)
		delete(cs.early, c)
	}
}

// handOff ends c's early phase (TLS handshake, h2 sniff), in which nothing has been asked on it
// yet and shutdown closes it at once. From here the HTTP/1.1 or HTTP/2 server owns it, and their
// shutdowns close it once idle. It reports false, and closes c, when shutdown has begun.
func (cs *connServer) handOff(c net.Conn) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	delete(cs.early, c)
	if cs.closing.Load() {
		c.Close()
		return false
	}
	return true
}

func (cs *connServer) handle(c net.Conn) {
	defer cs.wg.Done()
	g := cs.gen.Load()
	cs.track(c, g)
	defer cs.track(c, nil)
	ctx := context.WithValue(context.Background(), listenerKey{}, cs.name)
	ctx = context.WithValue(ctx, ingressKey{}, addrPortOf(c.LocalAddr()))
	if cs.tlsConfig == nil && cs.proxyIn == nil {
		g.h1.ServeConn(ctx, c, nil)
		return
	}
	raw := c
	cs.mu.Lock()
	cs.early[raw] = struct{}{}
	cs.mu.Unlock()
	if cs.proxyIn != nil {
		pc, err := readProxyHeader(c, cs.proxyIn, g.limits.ReadHeaderTimeout)
		if err != nil {
			cs.s.rejected(cs.name, c.RemoteAddr().String(), "PROXY", http.StatusBadRequest, err.Error()+"; connection closed")
			c.Close()
			return
		}
		c = pc
		if pc.ingress != nil {
			ctx = context.WithValue(ctx, ingressKey{}, addrPortOf(pc.ingress))
		}
		if cs.tlsConfig == nil {
			if cs.handOff(raw) {
				g.h1.ServeConn(ctx, c, nil)
			}
			return
		}
	}
	tc := tls.Server(c, cs.tlsConfig)
	if d := g.limits.ReadHeaderTimeout; d > 0 {
		c.SetDeadline(time.Now().Add(d))
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		var rhe tls.RecordHeaderError
		if errors.As(err, &rhe) && rhe.Conn != nil && looksLikeHTTP(rhe.RecordHeader) {
			io.WriteString(rhe.Conn, "HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
		}
		cs.s.stdLog.Printf("http: TLS handshake error from %s: %v", c.RemoteAddr(), err)
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	switch tc.ConnectionState().NegotiatedProtocol {
	case "h2":
		cs.serveNegotiatedH2(ctx, tc, g, raw)
	case "", "http/1.1":
		if cs.handOff(raw) {
			g.h1.ServeConn(ctx, tc, nil)
		}
	default: // acme-tls/1: the handshake was the whole exchange
		tc.Close()
	}
}

// looksLikeHTTP reports whether a TLS record header is really the start of a plain-text HTTP
// request (a client that used http:// on the TLS port).
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "CONNE", "DELET", "PATCH":
		return true
	}
	return false
}

// shutdown stops accepting, sends GOAWAY to HTTP/2 clients, lets requests in progress finish
// until ctx ends, then closes every connection that is left.
func (cs *connServer) shutdown(ctx context.Context) error {
	cs.closing.Store(true)
	cs.ln.Close()
	<-cs.acceptDone
	cs.mu.Lock()
	gens := slices.Clone(cs.gens)
	for c := range cs.early {
		c.Close()
	}
	cs.mu.Unlock()
	for _, g := range gens {
		if g.h2base != nil {
			g.h2base.Shutdown(ctx) // no listener of its own: this only starts the h2 GOAWAYs
		}
	}
	var err error
	for _, g := range gens {
		if e := g.h1.Shutdown(ctx); err == nil {
			err = e
		}
	}
	done := make(chan struct{})
	go func() { cs.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		cs.mu.Lock()
		for c := range cs.conns {
			c.Close()
		}
		cs.mu.Unlock()
		<-done
		if err == nil {
			err = ctx.Err()
		}
	}
	return err
}
