package h1server

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// smuggled is what each ambiguous case below hides after its first request: if a server frames
// the first request the way a Content-Length-reading hop before it would not, this is read as a
// second request.
const smuggled = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"

// TestAmbiguousFramingRefused sends, on one connection each, the request heads that other hops
// may frame differently from net/http (request smuggling) and requires a 400 with the reason,
// a closed connection, and no handler call: neither the first request nor what follows it is
// served.
func TestAmbiguousFramingRefused(t *testing.T) {
	for _, tt := range ambiguousCases {
		t.Run(tt.name, func(t *testing.T) {
			testAmbiguousRefused(t, tt.raw, tt.reason)
		})
	}
}

// ambiguousHeads returns the raw requests of ambiguousCases, as seeds for the differential
// fuzz target.
func ambiguousHeads() []string {
	var out []string
	for _, c := range ambiguousCases {
		out = append(out, c.raw)
	}
	return out
}

var ambiguousCases = []struct {
	name, raw, reason string
}{
	{"CL.TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, "both Transfer-Encoding and Content-Length"},
	{"TE.CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n2a\r\n" + smuggled + "\r\n0\r\n\r\n", "both Transfer-Encoding and Content-Length"},
	{"TE with a trailing space", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding: chunked \r\n\r\n0\r\n\r\n" + smuggled, "both Transfer-Encoding and Content-Length"},
	{"TE with a trailing tab", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n" + smuggled, "both Transfer-Encoding and Content-Length"},
	{"TE in capitals", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTRANSFER-ENCODING: CHUNKED\r\n\r\n0\r\n\r\n" + smuggled, "both Transfer-Encoding and Content-Length"},
	{"TE folded onto the next line", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + smuggled, "obs-fold"},
	{"TE after a bare LF", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nX-A: b\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, "bare LF"},
	{"TE with space before the colon", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + smuggled, "white space between a header name and its colon"},
	{"CL with space before the colon", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello" + smuggled, "white space between a header name and its colon"},
	{"HTTP/1.0 with TE and CL", "POST / HTTP/1.0\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, "both Transfer-Encoding and Content-Length"},
	{"HTTP/1.0 with TE", "POST / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, "HTTP/1.0"},
	{"bare LF line ends", "GET / HTTP/1.1\nHost: a\n\n" + smuggled, "bare LF"},
	{"bare LF ends the head", "GET / HTTP/1.1\r\nHost: a\r\n\n" + smuggled, "bare LF"},
	{"obs-fold of another field", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n" + smuggled, "obs-fold"},
	{"two Host fields", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" + smuggled, "Host"},
	{"NUL in a value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n" + smuggled, ""},
	{"NUL in a name", "GET / HTTP/1.1\r\nHost: a\r\nX-\x00A: b\r\n\r\n" + smuggled, ""},
	{"CL as a list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello" + smuggled, "Content-Length"},
	{"two different CLs", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 45\r\n\r\nhello" + smuggled, "Content-Length"},
	{"CL with a sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello" + smuggled, "Content-Length"},
	{"two TEs", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n" + smuggled, ""},
	{"TE list", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n" + smuggled, ""},
	{"request line with a bare CR", "GET /\r HTTP/1.1\r\nHost: a\r\n\r\n" + smuggled, ""},
}

func testAmbiguousRefused(t *testing.T, rawReq, reason string) {
	var calls atomic.Int32
	ts := startServer(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		io.Copy(io.Discard, r.Body)
	})}, nil)
	raw := ts.rawExchange(t, rawReq) // returns once the server has closed
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
	if err != nil {
		t.Fatalf("parsing %q: %v", raw, err)
	}
	body := readBody(t, resp)
	if resp.StatusCode != 400 && resp.StatusCode != 501 {
		t.Errorf("status %d, want 400 or 501 (body %q)", resp.StatusCode, body)
	}
	if !strings.Contains(body, reason) {
		t.Errorf("body %q does not give the reason %q", body, reason)
	}
	if !resp.Close {
		t.Errorf("no Connection: close in %q", raw)
	}
	if n := bytes.Count(raw, []byte("HTTP/1.1 ")); n != 1 {
		t.Errorf("%d responses, want 1: %q", n, raw)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("handler called %d times, want 0", n)
	}
}

// TestRejectedReported: a request refused before any handler is reported to Rejected with the
// client, the status and the reason, so the proxy can log and count it.
func TestRejectedReported(t *testing.T) {
	type rejection struct {
		status int
		reason string
	}
	var mu sync.Mutex
	var got []rejection
	ts := startServer(t, &Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}),
		Rejected: func(remote string, status int, reason string) {
			if !strings.HasPrefix(remote, "127.0.0.1:") {
				t.Errorf("remote %q", remote)
			}
			mu.Lock()
			got = append(got, rejection{status, reason})
			mu.Unlock()
		},
	}, nil)
	ts.rawExchange(t, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	ts.rawExchange(t, "GET / HTTP/1.1\r\n\r\n")
	mu.Lock()
	defer mu.Unlock()
	want := []rejection{{400, errCLandTE.Error()}, {400, "missing required Host header"}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("Rejected saw %v, want %v", got, want)
	}
}

// TestCheckHead covers the raw scanner's cases one by one, including those that pass.
func TestCheckHead(t *testing.T) {
	tests := []struct {
		head string
		want error
		f    headFacts
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", nil, headFacts{host: 1, hostValue: "a"}},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\ntrailing bytes\n", nil, headFacts{host: 1, hostValue: "a"}},
		{"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 1\r\nContent-Length: 1\r\n\r\n", nil, headFacts{host: 1, hostValue: "a", contentLength: 2}},
		{"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nX: \x80obs-text\t\r\n\r\n", nil, headFacts{transferEncoding: 1}},
		{"GET / HTTP/1.1\r\nX:\r\n\r\n", nil, headFacts{}},
		{"GET / HTTP/1.1\nHost: a\r\n\r\n", errBareLF, headFacts{}},
		{"GET / HTTP/1.1\r\nHost: a\r\n\n", errBareLF, headFacts{}},
		{"GET / HTTP/1.1\r\nHost: a\r\rb\r\n\r\n", errBareCR, headFacts{}},
		{"GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n", errObsFold, headFacts{}},
		{"GET / HTTP/1.1\r\nHost : a\r\n\r\n", errSpaceColon, headFacts{}},
		{"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", errSpaceColon, headFacts{}},
		{"GET / HTTP/1.1\r\nHo st: a\r\n\r\n", errBadName, headFacts{}},
		{"GET / HTTP/1.1\r\n: a\r\n\r\n", errBadName, headFacts{}},
		{"GET / HTTP/1.1\r\nX-\xc3\xa9: a\r\n\r\n", errBadName, headFacts{}},
		{"GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n", errBadValue, headFacts{}},
		{"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n", errBadValue, headFacts{}},
		{"GET / HTTP/1.1\r\nX\r\n\r\n", errNoColon, headFacts{}},
		{"GET / HTTP/1.1\r\nX: a\r\n", errHeadIncomplete, headFacts{}},
	}
	for _, tt := range tests {
		f, err := checkHead([]byte(tt.head))
		if !errors.Is(err, tt.want) {
			t.Errorf("checkHead(%q) = %v, want %v", tt.head, err, tt.want)
			continue
		}
		if err == nil && f != tt.f {
			t.Errorf("checkHead(%q) facts %+v, want %+v", tt.head, f, tt.f)
		}
	}
}
