package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"time"

	"github.com/pires/go-proxyproto"
)

// readProxyHeader reads what a connection on a listener with proxy_protocol starts with, within
// timeout, and returns the connection to serve: behind a PROXY header from a trusted balancer,
// one whose RemoteAddr is the client the header names. It returns an error, and the caller
// closes the connection, for a header from an untrusted address, a trusted connection without
// one (unless optional), a malformed header, or one that does not finish in time. The wire
// format is go-proxyproto's; the policy (who may send one, what is required) is here.
func readProxyHeader(c net.Conn, pp *ProxyProtocolIn, timeout time.Duration) (*proxiedConn, error) {
	peer := addrPortOf(c.RemoteAddr())
	trusted := pp.trusts(peer.Addr())
	if timeout > 0 {
		c.SetReadDeadline(time.Now().Add(timeout))
		defer c.SetReadDeadline(time.Time{})
	}
	br := bufio.NewReaderSize(c, 1024)
	if _, err := br.Peek(1); err != nil {
		return nil, fmt.Errorf("nothing received: %w", err)
	}
	hdr, err := proxyproto.Read(br)
	switch {
	case errors.Is(err, proxyproto.ErrNoProxyProtocol):
		if b, _ := br.Peek(min(br.Buffered(), len(proxyproto.SIGV2))); startsHeader(b) {
			return nil, errors.New("incomplete PROXY header")
		}
		if trusted && !pp.Optional {
			return nil, fmt.Errorf("no PROXY header from %s, a trusted balancer (listen[].proxy_protocol.optional is false)", peer.Addr())
		}
		return &proxiedConn{Conn: c, r: br, remote: c.RemoteAddr()}, nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, fmt.Errorf("PROXY header not finished within %s", timeout)
	case err != nil:
		return nil, fmt.Errorf("malformed PROXY header: %w", err)
	case !trusted:
		return nil, fmt.Errorf("PROXY header from %s, which is not in listen[].proxy_protocol.trusted", peer.Addr())
	}
	pc := &proxiedConn{Conn: c, r: br, remote: c.RemoteAddr()}
	// LOCAL (v2) and UNKNOWN (v1) are the balancer speaking for itself, as its health checks
	// do: served with its own address.
	if src, dst, ok := hdr.TCPAddrs(); ok && hdr.Command.IsProxy() {
		pc.remote, pc.ingress = src, dst
	}
	return pc, nil
}

// startsHeader reports whether b (what arrived before the header read gave up) is the start of
// a PROXY signature, v1 or v2: a header cut off, not a connection without one.
func startsHeader(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	return bytes.HasPrefix(proxyproto.SIGV1, b[:min(len(b), len(proxyproto.SIGV1))]) ||
		bytes.HasPrefix(proxyproto.SIGV2, b)
}

// proxiedConn is a connection that passed readProxyHeader: reads drain what the header read
// buffered first, and RemoteAddr is the client the header named (or the peer's own address).
type proxiedConn struct {
	net.Conn
	r       *bufio.Reader // nil once drained
	remote  net.Addr
	ingress net.Addr // the address the client connected to at the balancer; nil without a header
}

func (c *proxiedConn) Read(p []byte) (int, error) {
	if c.r != nil {
		if c.r.Buffered() > 0 {
			return c.r.Read(p)
		}
		c.r = nil
	}
	return c.Conn.Read(p)
}

func (c *proxiedConn) RemoteAddr() net.Addr { return c.remote }

// CloseWrite half-closes, as a tunnel's relay does when the client is done sending.
func (c *proxiedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// drained reports whether nothing read ahead is left, so that the connection under it may be
// read directly (splice).
func (c *proxiedConn) drained() bool { return c.r == nil || c.r.Buffered() == 0 }

func addrPortOf(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// parseProxyVersion reads routes[].proxy_protocol and forward.allow[].proxy_protocol.
func parseProxyVersion(s string) (byte, error) {
	switch s {
	case "":
		return 0, nil
	case "v1":
		return 1, nil
	case "v2":
		return 2, nil
	}
	return 0, fmt.Errorf("proxy_protocol: %q must be v1 or v2 (or left out)", s)
}

// proxyOut is the PROXY header a connection to a backend or origin starts with. It is
// comparable, so that it keys the pool of such connections; version 0 is none.
type proxyOut struct {
	version byte
	local   bool       // the proxy speaking for itself (health checks): v2 LOCAL, v1 UNKNOWN
	client  netip.Addr // the source the header names (the port is not carried: pools are per address)
	ingress netip.AddrPort
}

// header is the wire form of p, or nil for none.
func (p proxyOut) header() []byte {
	if p.version == 0 {
		return nil
	}
	h := &proxyproto.Header{Version: p.version, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}
	if p.version == 1 {
		h.Command = proxyproto.PROXY // v1 has no LOCAL: "PROXY UNKNOWN"
	}
	if !p.local && p.client.IsValid() && p.ingress.IsValid() {
		h = proxyproto.HeaderProxyFromAddrs(p.version,
			&net.TCPAddr{IP: p.client.AsSlice()}, net.TCPAddrFromAddrPort(p.ingress))
	}
	b, err := h.Format()
	if err != nil { // only an unsupported address pair; the proxy then speaks for itself
		b, _ = (&proxyproto.Header{Version: p.version, Command: h.Command, TransportProtocol: proxyproto.UNSPEC}).Format()
	}
	return b
}

// ingressKey is the context key of the address the client connected to: the listener's own,
// or, behind a balancer that sends PROXY headers, the one the header names.
type ingressKey struct{}

func ingressOf(ctx context.Context) netip.AddrPort {
	ap, _ := ctx.Value(ingressKey{}).(netip.AddrPort)
	return ap
}

// proxyOutFor is the header to send upstream for r, when version asks for one: the client is
// client (after PROXY-in and gateway.trusted_proxies), the destination the ingress address.
func proxyOutFor(version byte, r *http.Request, client string) proxyOut {
	if version == 0 {
		return proxyOut{}
	}
	a, err := netip.ParseAddr(client)
	if err != nil { // behind a trusted balancer that named no client: the peer
		a, _ = netip.ParseAddr(remoteIP(r))
	}
	return proxyOut{version: version, client: a.Unmap(), ingress: ingressOf(r.Context())}
}

// writeProxyHeader sends h on a new upstream connection, bounded by a deadline, and closes the
// connection when it cannot.
func writeProxyHeader(c net.Conn, h []byte) error {
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Write(h)
	c.SetWriteDeadline(time.Time{})
	if err != nil {
		c.Close()
		return fmt.Errorf("send PROXY header: %w", err)
	}
	return nil
}
