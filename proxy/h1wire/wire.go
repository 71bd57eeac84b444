// Package h1wire writes and reads the common shapes of HTTP/1.1 messages exactly as net/http
// would, without its per-line allocations. Each function takes only the shapes it can match
// byte for byte and field for field, and declines anything else without consuming input, so
// the caller hands it to net/http (Request.Write, ReadRequest, ReadResponse). Tests and fuzz
// targets compare the two.
package h1wire

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// defaultUserAgent is what Request.Write sends when the request has no User-Agent header.
const defaultUserAgent = "Go-http-client/1.1"

// WriteRequest writes req as Request.Write would, for a request without a body or with one of
// known length (ContentLength > 0), without trailers or Connection: close. ok is false, and
// nothing is written, when req is outside that case or has a header Request.Write would have to
// sanitise: the caller then uses Request.Write. err is a failure to write, or a body that does
// not match its ContentLength; the body is closed when ok, as Request.Write closes it.
func WriteRequest(bw *bufio.Writer, req *http.Request) (ok bool, err error) {
	hasBody := req.Body != nil && req.Body != http.NoBody
	if hasBody && req.ContentLength <= 0 || !hasBody && req.ContentLength != 0 ||
		len(req.TransferEncoding) > 0 || req.Trailer != nil || req.Close ||
		req.Method == "" || req.Method == http.MethodConnect || req.URL == nil || req.URL.Opaque != "" {
		return false, nil
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if !plainHost(host) {
		return false, nil
	}
	path := req.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	if stringHasCTL(path) || stringHasCTL(req.URL.RawQuery) {
		return false, nil
	}
	ua := defaultUserAgent
	if v, ok := req.Header["User-Agent"]; ok {
		ua = ""
		if len(v) > 0 {
			ua = v[0]
		}
	}
	if ua != "" && !httpguts.ValidHeaderFieldValue(ua) {
		return false, nil
	}
	// Everything is checked before anything is written: a long header may flush bw on the way.
	for k, vs := range req.Header {
		if skipField(k) {
			continue
		}
		if !httpguts.ValidHeaderFieldName(k) {
			return false, nil
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return false, nil
			}
		}
	}
	bw.WriteString(req.Method)
	bw.WriteByte(' ')
	bw.WriteString(path)
	if req.URL.ForceQuery || req.URL.RawQuery != "" {
		bw.WriteByte('?')
		bw.WriteString(req.URL.RawQuery)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	if ua != "" {
		writeField(bw, "User-Agent", textproto.TrimString(ua))
	}
	switch {
	case hasBody:
		var num [20]byte
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(num[:0], req.ContentLength, 10))
		bw.WriteString("\r\n")
	case req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch:
		bw.WriteString("Content-Length: 0\r\n")
	}
	for k, vs := range req.Header {
		if skipField(k) {
			continue
		}
		for _, v := range vs {
			writeField(bw, k, textproto.TrimString(v))
		}
	}
	_, err = bw.WriteString("\r\n")
	if hasBody {
		err = writeBody(bw, req)
	}
	return true, err
}

// writeBody copies exactly req.ContentLength bytes of the body and closes it; a body that is
// shorter or longer is an error, with net/http's wording.
func writeBody(bw *bufio.Writer, req *http.Request) error {
	defer req.Body.Close()
	n, err := io.Copy(bw, io.LimitReader(req.Body, req.ContentLength))
	if err != nil {
		return err
	}
	extra, err := io.Copy(io.Discard, req.Body)
	if err != nil {
		return err
	}
	if n+extra != req.ContentLength {
		return fmt.Errorf("http: ContentLength=%d with Body length %d", req.ContentLength, n+extra)
	}
	return nil
}

// skipField reports whether Request.Write leaves header key k out (it writes those itself).
func skipField(k string) bool {
	switch k {
	case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
		return true
	}
	return false
}

func writeField(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

// plainHost reports whether host goes on the wire unchanged by Request.Write: printable ASCII
// (no punycode conversion), a valid Host header, no IPv6 zone to remove.
func plainHost(host string) bool {
	if host == "" {
		return false
	}
	for i := 0; i < len(host); i++ {
		if c := host[i]; c <= ' ' || c >= 0x7f || c == '%' {
			return false
		}
	}
	return httpguts.ValidHostHeader(host)
}

func stringHasCTL(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == 0x7f {
			return true
		}
	}
	return false
}

// ReadResponse parses the response at the head of br as http.ReadResponse would, when its
// header is buffered whole (it waits for the first bytes only) and it has the common shape:
// HTTP/1.1, a final status other than 204 and 304, one Content-Length, no Transfer-Encoding,
// Trailer, Pragma or folded lines, Connection (if any) only keep-alive, and a request other
// than HEAD. It returns the response without a Body (read it with a Body); ok is false, and
// nothing consumed, otherwise. The whole header is one string, so the header map costs a few
// allocations instead of one per line.
func ReadResponse(br *bufio.Reader, req *http.Request) (resp *http.Response, ok bool) {
	if req.Method == http.MethodHead {
		return nil, false
	}
	if _, err := br.Peek(1); err != nil {
		return nil, false
	}
	buf, _ := br.Peek(br.Buffered())
	end := bytes.Index(buf, crlfcrlf)
	if end < 0 {
		return nil, false
	}
	// Status line: "HTTP/1.1 DDD reason".
	line, _, _ := bytes.Cut(buf[:end+2], crlf)
	if len(line) < 12 || string(line[:9]) != "HTTP/1.1 " || len(line) > 12 && line[12] != ' ' {
		return nil, false
	}
	code := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return nil, false
		}
		code = code*10 + int(c-'0')
	}
	if code < 200 || code == http.StatusNoContent || code == http.StatusNotModified || !validFieldValue(line[12:]) {
		return nil, false
	}
	text := string(buf[:end+4])
	h, ok := parseFields(text[len(line)+2 : end+2])
	if !ok || !plainFraming(h) {
		return nil, false
	}
	cl := contentLength(h)
	if cl < 0 {
		return nil, false
	}
	br.Discard(end + 4)
	return &http.Response{
		Status:        text[9:len(line)],
		StatusCode:    code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		ContentLength: cl,
		Request:       req,
	}, true
}

// ReadRequest parses the request at the head of br as http.ReadRequest would, when its header
// is already buffered whole, fits in maxHeaderBytes, and has the common shape: HTTP/1.1, an
// origin-form target whose path needs no escaping, one Host, no body or one framed by a single
// Content-Length (no Transfer-Encoding), no Trailer, Pragma or folded lines, Connection (if
// any) only keep-alive. A body is a *Body reading from br. It never reads from the
// connection while parsing; ok is false, and nothing consumed, otherwise.
func ReadRequest(br *bufio.Reader, maxHeaderBytes int) (req *http.Request, ok bool) {
	buf, _ := br.Peek(br.Buffered())
	end := bytes.Index(buf, crlfcrlf)
	if end < 0 || end+4 > maxHeaderBytes {
		return nil, false
	}
	line, _, _ := bytes.Cut(buf[:end+2], crlf)
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || !validFieldName(line[:sp]) {
		return nil, false
	}
	uri := line[sp+1:]
	if len(uri) < len(" HTTP/1.1")+1 || string(uri[len(uri)-9:]) != " HTTP/1.1" {
		return nil, false
	}
	uri = uri[:len(uri)-9]
	q := bytes.IndexByte(uri, '?')
	if q < 0 {
		q = len(uri)
	}
	if len(uri) == 0 || uri[0] != '/' || !plainPath(uri[:q]) || !plainQuery(uri[q:]) {
		return nil, false
	}
	text := string(buf[:end+4])
	h, ok := parseFields(text[len(line)+2 : end+2])
	if !ok || !plainFraming(h) {
		return nil, false
	}
	hosts := h["Host"]
	if len(hosts) != 1 {
		return nil, false
	}
	var body io.ReadCloser = http.NoBody
	cl := int64(0)
	if _, ok := h["Content-Length"]; ok {
		if cl = contentLength(h); cl < 0 {
			return nil, false
		}
		if cl > 0 {
			body = &Body{R: br, Left: cl}
		}
	}
	delete(h, "Host")
	target := text[sp+1 : sp+1+len(uri)]
	u := &url.URL{Path: target}
	if q < len(target) {
		u.Path, u.RawQuery = target[:q], target[q+1:]
		u.ForceQuery = u.RawQuery == ""
	}
	br.Discard(end + 4)
	return &http.Request{
		Method:        text[:sp],
		URL:           u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          body,
		ContentLength: cl,
		Host:          hosts[0],
		RequestURI:    target,
	}, true
}

// parseFields parses header field lines, each ending in CRLF, as textproto.ReadMIMEHeader
// would; it reports false for anything it does not take (folding, a bad key or value).
// Values are substrings of fields.
func parseFields(fields string) (http.Header, bool) {
	n := strings.Count(fields, "\r\n")
	h := make(http.Header, n)
	strs := make([]string, n)
	for len(fields) > 0 {
		l, rest, _ := strings.Cut(fields, "\r\n")
		fields = rest
		colon := strings.IndexByte(l, ':')
		if colon <= 0 || !validFieldName(l[:colon]) || !validFieldValue(l[colon+1:]) {
			return nil, false
		}
		key := textproto.CanonicalMIMEHeaderKey(l[:colon])
		v := trimSPHT(l[colon+1:])
		if vv := h[key]; vv != nil {
			h[key] = append(vv, v)
			continue
		}
		vv := strs[:1:1]
		strs = strs[1:]
		vv[0] = v
		h[key] = vv
	}
	return h, true
}

// plainFraming reports whether h leaves the message's framing and semantics to
// Content-Length alone: no Transfer-Encoding, Trailer or Pragma, Connection only keep-alive.
func plainFraming(h http.Header) bool {
	for _, k := range [...]string{"Transfer-Encoding", "Trailer", "Pragma"} {
		if _, ok := h[k]; ok {
			return false
		}
	}
	for _, v := range h["Connection"] {
		if !strings.EqualFold(v, "keep-alive") {
			return false
		}
	}
	return true
}

// contentLength is the single Content-Length in h, or -1.
func contentLength(h http.Header) int64 {
	if v := h["Content-Length"]; len(v) == 1 {
		return parseDigits(v[0])
	}
	return -1
}

// plainPath reports whether p is a path url.ParseRequestURI keeps as it is (no RawPath): only
// characters that need no escaping.
func plainPath(p []byte) bool {
	for _, c := range p {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-_.~$&+,/:;=@", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// plainQuery reports whether q (with its '?') holds only visible ASCII other than '#'.
func plainQuery(q []byte) bool {
	for _, c := range q {
		if c <= ' ' || c >= 0x7f || c == '#' {
			return false
		}
	}
	return true
}

var (
	crlf     = []byte("\r\n")
	crlfcrlf = []byte("\r\n\r\n")
)

// validFieldName reports whether b is a non-empty token (RFC 9110 tchar), as textproto
// requires of a header key.
func validFieldName[T string | []byte](b T) bool {
	if len(b) == 0 {
		return false
	}
	for i := 0; i < len(b); i++ {
		if c := b[i]; c >= 0x80 || !httpguts.IsTokenRune(rune(c)) {
			return false
		}
	}
	return true
}

// validFieldValue reports whether b holds only the bytes textproto accepts in a header value:
// visible ASCII, space, tab and obs-text.
func validFieldValue[T string | []byte](b T) bool {
	for i := 0; i < len(b); i++ {
		if c := b[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func trimSPHT(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// parseDigits parses a Content-Length of 1 to 18 digits without a redundant leading zero;
// anything else is -1 (net/http then decides).
func parseDigits(s string) int64 {
	if len(s) == 0 || len(s) > 18 || len(s) > 1 && s[0] == '0' {
		return -1
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// Body reads a Content-Length body off the reader its header came from, as net/http's body
// reader would: io.EOF comes with the last bytes, and a stream that ends early is
// io.ErrUnexpectedEOF. Left is what remains to be read.
type Body struct {
	R    *bufio.Reader
	Left int64
}

// Close does nothing: what becomes of the unread rest (drained, or the connection closed) is
// the caller's decision.
func (b *Body) Close() error { return nil }

func (b *Body) Read(p []byte) (int, error) {
	if b.Left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.Left {
		p = p[:b.Left]
	}
	n, err := b.R.Read(p)
	b.Left -= int64(n)
	switch {
	case b.Left == 0:
		return n, io.EOF
	case err == io.EOF:
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}
