// Package h1server serves HTTP/1.x on connections the caller has accepted (and, for TLS,
// handshaken). It replaces net/http's per-connection loop on the proxy's listeners because that
// loop costs a goroutine, four deadline changes and an extra read per keep-alive request; here a
// request is one buffered read and its response one flush. Handlers are ordinary http.Handlers:
// Flush, Hijack and http.ResponseController work as they do with net/http.
//
// Parsing is net/http's own (http.ReadRequest), and the body framing (Content-Length, chunked)
// is the standard library's. Everything net/http's server refuses is refused here too, and more:
// a proxy must frame a message exactly as the hops before and after it do, so heads that
// ReadRequest tolerates but other parsers read differently (bare LF, obs-fold, white space before
// a colon, Transfer-Encoding beside Content-Length or in HTTP/1.0) get 400
// and a closed connection (strict.go). One exception is speed, not judgement: a request whose
// header is already buffered, with no body or one framed by a single Content-Length, is parsed
// by package h1wire, which takes only shapes that pass those checks and that it parses exactly
// as ReadRequest does, and leaves every other request to it.
package h1server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/fixedgate/fixedgate/proxy/h1wire"
)

// Server serves HTTP/1.x requests on connections handed to ServeConn. The zero value is not
// usable: Handler is required.
type Server struct {
	Handler http.Handler
	// ReadHeaderTimeout bounds reading a request's line and headers, counted from its first
	// byte. Zero means no limit.
	ReadHeaderTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a kept-alive connection; zero uses
	// ReadHeaderTimeout.
	IdleTimeout time.Duration
	// SendTimeout bounds each write to the client: one that accepts no bytes for this long
	// (it stopped reading) is disconnected, as with nginx's send_timeout. Zero means no limit.
	// Hijacked connections are the hijacker's to bound.
	SendTimeout time.Duration
	// MaxHeaderBytes bounds the request line plus headers; a request over it gets 431. Zero
	// means http.DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// ErrorLog receives handler panics; nil uses the log package's standard logger.
	ErrorLog *log.Logger
	// Rejected, when set, is told of every request the server answers itself, before any
	// handler, because it could not be read or is malformed or ambiguous: the client's address,
	// the status sent and its one-line reason. The connection is closed after that response.
	// Clients that leave or time out before a request is complete are not reported.
	Rejected func(remote string, status int, reason string)

	mu     sync.Mutex
	conns  map[*conn]struct{}
	inShut atomic.Bool
}

// connection states, as in net/http: idle between requests, active while one is read or served.
const (
	stateActive = iota
	stateIdle
)

// ErrServerClosed is returned by ServeConn for a connection handed over after Shutdown.
var ErrServerClosed = errors.New("h1server: server closed")

// ServeConn serves requests on c until the client leaves, an error ends the connection, the
// server shuts down or a handler hijacks it; it then closes c (unless hijacked). br, when not
// nil, is a reader over c holding bytes read ahead (a sniffed preface). ctx is the parent of
// every request's context.
func (s *Server) ServeConn(ctx context.Context, c net.Conn, br *bufio.Reader) error {
	cn := &conn{srv: s, rwc: c, remote: c.RemoteAddr().String()}
	if tc, ok := c.(interface{ ConnectionState() tls.ConnectionState }); ok {
		st := tc.ConnectionState()
		cn.tlsState = &st
	}
	cn.lr = &limitReader{r: c, n: 1<<63 - 1}
	if br == nil {
		br = bufio.NewReaderSize(cn.lr, 4<<10)
	} else {
		// Bytes already read ahead stay in br; what comes next goes through the limit.
		cn.lr.r = &pendingReader{br: br, rest: c}
		br = bufio.NewReaderSize(cn.lr, 4<<10)
	}
	cn.br = br
	if !s.track(cn, true) {
		c.Close()
		return ErrServerClosed
	}
	defer s.track(cn, false)
	cn.serve(ctx)
	return nil
}

// pendingReader drains a read-ahead buffer before reading the connection itself.
type pendingReader struct {
	br   *bufio.Reader
	rest io.Reader
}

func (p *pendingReader) Read(b []byte) (int, error) {
	if p.br != nil {
		if p.br.Buffered() > 0 {
			return p.br.Read(b)
		}
		p.br = nil
	}
	return p.rest.Read(b)
}

func (s *Server) track(c *conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !add {
		delete(s.conns, c)
		return true
	}
	if s.inShut.Load() {
		return false
	}
	if s.conns == nil {
		s.conns = map[*conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	return true
}

// Shutdown stops serving gracefully: idle connections are closed at once, a request in
// progress finishes and its connection closes after the response (which says Connection:
// close). It returns when every connection is gone, or ctx's error when ctx ends first, after
// closing the rest. Hijacked connections are the hijacker's.
func (s *Server) Shutdown(ctx context.Context) error {
	s.inShut.Store(true)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if s.closeIdle() == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			s.Close()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// closeIdle wakes idle connections so they close, and returns how many connections remain.
func (s *Server) closeIdle() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.state.Load() == stateIdle {
			c.rwc.SetReadDeadline(aLongTimeAgo)
		}
	}
	return len(s.conns)
}

// Close closes every connection at once.
func (s *Server) Close() error {
	s.inShut.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.rwc.Close()
	}
	return nil
}

func (s *Server) maxHeaderBytes() int64 {
	if s.MaxHeaderBytes > 0 {
		return int64(s.MaxHeaderBytes)
	}
	return http.DefaultMaxHeaderBytes
}

func (s *Server) logf(format string, args ...any) {
	if s.ErrorLog != nil {
		s.ErrorLog.Printf(format, args...)
	} else {
		log.Printf(format, args...)
	}
}

var aLongTimeAgo = time.Unix(1, 0)

// conn is one client connection.
type conn struct {
	srv      *Server
	rwc      net.Conn
	remote   string
	tlsState *tls.ConnectionState
	lr       *limitReader
	br       *bufio.Reader
	bw       *bufio.Writer // from writerPool while a response is written
	out      sendWriter    // what bw writes to
	pend     []byte        // body bytes held back until the framing is known
	hijacked bool
	werr     error       // first write error; the connection ends after the response
	header   http.Header // the current response's header map, reused by the next

	state atomic.Int32 // stateIdle or stateActive, for Shutdown

	watch watcher
}

var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}

func (c *conn) serve(ctx context.Context) {
	defer func() {
		if c.bw != nil {
			c.bw.Reset(nil)
			writerPool.Put(c.bw)
			c.bw = nil
		}
		if !c.hijacked {
			c.rwc.Close()
		}
	}()
	first := true
	for {
		if c.br.Buffered() == 0 {
			idle := c.srv.IdleTimeout
			if first || idle == 0 {
				idle = c.srv.ReadHeaderTimeout
			}
			c.state.Store(stateIdle)
			if c.srv.inShut.Load() {
				return
			}
			if idle > 0 {
				c.rwc.SetReadDeadline(time.Now().Add(idle))
			} else {
				c.rwc.SetReadDeadline(time.Time{})
			}
			if _, err := c.br.Peek(1); err != nil {
				return // gone, idle too long, or shut down
			}
		}
		c.state.Store(stateActive)
		first = false
		if d := c.srv.ReadHeaderTimeout; d > 0 && !headerBuffered(c.br) {
			c.rwc.SetReadDeadline(time.Now().Add(d))
		}
		// As net/http: slack for the request line's own buffer. Bytes the idle Peek (or a
		// pipelined predecessor) already buffered belong to this request and count too.
		c.lr.n = c.srv.maxHeaderBytes() + 4096 - int64(c.br.Buffered())
		c.lr.hit = false
		req, ok := h1wire.ReadRequest(c.br, int(c.srv.maxHeaderBytes()))
		if !ok {
			var err error
			if req, err = c.readRequestStrict(); err != nil {
				c.lr.n = 1<<63 - 1
				c.refuseBad(err)
				return
			}
		}
		c.lr.n = 1<<63 - 1
		if !c.serveRequest(ctx, req) {
			return
		}
	}
}

// readRequestStrict reads a request with http.ReadRequest, then checks its raw head with
// checkHead and checkFraming (see strict.go): what ReadRequest tolerates but another hop may
// frame differently is refused. The head's bytes are recorded as they pass the limit reader, so
// the check sees exactly what was parsed. (h1wire's fast path takes only heads that pass these
// checks already: CRLF lines, token names, no Transfer-Encoding.)
func (c *conn) readRequestStrict() (*http.Request, error) {
	pre, _ := c.br.Peek(c.br.Buffered())
	c.lr.rec = append(c.lr.rec[:0], pre...)
	c.lr.recording = true
	req, err := http.ReadRequest(c.br)
	c.lr.recording = false
	raw := c.lr.rec
	if cap(c.lr.rec) > 64<<10 {
		c.lr.rec = nil // an outsized head's buffer is not kept for the connection's life
	}
	if err != nil {
		return nil, err
	}
	f, err := checkHead(raw)
	if err == nil {
		err = checkFraming(f, req)
	}
	if err != nil {
		return nil, &strictError{err}
	}
	return req, nil
}

// strictError is a request refused by checkHead or checkFraming: always 400.
type strictError struct{ err error }

func (e *strictError) Error() string { return e.err.Error() }
func (e *strictError) Unwrap() error { return e.err }

// headerBuffered reports whether a whole request header is already in br, so that reading it
// cannot block and needs no deadline of its own.
func headerBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.Contains(b, []byte("\r\n\r\n"))
}

// refuseBad answers a request that could not be read, as net/http does: 431 for oversized
// headers, 400 with the reason for malformed ones, nothing for a client that left or timed out.
func (c *conn) refuseBad(err error) {
	var ne net.Error
	var se *strictError
	switch {
	case errors.As(err, &se):
		c.writeError(http.StatusBadRequest, se.Error())
	case c.lr.hit:
		c.writeError(http.StatusRequestHeaderFieldsTooLarge, "")
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
	case errors.As(err, &ne) && ne.Timeout():
	case strings.Contains(err.Error(), "unsupported transfer encoding"): // net/http's error type is unexported
		c.writeError(http.StatusNotImplemented, "Unsupported transfer encoding")
	default:
		c.writeError(http.StatusBadRequest, err.Error())
	}
}

// writeError writes a complete error response and half-closes, waiting briefly for the client
// to read it so that a reset does not destroy it (the request may not have been read whole).
func (c *conn) writeError(code int, reason string) {
	body := fmt.Sprintf("%d %s", code, http.StatusText(code))
	if reason != "" {
		if len(reason) > 200 { // net/http's parse errors quote the offending line
			reason = reason[:200] + "..."
		}
		reason = sanitizeReason(reason)
		body += ": " + reason
	}
	if c.srv.Rejected != nil {
		if reason == "" {
			reason = http.StatusText(code)
		}
		c.srv.Rejected(c.remote, code, reason)
	}
	c.rwc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c.rwc, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		code, http.StatusText(code), len(body), body)
	c.lingerClose()
}

// lingerClose sends FIN and drains the client's bytes for up to half a second before the
// caller closes, so unread request bytes do not turn the close into a reset that loses the
// response.
func (c *conn) lingerClose() {
	// TCP sends FIN; TLS sends close_notify.
	cw, ok := c.rwc.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	c.rwc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	io.CopyN(io.Discard, c.rwc, 256<<10)
}

func sanitizeReason(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// serveRequest runs the handler for one request and finishes its response; it reports whether
// the connection may carry another request.
func (c *conn) serveRequest(parent context.Context, req *http.Request) bool {
	if req.ProtoMajor != 1 {
		c.writeError(http.StatusHTTPVersionNotSupported, "unsupported protocol version")
		return false
	}
	if req.ProtoAtLeast(1, 1) && req.Host == "" && req.Method != http.MethodConnect {
		c.writeError(http.StatusBadRequest, "missing required Host header")
		return false
	}
	if req.Host != "" && !httpguts.ValidHostHeader(req.Host) {
		c.writeError(http.StatusBadRequest, "malformed Host header")
		return false
	}
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	req = req.WithContext(ctx)
	req.RemoteAddr = c.remote
	req.TLS = c.tlsState

	// The header map is the connection's, cleared for each request: a handler may not use its
	// ResponseWriter (or its Header) after it returns, as with net/http.
	if c.header == nil {
		c.header = make(http.Header, 8)
	} else {
		clear(c.header)
	}
	w := &response{c: c, req: req, header: c.header, contentLength: -1}
	var ecr *expectContinueReader
	if expect := req.Header.Get("Expect"); expect != "" {
		if !strings.EqualFold(expect, "100-continue") || !req.ProtoAtLeast(1, 1) {
			c.writeError(http.StatusExpectationFailed, "")
			return false
		}
		if req.ContentLength != 0 {
			ecr = &expectContinueReader{w: w, rc: req.Body}
			req.Body = ecr
			w.expect = ecr
		}
		req.Header.Del("Expect")
	}
	body := &guardedBody{rc: req.Body}
	if req.Body == http.NoBody {
		// No body: the connection is silent during the handler, so a read there means the
		// client left (or pipelined its next request); the watcher cancels ctx on the former.
		// The handler does not read the connection, so the read deadline is left as it is
		// (the watcher and Hijack clear it when they read).
		c.watch.arm(c, cancel)
	} else {
		c.rwc.SetReadDeadline(time.Time{})
		req.Body = body
	}
	c.runHandler(w, req)
	c.watch.disarm(c)
	if c.hijacked {
		return false
	}
	if w.aborted {
		return false
	}
	keep, drained := true, req.Body == http.NoBody
	switch {
	case ecr != nil && !body.sentContinue(ecr):
		keep = false // the client waits for 100 Continue and may or may not send the body (commit says close)
	case !drained && !w.isCommitted():
		// What the handler left of the body must be read before the next request. Read it
		// before the response is written, so that a remainder too large to be worth it is
		// announced with Connection: close.
		if drained = body.drain(256 << 10); !drained {
			w.setCloseAfter()
		}
	}
	w.finish()
	keep = keep && !w.closeAfter && c.werr == nil && !c.srv.inShut.Load()
	if keep && !drained && !body.drain(256<<10) {
		keep = false
	}
	body.close()
	if !keep {
		c.lingerAfterResponse(req)
	}
	return keep
}

// lingerAfterResponse half-closes when the client may still be sending (an unread body, or
// pipelined requests that will not be served), so the response is not lost to a reset.
func (c *conn) lingerAfterResponse(req *http.Request) {
	if req.Body != http.NoBody || c.br.Buffered() > 0 {
		c.lingerClose()
	}
}

func (c *conn) runHandler(w *response, req *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			w.aborted = true
			if v == http.ErrAbortHandler {
				return
			}
			buf := make([]byte, 16<<10)
			buf = buf[:runtime.Stack(buf, false)]
			c.srv.logf("h1server: panic serving %s: %v\n%s", c.remote, v, buf)
		}
	}()
	c.srv.Handler.ServeHTTP(w, req)
}

// limitReader caps how much the header reader may consume; hit records that the cap was
// reached (the request gets 431).
type limitReader struct {
	r         io.Reader
	n         int64
	hit       bool
	recording bool   // append what is read to rec (a request head being parsed)
	rec       []byte // reused between requests
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		l.hit = true
		return 0, errors.New("request headers too large")
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	if l.recording {
		l.rec = append(l.rec, p[:n]...)
	}
	return n, err
}

// guardedBody is the request body seen by the handler: once the response is done it is
// closed under a lock, so a transport still reading it (a backend that answered early) can
// never read the next request's bytes.
type guardedBody struct {
	mu     sync.Mutex
	rc     io.ReadCloser
	closed bool
	eof    bool
}

var errBodyClosed = errors.New("http: invalid Read on closed Body")

func (b *guardedBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errBodyClosed
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

// Close marks the body closed for the handler; the server still drains what is left.
func (b *guardedBody) Close() error { return nil }

func (b *guardedBody) drain(max int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.eof {
		return true
	}
	n, err := io.CopyN(io.Discard, b.rc, max+1)
	return err == io.EOF && n <= max
}

// sentContinue reports whether the handler read the body, which sent 100 Continue.
func (b *guardedBody) sentContinue(e *expectContinueReader) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return e.sent.Load()
}

func (b *guardedBody) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
}

// expectContinueReader sends "100 Continue" when the handler first reads the body.
type expectContinueReader struct {
	w    *response
	rc   io.ReadCloser
	sent atomic.Bool // read by the response's commit too
}

func (e *expectContinueReader) Read(p []byte) (int, error) {
	if !e.sent.Load() {
		e.sent.Store(true)
		e.w.writeInterim(http.StatusContinue, nil)
	}
	return e.rc.Read(p)
}

func (e *expectContinueReader) Close() error { return e.rc.Close() }
