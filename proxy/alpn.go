package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"time"

	"golang.org/x/net/http2"
)

// serveNegotiatedH2 serves a TLS connection whose client chose h2 in ALPN. Most then speak
// HTTP/2, but Go's Transport, given an https:// proxy URL, offers h2 to the proxy and then
// sends an HTTP/1.1 CONNECT (or, for an http:// target, an absolute-form request): so the first
// bytes decide. The HTTP/2 preface goes to the HTTP/2 server, behind h2Guard; a request line
// of one of those two proxy shapes is served as HTTP/1.1 on the same connection; anything else
// breaks the protocol the client chose and the connection is closed (RFC 9113 section 3.4).
// raw is the accepted connection under c, as shutdown tracks it.
func (cs *connServer) serveNegotiatedH2(ctx context.Context, c *tls.Conn, g *connGen, raw net.Conn) {
	if d := g.limits.ReadHeaderTimeout; d > 0 {
		c.SetReadDeadline(time.Now().Add(d))
	}
	br := bufio.NewReaderSize(c, 4<<10)
	kind := sniffH2(br)
	c.SetReadDeadline(time.Time{})
	if !cs.handOff(raw) {
		return
	}
	switch kind {
	case sniffedH1Proxy:
		g.h1.ServeConn(ctx, c, br)
		return
	case sniffedOther:
		c.Close()
		return
	}
	remote := c.RemoteAddr().String()
	guard := newH2Guard(br, g.limits.MaxHeaderBytes, func(reason string) {
		cs.s.rejected(cs.name, remote, "HTTP/2", 400, reason)
	})
	hc := newH2Coalescer(&peekedConn{Conn: c, r: guard}, g.limits.SendTimeout)
	g.h2.ServeConn(hc, &http2.ServeConnOpts{Context: ctx, BaseConfig: g.h2base, Handler: cs.h2handler})
	hc.Close()
}

type sniffed int

const (
	sniffedH2      sniffed = iota // the HTTP/2 client preface
	sniffedH1Proxy                // CONNECT, or a request with an absolute-form target
	sniffedOther                  // anything else, or nothing before the header timeout
)

// sniffH2 peeks at the first bytes of an h2-negotiated connection, as few as decide.
func sniffH2(br *bufio.Reader) sniffed {
	preface := []byte(http2.ClientPreface)
	for k := 1; ; k++ {
		b, err := br.Peek(k)
		if err != nil {
			return sniffedOther // closed, or silent past the header timeout
		}
		if k <= len(preface) && bytes.Equal(b, preface[:k]) {
			if k == len(preface) {
				return sniffedH2
			}
			continue
		}
		if s, done := sniffProxyLine(b); done || k >= 32 {
			return s
		}
	}
}

// sniffProxyLine decides, once b holds enough of a request line, whether it is
// "CONNECT " or "METHOD http(s)://".
func sniffProxyLine(b []byte) (sniffed, bool) {
	sp := bytes.IndexByte(b, ' ')
	if sp < 0 {
		for _, c := range b {
			if c < 'A' || c > 'Z' {
				return sniffedOther, true
			}
		}
		return sniffedOther, false
	}
	if sp == 0 {
		return sniffedOther, true
	}
	if string(b[:sp]) == "CONNECT" {
		return sniffedH1Proxy, true
	}
	target := b[sp+1:]
	for _, scheme := range []string{"http://", "https://"} {
		n := min(len(target), len(scheme))
		if !bytes.EqualFold(target[:n], []byte(scheme[:n])) {
			continue
		}
		if n == len(scheme) {
			return sniffedH1Proxy, true
		}
		return sniffedOther, false
	}
	return sniffedOther, true
}

// peekedConn is a TLS connection whose reads go through r (read-ahead and the HTTP/2 guard).
type peekedConn struct {
	*tls.Conn
	r io.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
