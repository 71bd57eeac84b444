package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/fixedgate/fixedgate/proxy/h1wire"
)

// h1Pool is a lean HTTP/1.1 client for one backend: the request is written and the response
// read on the calling goroutine, over a pool of keep-alive connections. net/http's Transport
// hands every request to two goroutines per connection; on the gateway's keep-alive path those
// hand-offs cost more than the proxying itself. Framing (Content-Length, chunked, trailers) is
// net/http's own, Request.Write and ReadResponse, except for the common shapes package
// h1wire writes and reads the same way itself.
type h1Pool struct {
	dial                  func(ctx context.Context) (*tls.Conn, error)
	responseHeaderTimeout time.Duration
	idleTimeout           time.Duration
	maxIdle               int
	maxHeaderBytes        int64 // what a response header (with any 1xx before it) may take; 0: no limit

	mu     sync.Mutex
	idle   []*h1Conn // most recently used last
	closed bool
}

type h1Conn struct {
	c     *tls.Conn
	abort func()      // ends a blocked read or write: the request's context was cancelled
	lim   headerLimit // between c and br
	br    *bufio.Reader
	bw    *bufio.Writer
	used  time.Time // when it went idle
}

// errH2Negotiated tells the caller that the backend chose HTTP/2; the connection was closed.
var errH2Negotiated = errors.New("backend negotiated h2")

// errStaleConn marks a reused connection that failed before any response byte: the backend
// closed it while idle, and the request may go again on a fresh one.
type errStaleConn struct{ err error }

func (e *errStaleConn) Error() string { return e.err.Error() }
func (e *errStaleConn) Unwrap() error { return e.err }

func (p *h1Pool) get(ctx context.Context) (*h1Conn, bool, error) {
	p.mu.Lock()
	for len(p.idle) > 0 {
		cn := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if time.Since(cn.used) < p.idleTimeout {
			p.mu.Unlock()
			return cn, true, nil
		}
		cn.c.Close()
	}
	p.mu.Unlock()
	c, err := p.dial(ctx)
	if err != nil {
		return nil, false, err
	}
	if c.ConnectionState().NegotiatedProtocol == "h2" {
		c.Close()
		return nil, false, errH2Negotiated
	}
	cn := &h1Conn{c: c, lim: headerLimit{r: c, left: -1}, bw: bufio.NewWriterSize(c, 8<<10)}
	cn.br = bufio.NewReaderSize(&cn.lim, 16<<10)
	cn.abort = func() { c.SetDeadline(time.Unix(1, 0)) }
	return cn, false, nil
}

// headerLimit bounds what a backend may send before its response header ends, so that an
// endless header (or endless 1xx responses) costs an error instead of memory and time.
type headerLimit struct {
	r    io.Reader
	left int64 // bytes still allowed; negative: no limit (the body is being read)
	max  int64
}

// errHeaderTooLarge is the error of a response whose header went over the limit.
type errHeaderTooLarge struct{ max int64 }

func (e *errHeaderTooLarge) Error() string {
	return fmt.Sprintf("backend response header larger than %d bytes (4 x limits.max_header_bytes; raise that limit if the backend's headers are legitimately this large)", e.max)
}

func (l *headerLimit) Read(p []byte) (int, error) {
	if l.left < 0 {
		return l.r.Read(p)
	}
	if l.left == 0 {
		return 0, &errHeaderTooLarge{l.max}
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

func (p *h1Pool) put(cn *h1Conn) {
	cn.used = time.Now()
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.maxIdle {
		p.mu.Unlock()
		cn.c.Close()
		return
	}
	p.idle = append(p.idle, cn)
	p.mu.Unlock()
}

// CloseIdleConnections closes the idle connections; busy ones close when their response ends
// if closeAll was set.
func (p *h1Pool) CloseIdleConnections() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, cn := range idle {
		cn.c.Close()
	}
}

// RoundTrip sends req on a pooled connection (or a new one). A reused connection that turns out
// to have been closed by the backend is replaced once, for requests without a body.
func (p *h1Pool) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := p.roundTrip(req)
	var stale *errStaleConn
	if errors.As(err, &stale) && (req.Body == nil || req.Body == http.NoBody) && req.Context().Err() == nil {
		resp, err = p.roundTrip(req)
	}
	if errors.As(err, &stale) {
		err = stale.err
	}
	return resp, err
}

func (p *h1Pool) roundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	cn, reused, err := p.get(ctx)
	if err != nil {
		return nil, err
	}
	// Cancellation and the response header timeout act on the socket's deadline.
	stop := context.AfterFunc(ctx, cn.abort)
	fail := func(err error, beforeResponse bool) (*http.Response, error) {
		stop()
		cn.c.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if reused && beforeResponse {
			return nil, &errStaleConn{err}
		}
		return nil, err
	}
	if p.responseHeaderTimeout > 0 {
		cn.c.SetReadDeadline(time.Now().Add(p.responseHeaderTimeout))
	}
	written, err := h1wire.WriteRequest(cn.bw, req)
	if !written {
		err = req.Write(cn.bw)
	}
	if err != nil {
		return fail(err, true)
	}
	if err := cn.bw.Flush(); err != nil {
		return fail(err, true)
	}
	if p.maxHeaderBytes > 0 {
		cn.lim.max = p.maxHeaderBytes
		cn.lim.left = max(p.maxHeaderBytes-int64(cn.br.Buffered()), 0)
	}
	var resp *http.Response
	direct := false // body read off cn.br by h1Body itself
	for {
		if resp, direct = h1wire.ReadResponse(cn.br, req); direct {
			if resp.ContentLength == 0 {
				resp.Body = http.NoBody
			}
			break
		}
		resp, err = http.ReadResponse(cn.br, req)
		if err != nil {
			if cn.lim.left == 0 {
				return fail(&errHeaderTooLarge{p.maxHeaderBytes}, false)
			}
			return fail(err, cn.br.Buffered() == 0)
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		io.Copy(io.Discard, resp.Body) // 1xx: informational, no body; read the real response next
		resp.Body.Close()
	}
	cn.lim.left = -1
	if p.responseHeaderTimeout > 0 && (resp.ContentLength < 0 || int64(cn.br.Buffered()) < resp.ContentLength) {
		// The body still has to come off the socket, for however long it takes. A body that is
		// all buffered already needs no change: the next request sets its own deadline first.
		cn.c.SetReadDeadline(time.Time{})
	}
	reuse := !resp.Close && !req.Close && resp.StatusCode != http.StatusSwitchingProtocols
	if resp.Body == http.NoBody || resp.ContentLength == 0 || !direct && resp.Body == nil {
		if !stop() && ctx.Err() != nil {
			reuse = false
		}
		if reuse {
			p.put(cn)
		} else {
			cn.c.Close()
		}
		return resp, nil
	}
	b := &h1Body{cn: cn, pool: p, stop: stop, reuse: reuse}
	if direct {
		b.direct = h1wire.Body{R: cn.br, Left: resp.ContentLength}
	} else {
		b.rc = resp.Body
	}
	resp.Body = b
	return resp, nil
}

// h1Body returns its connection to the pool when the body was read to the end, and closes it
// when the reader gave up early (the rest of the response would still be on the wire).
type h1Body struct {
	rc     io.ReadCloser // net/http's body reader, or nil: then direct reads the body
	direct h1wire.Body
	cn     *h1Conn
	pool   *h1Pool
	stop   func() bool
	reuse  bool
	done   bool
	eof    bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done {
		return 0, net.ErrClosed
	}
	var n int
	var err error
	if b.rc != nil {
		n, err = b.rc.Read(p)
	} else {
		n, err = b.direct.Read(p)
	}
	if err == io.EOF {
		b.eof = true
		b.release()
	}
	return n, err
}

func (b *h1Body) Close() error {
	if !b.done {
		b.release()
	}
	return nil
}

func (b *h1Body) release() {
	b.done = true
	if b.rc != nil {
		b.rc.Close()
	}
	stopped := b.stop()
	if b.eof && b.reuse && stopped {
		b.pool.put(b.cn)
		return
	}
	b.cn.c.Close()
}
