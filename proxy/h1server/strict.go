package h1server

import (
	"bytes"
	"errors"
	"net/http"

	"golang.org/x/net/http/httpguts"
)

// A proxy must read a request's framing exactly as every other hop does, or one message
// becomes two (request smuggling). http.ReadRequest is lenient where hops differ: it takes a
// bare LF as a line end, unfolds obs-fold lines, keeps a field named "Transfer-Encoding " (white
// space before the colon) as an unknown field, frames a message that carries both
// Transfer-Encoding and Content-Length by the former, and ignores Transfer-Encoding on
// HTTP/1.0. net/http's own server refuses only the white space before a colon. Requests whose head is any of these are refused here with 400 and the
// connection closed (RFC 9112 sections 2.2, 5.1, 5.2 and 6.1), before a handler runs.

// Reasons for the 400s; each is the one line the client reads after "400 Bad Request: ".
var (
	errBareLF         = errors.New("line ends in a bare LF (RFC 9112 section 2.2: CRLF only)")
	errBareCR         = errors.New("bare CR in the request head")
	errObsFold        = errors.New("header line folded onto the next line (obs-fold, RFC 9112 section 5.2)")
	errSpaceColon     = errors.New("white space between a header name and its colon (RFC 9112 section 5.1)")
	errBadName        = errors.New("invalid header name")
	errBadValue       = errors.New("invalid header value")
	errNoColon        = errors.New("header line without a colon")
	errCLandTE        = errors.New("both Transfer-Encoding and Content-Length (RFC 9112 section 6.1: ambiguous framing)")
	errTEinHTTP10     = errors.New("Transfer-Encoding in an HTTP/1.0 request (RFC 9112 section 6.1)")
	errNoHost         = errors.New("missing required Host header")
	errBadHost        = errors.New("malformed Host header")
	errHeadIncomplete = errors.New("request head incomplete") // a bug if ever seen: ReadRequest accepted it
)

// headFacts is what checkHead counted in a request head.
type headFacts struct {
	contentLength    int    // Content-Length field lines
	transferEncoding int    // Transfer-Encoding field lines
	host             int    // Host field lines
	hostValue        string // the first Host field's value, without surrounding white space
}

// checkHead checks the raw request head at the start of b (the request line, field lines and
// the empty line; anything after it is ignored) against RFC 9112's syntax, strictly: every line
// ends in CRLF, no CR elsewhere, no folded lines, field names are tokens directly followed by
// the colon, field values hold no control characters but HTAB.
func checkHead(b []byte) (headFacts, error) {
	var f headFacts
	first := true
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return f, errHeadIncomplete
		}
		if i == 0 || b[i-1] != '\r' {
			return f, errBareLF
		}
		line := b[:i-1]
		b = b[i+1:]
		if bytes.IndexByte(line, '\r') >= 0 {
			return f, errBareCR
		}
		if first {
			first = false // the request line's syntax is ReadRequest's, which is strict enough
			continue
		}
		if len(line) == 0 {
			return f, nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			return f, errObsFold
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			return f, errNoColon
		}
		name := line[:colon]
		if !validName(name) {
			if n := len(name); n > 0 && (name[n-1] == ' ' || name[n-1] == '\t') {
				return f, errSpaceColon
			}
			return f, errBadName
		}
		for _, c := range line[colon+1:] {
			if c < ' ' && c != '\t' || c == 0x7f {
				return f, errBadValue
			}
		}
		switch {
		case asciiEqualFold(name, "content-length"):
			f.contentLength++
		case asciiEqualFold(name, "transfer-encoding"):
			f.transferEncoding++
		case asciiEqualFold(name, "host"):
			if f.host == 0 {
				f.hostValue = string(bytes.Trim(line[colon+1:], " \t"))
			}
			f.host++
		}
	}
}

// checkFraming applies the rules that need the parsed request beside the raw head's facts.
func checkFraming(f headFacts, req *http.Request) error {
	switch {
	case f.transferEncoding > 0 && f.contentLength > 0:
		return errCLandTE
	case f.transferEncoding > 0 && !req.ProtoAtLeast(1, 1):
		return errTEinHTTP10
	case f.host == 0 && req.ProtoAtLeast(1, 1) && req.Method != http.MethodConnect:
		// As net/http's server: even with a target in absolute form (RFC 9112 section 3.2).
		return errNoHost
	case f.host == 1 && !httpguts.ValidHostHeader(f.hostValue):
		// Also when the target's authority replaces it: the field must still be valid.
		return errBadHost
	}
	return nil
}

func validName(b []byte) bool {
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

// asciiEqualFold reports whether b equals lower, a lower-case ASCII string, ignoring case.
func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
