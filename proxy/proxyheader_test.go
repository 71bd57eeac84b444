package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// endOfInput, at the end of what a case sends, makes the client half-close after it.
const endOfInput = "<EOF>"

// TestReadProxyHeader drives readProxyHeader over real loopback connections from a trusted
// source address (127.0.0.61, in 127.0.0.60/30) and an untrusted one (127.0.0.70): who may send
// a header, what is required, what a malformed, truncated or late header gets, and that the
// bytes after the header reach the server intact.
func TestReadProxyHeader(t *testing.T) {
	const trustedSrc, untrustedSrc = "127.0.0.61", "127.0.0.70"
	client := &net.TCPAddr{IP: net.ParseIP("203.0.113.7"), Port: 51000}
	front := &net.TCPAddr{IP: net.ParseIP("198.51.100.10"), Port: 443}
	header := func(v byte, cmd proxyproto.ProtocolVersionAndCommand) string {
		h := proxyproto.HeaderProxyFromAddrs(v, client, front)
		h.Command = cmd
		b, err := h.Format()
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	const payload = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	for _, tc := range []struct {
		name     string
		from     string
		optional bool
		send     string
		wantErr  string // "" : served
		remote   string // the client address the connection then reports
	}{
		{"v1 from a trusted balancer", trustedSrc, false, header(1, proxyproto.PROXY) + payload, "", "203.0.113.7:51000"},
		{"v2 from a trusted balancer", trustedSrc, false, header(2, proxyproto.PROXY) + payload, "", "203.0.113.7:51000"},
		{"v2 LOCAL: the balancer's own health check", trustedSrc, false, header(2, proxyproto.LOCAL) + payload, "", trustedSrc},
		{"v1 UNKNOWN", trustedSrc, false, "PROXY UNKNOWN\r\n" + payload, "", trustedSrc},
		{"trusted without a header", trustedSrc, false, payload, "no PROXY header from 127.0.0.61", ""},
		{"trusted without a header, optional", trustedSrc, true, payload, "", trustedSrc},
		{"untrusted with a header", untrustedSrc, false, header(1, proxyproto.PROXY) + payload, "not in listen[].proxy_protocol.trusted", ""},
		{"untrusted with a v2 header", untrustedSrc, true, header(2, proxyproto.PROXY) + payload, "not in listen[].proxy_protocol.trusted", ""},
		{"untrusted without a header", untrustedSrc, false, payload, "", untrustedSrc},
		{"malformed v1", trustedSrc, false, "PROXY TCP4 203.0.113.7 nonsense 1 2\r\n" + payload, "malformed PROXY header", ""},
		{"v1 without its line end", trustedSrc, false, "PROXY TCP4 203.0.113.7 198.51.100.10 51000 443", "malformed PROXY header", ""},
		{"truncated v2, then silence", trustedSrc, false, header(2, proxyproto.PROXY)[:20], "PROXY header not finished within 300ms", ""},
		{"first bytes of a signature, then silence", trustedSrc, false, "PRO", "PROXY header not finished within 300ms", ""},
		{"silent", trustedSrc, false, "", "nothing received", ""},
		{"first bytes of a signature, then the end", trustedSrc, true, "PROX" + endOfInput, "incomplete PROXY header", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(tc.from)}}
			cc, err := d.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			send, end := strings.CutSuffix(tc.send, endOfInput)
			io.WriteString(cc, send)
			if end {
				cc.(*net.TCPConn).CloseWrite()
			}
			sc, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer sc.Close()
			pp := &ProxyProtocolIn{Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.60/30")}, Optional: tc.optional}
			c, err := readProxyHeader(sc, pp, 300*time.Millisecond)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			host := c.RemoteAddr().String()
			if !strings.Contains(tc.remote, ":") {
				host, _, _ = net.SplitHostPort(host)
			}
			if host != tc.remote {
				t.Errorf("RemoteAddr %s, want %s", c.RemoteAddr(), tc.remote)
			}
			got := make([]byte, len(payload))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(c, got); err != nil || string(got) != payload {
				t.Errorf("after the header: %q, %v; want %q", got, err, payload)
			}
		})
	}
}

// TestProxyOutHeader: the header sent upstream parses back (with the same library a backend
// such as Caddy uses) to the client and ingress addresses, in both versions and across address
// families; the proxy's own connections (health checks) say LOCAL (v2) or UNKNOWN (v1).
func TestProxyOutHeader(t *testing.T) {
	v4, v6 := netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("2001:db8::7")
	in4, in6 := netip.MustParseAddrPort("198.51.100.10:443"), netip.MustParseAddrPort("[2001:db8::10]:443")
	for _, tc := range []struct {
		name      string
		p         proxyOut
		wantSrc   string // "" : no addresses (LOCAL / UNKNOWN)
		wantV1Raw string // for v1, the exact line
	}{
		{"v1, IPv4", proxyOut{version: 1, client: v4, ingress: in4}, "203.0.113.7", "PROXY TCP4 203.0.113.7 198.51.100.10 0 443\r\n"},
		{"v2, IPv4", proxyOut{version: 2, client: v4, ingress: in4}, "203.0.113.7", ""},
		{"v2, IPv6", proxyOut{version: 2, client: v6, ingress: in6}, "2001:db8::7", ""},
		{"v1, IPv4 client on an IPv6 ingress", proxyOut{version: 1, client: v4, ingress: in6}, "203.0.113.7", ""},
		{"v1, health check", proxyOut{version: 1, local: true}, "", "PROXY UNKNOWN\r\n"},
		{"v2, health check", proxyOut{version: 2, local: true}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.p.header()
			if tc.wantV1Raw != "" && string(b) != tc.wantV1Raw {
				t.Fatalf("header %q, want %q", b, tc.wantV1Raw)
			}
			h, err := proxyproto.Read(bufio.NewReader(bytes.NewReader(b)))
			if err != nil {
				t.Fatalf("%q does not parse: %v", b, err)
			}
			src, dst, ok := h.TCPAddrs()
			if tc.wantSrc == "" {
				if ok && h.Command.IsProxy() {
					t.Fatalf("a health check's header names %v → %v", src, dst)
				}
				return
			}
			if !ok {
				t.Fatalf("%q names no TCP addresses", b)
			}
			if got := src.AddrPort().Addr().Unmap().String(); got != tc.wantSrc {
				t.Errorf("source %s, want %s", got, tc.wantSrc)
			}
			if got := dst.AddrPort(); got.Addr().Unmap() != tc.p.ingress.Addr() || got.Port() != tc.p.ingress.Port() {
				t.Errorf("destination %s, want %s", got, tc.p.ingress)
			}
		})
	}
	if (proxyOut{}).header() != nil {
		t.Error("version 0 sends a header")
	}
}

// fakeConn is a net.Conn over bytes, for measuring the header read alone (no sockets).
type fakeConn struct {
	net.Conn
	r           *bytes.Reader
	local, peer net.Addr
}

func (c *fakeConn) Read(p []byte) (int, error)      { return c.r.Read(p) }
func (c *fakeConn) RemoteAddr() net.Addr            { return c.peer }
func (c *fakeConn) LocalAddr() net.Addr             { return c.local }
func (c *fakeConn) SetReadDeadline(time.Time) error { return nil }

// BenchmarkReadProxyHeader is PROXY-in's CPU cost per new connection: reading and checking the
// header (or its absence) and wrapping the connection, before the TLS handshake.
func BenchmarkReadProxyHeader(b *testing.B) {
	client := &net.TCPAddr{IP: net.ParseIP("203.0.113.7"), Port: 51000}
	front := &net.TCPAddr{IP: net.ParseIP("198.51.100.10"), Port: 443}
	hello := bytes.Repeat([]byte{0x16}, 517) // about a TLS ClientHello
	pp := &ProxyProtocolIn{Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	for _, tc := range []struct {
		name string
		peer string
		hdr  []byte
	}{
		{"v1", "10.0.0.1:40000", must(proxyproto.HeaderProxyFromAddrs(1, client, front).Format())},
		{"v2", "10.0.0.1:40000", must(proxyproto.HeaderProxyFromAddrs(2, client, front).Format())},
		{"untrusted client, no header", "192.0.2.1:40000", nil},
	} {
		b.Run(tc.name, func(b *testing.B) {
			in := append(slices.Clone(tc.hdr), hello...)
			peer := net.TCPAddrFromAddrPort(netip.MustParseAddrPort(tc.peer))
			b.ReportAllocs()
			for range b.N {
				c := &fakeConn{r: bytes.NewReader(in), local: front, peer: peer}
				if _, err := readProxyHeader(c, pp, time.Second); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
