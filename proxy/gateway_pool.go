package proxy

// Connection pools to gateway backends: one per backend, egress address and upstream name (and
// client, for backends that get PROXY headers); closed when a backend leaves the fleet, the
// settings change or an egress address retires.

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// upstreamH2StreamWindow is the flow-control window fixedgate gives each stream it opens to an
// HTTP/2 backend or origin: how far a backend may send ahead of the client. It bounds what a
// client that asks and never reads can make the proxy hold (this plus bigBufSize per stream;
// net/http's default, 4 MiB, let one connection of 250 such streams pin about 1 GiB). Twice
// bigBufSize, so that a backend fills one half while the other is handed to the client; one
// stream then carries at most 512 KiB per round trip to its backend (about 500 MiB/s at 1 ms,
// 10 MiB/s at 50 ms).
const upstreamH2StreamWindow = 2 * bigBufSize

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
