package proxy

import (
	"bufio"
	"bytes"
	"net/http"
	"net/textproto"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// The backend side of the gateway writes and reads HTTP/1.1 through net/http's Request.Write
// and ReadResponse. For the common shapes (a request without a body, a response with a
// Content-Length) the functions here produce exactly what those would, without their
// allocations; anything else they decline, and net/http handles it. Tests compare the two
// byte for byte and field by field.

// defaultUserAgent is what Request.Write sends when the request has no User-Agent header.
const defaultUserAgent = "Go-http-client/1.1"

// writeBodilessRequest writes req as Request.Write would, for a request without a body,
// trailers or Connection: close. It reports false when req is outside that case or has a
// header Request.Write would have to sanitise; bw is then as it was (empty, reset onto w).
func writeBodilessRequest(bw *bufio.Writer, w interface{ Write([]byte) (int, error) }, req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody || req.ContentLength != 0 ||
		len(req.TransferEncoding) > 0 || req.Trailer != nil || req.Close ||
		req.Method == "" || req.Method == http.MethodConnect || req.URL == nil || req.URL.Opaque != "" ||
		bw.Buffered() != 0 {
		return false
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if !plainHost(host) {
		return false
	}
	path := req.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	if stringHasCTL(path) || stringHasCTL(req.URL.RawQuery) {
		return false
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
	ua := defaultUserAgent
	if v, ok := req.Header["User-Agent"]; ok {
		ua = ""
		if len(v) > 0 {
			ua = v[0]
		}
	}
	if ua != "" {
		if !httpguts.ValidHeaderFieldValue(ua) {
			bw.Reset(w)
			return false
		}
		writeField(bw, "User-Agent", textproto.TrimString(ua))
	}
	switch req.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		bw.WriteString("Content-Length: 0\r\n")
	}
	for k, vs := range req.Header {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		}
		if !httpguts.ValidHeaderFieldName(k) {
			bw.Reset(w)
			return false
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				bw.Reset(w)
				return false
			}
			writeField(bw, k, textproto.TrimString(v))
		}
	}
	bw.WriteString("\r\n")
	return true
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

// readSimpleResponse parses the response at the head of br as http.ReadResponse would, when
// its header is buffered whole and it has the common shape: HTTP/1.1, a final status other
// than 204 and 304, one Content-Length, no Transfer-Encoding, Trailer, Pragma or folded
// lines, Connection (if any) only keep-alive, and a request other than HEAD. It returns the
// response without a Body and the body's length; ok is false, and nothing consumed,
// otherwise. The whole header is one string, so the header map costs a few allocations
// instead of one per line.
func readSimpleResponse(br *bufio.Reader, req *http.Request) (resp *http.Response, ok bool) {
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
	line, rest, _ := bytes.Cut(buf[:end+2], crlf)
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
	lines := bytes.Count(rest, crlf)
	text := string(buf[:end+4])
	off := len(line) + 2 // where rest starts in text
	h := make(http.Header, lines)
	strs := make([]string, lines)
	cl := int64(-1)
	for len(rest) > 0 {
		var l []byte
		l, rest, _ = bytes.Cut(rest, crlf)
		start := off
		off += len(l) + 2
		colon := bytes.IndexByte(l, ':')
		if colon <= 0 || !validFieldName(l[:colon]) || !validFieldValue(l[colon+1:]) {
			return nil, false
		}
		key := textproto.CanonicalMIMEHeaderKey(text[start : start+colon])
		v := trimSPHT(text[start+colon+1 : start+len(l)])
		switch key {
		case "Transfer-Encoding", "Trailer", "Pragma":
			return nil, false
		case "Connection":
			if !strings.EqualFold(v, "keep-alive") {
				return nil, false
			}
		case "Content-Length":
			if cl >= 0 {
				return nil, false
			}
			if cl = parseDigits(v); cl < 0 {
				return nil, false
			}
		}
		if vv := h[key]; vv != nil {
			h[key] = append(vv, v)
			continue
		}
		vv := strs[:1:1]
		strs = strs[1:]
		vv[0] = v
		h[key] = vv
	}
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

var (
	crlf     = []byte("\r\n")
	crlfcrlf = []byte("\r\n\r\n")
)

// validFieldName reports whether b is a non-empty token (RFC 9110 tchar), as textproto
// requires of a header key.
func validFieldName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c >= 0x80 || !httpguts.IsTokenRune(rune(c)) {
			return false
		}
	}
	return true
}

// validFieldValue reports whether b holds only the bytes textproto accepts in a header value:
// visible ASCII, space, tab and obs-text.
func validFieldValue(b []byte) bool {
	for _, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
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
