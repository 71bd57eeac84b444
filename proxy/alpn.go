package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"time"

	"golang.org/x/net/http2"
)

// serveNegotiatedH2 serves a TLS connection whose client chose h2 in ALPN. Most then speak
// HTTP/2, but Go's Transport, given an https:// proxy URL, offers h2 to the proxy and then
// sends an HTTP/1.1 CONNECT: so the first bytes decide. The HTTP/2 preface goes to the HTTP/2
// server; anything else is served as HTTP/1.1 on the same connection.
func (cs *connServer) serveNegotiatedH2(ctx context.Context, c *tls.Conn) {
	if d := cs.s.limits.ReadHeaderTimeout; d > 0 {
		c.SetReadDeadline(time.Now().Add(d))
	}
	br := bufio.NewReaderSize(c, 4<<10)
	preface := http2.ClientPreface
	isH2 := true
	for k := 1; k <= len(preface); k++ {
		b, err := br.Peek(k)
		if err != nil {
			c.Close() // closed, or silent past the header timeout
			return
		}
		if b[k-1] != preface[k-1] {
			isH2 = false
			break
		}
	}
	c.SetReadDeadline(time.Time{})
	if !isH2 {
		cs.h1.ServeConn(ctx, c, br)
		return
	}
	hc := newH2Coalescer(&peekedConn{Conn: c, r: br}, cs.s.limits.SendTimeout)
	cs.h2.ServeConn(hc, &http2.ServeConnOpts{Context: ctx, BaseConfig: cs.h2base, Handler: cs.h2handler})
	hc.Close()
}

// peekedConn is a TLS connection whose first bytes were read ahead into r.
type peekedConn struct {
	*tls.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
