package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// serveNegotiatedH2 serves a TLS connection whose client chose h2 in ALPN. Most then speak
// HTTP/2, but Go's Transport, given an https:// proxy URL, offers h2 to the proxy and then
// sends an HTTP/1.1 CONNECT: so the first bytes decide. The HTTP/2 preface goes to the HTTP/2
// server; anything else is served as HTTP/1.1 on the same connection.
func (s *Server) serveNegotiatedH2(hs *http.Server, h2 *http2.Server, c *tls.Conn, h http.Handler, listener string) {
	ctx := context.WithValue(context.Background(), listenerKey{}, listener)
	c.SetReadDeadline(time.Now().Add(s.limits.ReadHeaderTimeout))
	br := bufio.NewReaderSize(c, 4<<10)
	preface := http2.ClientPreface
	isH2 := true
	for k := 1; k <= len(preface); k++ {
		b, err := br.Peek(k)
		if err != nil {
			return // closed, or silent past the header timeout
		}
		if b[k-1] != preface[k-1] {
			isH2 = false
			break
		}
	}
	c.SetReadDeadline(time.Time{})
	pc := &peekedConn{Conn: c, r: br}
	if isH2 {
		h2.ServeConn(pc, &http2.ServeConnOpts{Context: ctx, BaseConfig: hs, Handler: h})
		return
	}
	// HTTP/1.1 on this one connection. The caller closes the connection when this returns, so
	// wait for handlers too: a CONNECT tunnel runs in its handler after the hijack.
	var handlers sync.WaitGroup
	done := make(chan struct{})
	var once sync.Once
	one := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			handlers.Add(1)
			defer handlers.Done()
			h.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: hs.ReadHeaderTimeout,
		IdleTimeout:       hs.IdleTimeout,
		MaxHeaderBytes:    hs.MaxHeaderBytes,
		ErrorLog:          hs.ErrorLog,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateClosed || st == http.StateHijacked {
				once.Do(func() { close(done) })
			}
		},
	}
	one.Serve(&oneConnListener{c: pc, done: done})
	handlers.Wait()
}

// peekedConn is a TLS connection whose first bytes were read ahead into r.
type peekedConn struct {
	*tls.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// oneConnListener hands one connection to an http.Server, then blocks Accept until that
// connection is done.
type oneConnListener struct {
	c    net.Conn
	once sync.Once
	done chan struct{}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	var c net.Conn
	l.once.Do(func() { c = l.c })
	if c != nil {
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return l.c.LocalAddr() }
