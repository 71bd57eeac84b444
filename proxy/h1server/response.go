package h1server

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// holdBack is how much body a response keeps before choosing its framing: a handler that ends
// within it gets a Content-Length, a longer one without it is sent chunked.
const holdBack = 2 << 10

// response is the http.ResponseWriter of one request.
type response struct {
	c      *conn
	req    *http.Request
	header http.Header

	mu            sync.Mutex // serialises the 100 Continue from a body reader with the handler's writes
	status        int
	wroteHeader   bool // the handler chose its final status
	committed     bool // status line and headers are in the write buffer
	chunked       bool
	noBody        bool // HEAD, 204, 304: writes are discarded or refused
	contentLength int64
	written       int64
	closeAfter    bool
	aborted       bool                  // the handler panicked (ErrAbortHandler): the connection just closes
	expect        *expectContinueReader // set when the client waits for 100 Continue
}

var (
	_ http.ResponseWriter = (*response)(nil)
	_ http.Flusher        = (*response)(nil)
	_ http.Hijacker       = (*response)(nil)
)

func (w *response) Header() http.Header { return w.header }

func (w *response) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic("h1server: invalid WriteHeader code " + strconv.Itoa(code))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writeHeaderLocked(code)
}

func (w *response) writeHeaderLocked(code int) {
	if w.wroteHeader || w.c.hijacked {
		return
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		w.writeInterimLocked(code, w.header)
		return
	}
	w.wroteHeader = true
	w.status = code
	if cl := w.header.Get("Content-Length"); cl != "" {
		n, err := strconv.ParseInt(cl, 10, 64)
		if err == nil && n >= 0 {
			w.contentLength = n
		} else {
			w.header.Del("Content-Length")
		}
	}
	if w.req.Method == http.MethodHead || !bodyAllowed(code) {
		w.noBody = true
	}
}

func bodyAllowed(code int) bool {
	return !(code >= 100 && code <= 199 || code == http.StatusNoContent || code == http.StatusNotModified)
}

// writeInterim sends a 1xx response (100 Continue, 103 Early Hints).
func (w *response) writeInterim(code int, h http.Header) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writeInterimLocked(code, h)
}

func (w *response) writeInterimLocked(code int, h http.Header) {
	if w.committed || w.c.werr != nil {
		return
	}
	bw := w.c.writer()
	writeStatusLine(bw, w.req.ProtoAtLeast(1, 1), code)
	writeHeaders(bw, h)
	bw.WriteString("\r\n")
	w.c.noteErr(bw.Flush())
}

func (w *response) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.c.hijacked {
		return 0, http.ErrHijacked
	}
	if !w.wroteHeader {
		w.writeHeaderLocked(http.StatusOK)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if w.noBody {
		if w.req.Method == http.MethodHead && bodyAllowed(w.status) {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if w.contentLength >= 0 && w.written+int64(len(p)) > w.contentLength {
		return 0, http.ErrContentLength
	}
	if w.c.werr != nil {
		return 0, w.c.werr
	}
	w.written += int64(len(p))
	if !w.committed {
		if w.contentLength < 0 && len(w.c.pend)+len(p) <= holdBack {
			w.c.pend = append(w.c.pend, p...)
			return len(p), nil
		}
		w.commit(false)
	}
	return w.writeBody(p)
}

func (w *response) writeBody(p []byte) (int, error) {
	bw := w.c.bw
	if w.chunked {
		bw.WriteString(strconv.FormatInt(int64(len(p)), 16))
		bw.WriteString("\r\n")
		n, err := bw.Write(p)
		bw.WriteString("\r\n")
		w.c.noteErr(err)
		return n, err
	}
	n, err := bw.Write(p)
	w.c.noteErr(err)
	return n, err
}

// commit chooses the framing and writes the status line and headers into the buffer. final
// says the handler has returned, so everything held back is the whole body.
func (w *response) commit(final bool) {
	w.committed = true
	c := w.c
	bw := c.writer()
	h11 := w.req.ProtoAtLeast(1, 1)
	h := w.header
	switch {
	case w.noBody:
	case w.contentLength >= 0:
	case final:
		w.contentLength = int64(len(c.pend))
		h.Set("Content-Length", strconv.Itoa(len(c.pend)))
	case h11:
		w.chunked = true
		h.Del("Content-Length")
		h.Set("Transfer-Encoding", "chunked")
	default:
		w.closeAfter = true // HTTP/1.0 without a length: the close ends the body
	}
	if w.req.Close || c.srv.inShut.Load() || headerHasToken(h, "Connection", "close") {
		w.closeAfter = true
	}
	if w.expect != nil && !w.expect.sent.Load() {
		// Answered before asking for the body: the connection ends after this response
		// (serveRequest), so say so, as net/http does (RFC 9110 section 10.1.1).
		w.closeAfter = true
	}
	if !h11 && !w.closeAfter && !headerHasToken(w.req.Header, "Connection", "keep-alive") {
		w.closeAfter = true
	}
	if w.closeAfter {
		h.Set("Connection", "close")
	} else if !h11 {
		h.Set("Connection", "keep-alive")
	}
	writeStatusLine(bw, h11, w.status)
	if _, ok := h["Date"]; !ok {
		bw.WriteString("Date: ")
		bw.Write(httpDate())
		bw.WriteString("\r\n")
	}
	writeHeaders(bw, h)
	bw.WriteString("\r\n")
	if len(c.pend) > 0 {
		pend := c.pend
		c.pend = c.pend[:0]
		w.writeBody(pend)
	}
}

func (w *response) isCommitted() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.committed
}

// setCloseAfter makes the response, not yet committed, end the connection.
func (w *response) setCloseAfter() {
	w.mu.Lock()
	w.closeAfter = true
	w.mu.Unlock()
}

// finish completes the response after the handler returned.
func (w *response) finish() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.wroteHeader {
		w.wroteHeader, w.status = true, http.StatusOK
		if w.req.Method == http.MethodHead {
			w.noBody = true
		}
		if cl := w.header.Get("Content-Length"); cl != "" {
			if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
				w.contentLength = n
			}
		}
	}
	if !w.committed {
		w.commit(true)
	}
	c := w.c
	if w.chunked {
		c.bw.WriteString("0\r\n\r\n")
	}
	if !w.noBody && w.contentLength >= 0 && w.written != w.contentLength {
		w.closeAfter = true // the client would wait for bytes that never come
	}
	c.noteErr(c.bw.Flush())
	c.releaseWriter()
}

// Flush sends what is buffered; without a Content-Length the body continues chunked.
func (w *response) Flush() { w.FlushError() }

// FlushError is Flush with its error, for http.ResponseController.
func (w *response) FlushError() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.c.hijacked {
		return http.ErrHijacked
	}
	if !w.wroteHeader {
		w.writeHeaderLocked(http.StatusOK)
	}
	if !w.committed {
		w.commit(false)
	}
	if w.c.werr != nil {
		return w.c.werr
	}
	err := w.c.bw.Flush()
	w.c.noteErr(err)
	return err
}

// Hijack hands the connection to the handler (CONNECT tunnels, protocol upgrades). Bytes the
// client sent ahead stay readable through the returned reader.
func (w *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.c
	if c.hijacked {
		return nil, nil, http.ErrHijacked
	}
	c.watch.disarm(c)
	if w.committed {
		c.noteErr(c.bw.Flush())
	}
	c.hijacked = true
	c.srv.track(c, false)
	c.rwc.SetDeadline(time.Time{})
	c.lr.n = 1<<63 - 1
	c.releaseWriter()
	return c.rwc, bufio.NewReadWriter(c.br, bufio.NewWriter(c.rwc)), nil
}

// SetReadDeadline and SetWriteDeadline serve http.ResponseController.
func (w *response) SetReadDeadline(t time.Time) error  { return w.c.rwc.SetReadDeadline(t) }
func (w *response) SetWriteDeadline(t time.Time) error { return w.c.rwc.SetWriteDeadline(t) }

// EnableFullDuplex is accepted: this server never stops the request body once the response
// has started.
func (w *response) EnableFullDuplex() error { return nil }

func (c *conn) writer() *bufio.Writer {
	if c.bw == nil {
		c.bw = writerPool.Get().(*bufio.Writer)
		c.out = sendWriter{c: c.rwc, timeout: c.srv.SendTimeout}
		c.bw.Reset(&c.out)
	}
	return c.bw
}

// sendWriter arms the send timeout before each write to the client.
type sendWriter struct {
	c       net.Conn
	timeout time.Duration
}

func (w *sendWriter) Write(p []byte) (int, error) {
	if w.timeout > 0 {
		w.c.SetWriteDeadline(time.Now().Add(w.timeout))
	}
	return w.c.Write(p)
}

func (c *conn) releaseWriter() {
	if c.bw != nil && c.bw.Buffered() == 0 {
		c.bw.Reset(nil)
		writerPool.Put(c.bw)
		c.bw = nil
	}
	if cap(c.pend) > 4*holdBack {
		c.pend = nil
	}
}

func (c *conn) noteErr(err error) {
	if err != nil && c.werr == nil {
		c.werr = err
	}
}

var statusLines sync.Map // int -> string, "HTTP/1.1 200 OK\r\n"

func writeStatusLine(bw *bufio.Writer, h11 bool, code int) {
	if !h11 {
		bw.WriteString("HTTP/1.0 ")
		bw.WriteString(strconv.Itoa(code))
		bw.WriteString(" " + http.StatusText(code) + "\r\n")
		return
	}
	if v, ok := statusLines.Load(code); ok {
		bw.WriteString(v.(string))
		return
	}
	line := "HTTP/1.1 " + strconv.Itoa(code) + " " + http.StatusText(code) + "\r\n"
	if http.StatusText(code) == "" {
		line = "HTTP/1.1 " + strconv.Itoa(code) + " status code " + strconv.Itoa(code) + "\r\n"
	}
	statusLines.Store(code, line)
	bw.WriteString(line)
}

// writeHeaders writes h as net/http does: invalid field names are dropped, and CR or LF in a
// value becomes a space (no response splitting).
func writeHeaders(bw *bufio.Writer, h http.Header) {
	for k, vv := range h {
		if !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			writeValue(bw, v)
			bw.WriteString("\r\n")
		}
	}
}

func writeValue(bw *bufio.Writer, v string) {
	start := 0
	for i := 0; i < len(v); i++ {
		if b := v[i]; b == '\r' || b == '\n' {
			bw.WriteString(v[start:i])
			bw.WriteByte(' ')
			start = i + 1
		}
	}
	bw.WriteString(v[start:])
}

func headerHasToken(h http.Header, name, token string) bool {
	vv, ok := h[name]
	if !ok {
		return false
	}
	return httpguts.HeaderValuesContainsToken(vv, token)
}

// httpDate is the Date header value, formatted once per second.
func httpDate() []byte {
	now := time.Now().Unix()
	if d := cachedDate.Load(); d != nil && d.sec == now {
		return d.b
	}
	d := &dateCache{sec: now, b: time.Unix(now, 0).UTC().AppendFormat(nil, http.TimeFormat)}
	cachedDate.Store(d)
	return d.b
}

type dateCache struct {
	sec int64
	b   []byte
}

var cachedDate atomic.Pointer[dateCache]

// watcher notices a client that leaves while its bodyless request is being served, and cancels
// the request's context, as net/http's background read does; it starts only for requests that
// take a while, so fast requests pay one timer reset instead of a goroutine.
type watcher struct {
	t       *time.Timer
	c       *conn
	mu      sync.Mutex
	armed   bool
	running bool
	cancel  context.CancelFunc
	done    chan struct{}
}

const watchAfter = 50 * time.Millisecond

func (w *watcher) arm(c *conn, cancel context.CancelFunc) {
	w.mu.Lock()
	w.armed, w.cancel = true, cancel
	w.mu.Unlock()
	if w.t == nil {
		w.c = c
		w.t = time.AfterFunc(watchAfter, w.fire)
	} else {
		w.t.Reset(watchAfter)
	}
}

func (w *watcher) fire() {
	w.mu.Lock()
	if !w.armed || w.running {
		w.mu.Unlock()
		return
	}
	w.running = true
	w.done = make(chan struct{})
	cancel, done := w.cancel, w.done
	// The request's header deadline may still be set. Cleared under the lock, so that disarm's
	// deadline in the past (set after it takes the lock) always wins.
	w.c.rwc.SetReadDeadline(time.Time{})
	w.mu.Unlock()
	defer close(done)
	if _, err := w.c.br.Peek(1); err != nil {
		var ne net.Error
		if !(errors.As(err, &ne) && ne.Timeout()) {
			cancel() // EOF or reset: the client is gone
		}
	}
}

func (w *watcher) disarm(c *conn) {
	if w.t == nil {
		return
	}
	w.t.Stop()
	w.mu.Lock()
	w.armed = false
	running, done := w.running, w.done
	w.running = false
	w.mu.Unlock()
	if running {
		c.rwc.SetReadDeadline(aLongTimeAgo)
		<-done
		c.rwc.SetReadDeadline(time.Time{})
	}
}
