package h1wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// wireLines splits a request into its request line, its header lines, sorted (a map's order
// is not part of the wire format), and its body.
func wireLines(t *testing.T, b []byte) (string, []string, string) {
	t.Helper()
	head, body, ok := bytes.Cut(b, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("no request head: %q", b)
	}
	lines := strings.Split(string(head), "\r\n")
	hs := lines[1:]
	slices.Sort(hs)
	return lines[0], hs, string(body)
}

// checkWrite writes req both ways and fails when the fast writer accepts it and differs from
// Request.Write. It reports whether the fast writer took it. mkBody, if set, gives each writer
// a fresh copy of the body.
func checkWrite(t *testing.T, req *http.Request, mkBody func() io.ReadCloser) bool {
	t.Helper()
	if mkBody != nil {
		req.Body = mkBody()
	}
	var fast bytes.Buffer
	bw := bufio.NewWriter(&fast)
	ok, ferr := WriteRequest(bw, req)
	if !ok {
		if bw.Buffered() != 0 || fast.Len() != 0 {
			t.Fatalf("declined request left %d bytes behind", bw.Buffered()+fast.Len())
		}
		return false
	}
	bw.Flush()
	if mkBody != nil {
		req.Body = mkBody()
	}
	var want bytes.Buffer
	werr := req.Write(&want)
	if (ferr == nil) != (werr == nil) || ferr != nil && ferr.Error() != werr.Error() {
		t.Fatalf("fast writer error %v, Request.Write error %v", ferr, werr)
	}
	if werr != nil {
		return true
	}
	gl, gh, gb := wireLines(t, fast.Bytes())
	wl, wh, wb := wireLines(t, want.Bytes())
	if gl != wl || !slices.Equal(gh, wh) || gb != wb {
		t.Fatalf("fast writer differs from Request.Write\n got: %q %q %q\nwant: %q %q %q", gl, gh, gb, wl, wh, wb)
	}
	return true
}

func TestWriteRequestMatchesNetHTTP(t *testing.T) {
	mk := func(method, target, host string, h http.Header) *http.Request {
		u, err := url.Parse(target)
		if err != nil {
			t.Fatal(err)
		}
		if h == nil {
			h = http.Header{}
		}
		return &http.Request{Method: method, URL: u, Host: host, Header: h, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
	}
	withLength := func(r *http.Request, n int64) *http.Request { r.ContentLength = n; return r }
	body := func(s string) func() io.ReadCloser {
		return func() io.ReadCloser { return io.NopCloser(strings.NewReader(s)) }
	}
	closing := mk("GET", "https://a.example/", "a.example", nil)
	closing.Close = true
	chunked := withLength(mk("POST", "https://a.example/", "a.example", nil), -1)
	for _, tc := range []struct {
		name string
		req  *http.Request
		body func() io.ReadCloser
		fast bool
	}{
		{"plain GET", mk("GET", "https://a.example/v1/items?id=7&x=y", "a.example", http.Header{
			"Accept": {"application/json"}, "X-Forwarded-For": {"192.0.2.1"}, "User-Agent": {"curl/8.5"}}), nil, true},
		{"no User-Agent key sends Go's", mk("GET", "https://a.example/", "a.example", nil), nil, true},
		{"empty User-Agent sends none", mk("GET", "https://a.example/", "a.example", http.Header{"User-Agent": {""}}), nil, true},
		{"User-Agent trimmed", mk("GET", "https://a.example/", "a.example", http.Header{"User-Agent": {"  ua/1 \t"}}), nil, true},
		{"values trimmed, repeated keys kept", mk("DELETE", "https://a.example/a%20b", "a.example:8443", http.Header{
			"X-A": {" 1 ", "2"}, "Cookie": {"a=b; c=d"}}), nil, true},
		{"excluded keys not copied", mk("GET", "https://a.example/", "a.example", http.Header{
			"Host": {"evil.example"}, "Content-Length": {"5"}, "Transfer-Encoding": {"chunked"}, "Trailer": {"X"}}), nil, true},
		{"POST without body sends Content-Length 0", mk("POST", "https://a.example/", "a.example", nil), nil, true},
		{"empty path is /", mk("GET", "https://a.example", "a.example", nil), nil, true},
		{"force query", mk("GET", "https://a.example/p?", "a.example", nil), nil, true},
		{"host from URL", mk("GET", "https://b.example:444/", "", nil), nil, true},
		{"IPv6 host", mk("GET", "https://[2001:db8::1]:443/", "[2001:db8::1]:443", nil), nil, true},
		{"obs-text value", mk("GET", "https://a.example/", "a.example", http.Header{"X-Name": {"caf\xc3\xa9"}}), nil, true},
		{"newline in value declined", mk("GET", "https://a.example/", "a.example", http.Header{"X-A": {"a\r\nX-Evil: 1"}}), nil, false},
		{"newline in User-Agent declined", mk("GET", "https://a.example/", "a.example", http.Header{"User-Agent": {"a\nb"}}), nil, false},
		{"bad key declined", mk("GET", "https://a.example/", "a.example", http.Header{"X A": {"1"}}), nil, false},
		{"zone in host declined", mk("GET", "https://a.example/", "[fe80::1%25eth0]:443", nil), nil, false},
		{"non-ASCII host declined", mk("GET", "https://a.example/", "bücher.example", nil), nil, false},
		{"Content-Length body", withLength(mk("POST", "https://a.example/v1", "a.example", http.Header{
			"Content-Type": {"application/json"}, "Expect": {"100-continue"}}), 9), body(`{"a": 1}` + "\n"), true},
		{"GET with a body", withLength(mk("GET", "https://a.example/", "a.example", nil), 2), body("hi"), true},
		{"body shorter than its length", withLength(mk("PUT", "https://a.example/", "a.example", nil), 5), body("hi"), true},
		{"body longer than its length", withLength(mk("PUT", "https://a.example/", "a.example", nil), 1), body("hi"), true},
		{"unknown length declined", chunked, body("hi"), false},
		{"length without body declined", withLength(mk("POST", "https://a.example/", "a.example", nil), 2), nil, false},
		{"Connection: close declined", closing, nil, false},
		{"CONNECT declined", mk("CONNECT", "https://a.example:443", "a.example:443", nil), nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := checkWrite(t, tc.req, tc.body); got != tc.fast {
				t.Fatalf("fast writer took it: %v, want %v", got, tc.fast)
			}
		})
	}
}

func TestWriteRequestAllocations(t *testing.T) {
	req, _ := http.NewRequest("GET", "https://a.example/v1/items?id=7", nil)
	req.Header = http.Header{"Accept": {"application/json"}, "User-Agent": {"curl/8.5"}, "X-Forwarded-For": {"192.0.2.1"}}
	bw := bufio.NewWriterSize(io.Discard, 4096)
	if n := testing.AllocsPerRun(100, func() {
		if ok, err := WriteRequest(bw, req); !ok || err != nil {
			t.Fatal("declined", err)
		}
		bw.Flush()
	}); n != 0 {
		t.Fatalf("WriteRequest allocates %v times for a request without a body", n)
	}
}

func FuzzWriteRequest(f *testing.F) {
	f.Add("GET", "/a?b=c", "a.example", "X-A", " v ", "ua/1")
	f.Add("POST", "/", "a.example:1", "Cookie", "a=b", "")
	f.Add("PUT", "/%2F", "[::1]:80", "x-lower", "\xff", "\t")
	f.Fuzz(func(t *testing.T, method, target, host, key, value, ua string) {
		u, err := url.ParseRequestURI(target)
		if err != nil || method == "" {
			return
		}
		req := &http.Request{Method: method, URL: u, Host: host, Header: http.Header{key: {value}, "User-Agent": {ua}}}
		checkWrite(t, req, nil)
		if value != "" {
			req.ContentLength = int64(len(value))
			checkWrite(t, req, func() io.ReadCloser { return io.NopCloser(strings.NewReader(value)) })
		}
	})
}

// untouched fails unless br still holds all of raw: a declined message is left to net/http.
func untouched(t *testing.T, br *bufio.Reader, raw []byte) {
	t.Helper()
	if rest, _ := io.ReadAll(br); !bytes.Equal(rest, raw) {
		t.Fatalf("declined message consumed input")
	}
}

// sameBody reads both bodies to the end (in small reads) and fails unless they hold the same
// bytes and end the same way (io.EOF, or the same error).
func sameBody(t *testing.T, got, want io.Reader) {
	t.Helper()
	var gotBody []byte
	var gotErr error
	buf := make([]byte, 7)
	for gotErr == nil {
		var n int
		n, gotErr = got.Read(buf)
		gotBody = append(gotBody, buf[:n]...)
	}
	if gotErr == io.EOF {
		gotErr = nil
	}
	wantBody, wantErr := io.ReadAll(want)
	if !bytes.Equal(gotBody, wantBody) || !errors.Is(gotErr, wantErr) && (gotErr == nil || wantErr == nil || gotErr.Error() != wantErr.Error()) {
		t.Fatalf("body: got %q, %v; want %q, %v", gotBody, gotErr, wantBody, wantErr)
	}
}

// sameRest fails unless the fast and the net/http reader have the same bytes left.
func sameRest(t *testing.T, br, wbr *bufio.Reader) {
	t.Helper()
	gotRest, _ := io.ReadAll(br)
	wantRest, _ := io.ReadAll(wbr)
	if !bytes.Equal(gotRest, wantRest) {
		t.Fatalf("left on the reader: got %q, want %q", gotRest, wantRest)
	}
}

// checkRead parses raw both ways; when the fast parser takes it, the response, its body and
// what is left on the reader must be what net/http makes of it. It reports whether it took it.
func checkRead(t *testing.T, raw []byte, method string) bool {
	t.Helper()
	req := &http.Request{Method: method}
	br := bufio.NewReaderSize(bytes.NewReader(raw), 16<<10)
	got, ok := ReadResponse(br, req)
	if !ok {
		untouched(t, br, raw)
		return false
	}
	wbr := bufio.NewReaderSize(bytes.NewReader(raw), 16<<10)
	want, err := http.ReadResponse(wbr, req)
	if err != nil {
		t.Fatalf("fast parser accepted what ReadResponse refuses (%v): %q", err, raw)
	}
	if got.Status != want.Status || got.StatusCode != want.StatusCode || got.Proto != want.Proto ||
		got.ProtoMajor != want.ProtoMajor || got.ProtoMinor != want.ProtoMinor ||
		got.ContentLength != want.ContentLength || got.Close != want.Close ||
		got.TransferEncoding != nil || want.TransferEncoding != nil || got.Trailer != nil || want.Trailer != nil ||
		got.Request != want.Request || !reflect.DeepEqual(got.Header, want.Header) {
		t.Fatalf("fast parser differs from ReadResponse for %q\n got: %+v\nwant: %+v", raw, got, want)
	}
	if want.ContentLength == 0 && want.Body != http.NoBody {
		t.Fatalf("ReadResponse gave a body for Content-Length 0")
	}
	sameBody(t, &Body{R: br, Left: got.ContentLength}, want.Body)
	sameRest(t, br, wbr)
	return true
}

func TestReadResponseMatchesNetHTTP(t *testing.T) {
	for _, tc := range []struct {
		name   string
		raw    string
		method string
		fast   bool
	}{
		{"json", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\nDate: Wed, 25 Nov 2026 15:00:00 GMT\r\n\r\n{\"ok\":true}", "GET", true},
		{"next response left on reader", "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 200 OK\r\n", "POST", true},
		{"lower-case and repeated keys", "HTTP/1.1 200 OK\r\ncontent-length: 1\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\nx-weird_key: v\r\n\r\nx", "GET", true},
		{"values trimmed", "HTTP/1.1 200 OK\r\nX-A:   spaced \t \r\nX-Empty:\r\nContent-Length: 0\r\n\r\n", "GET", true},
		{"no reason phrase", "HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", "GET", true},
		{"reason with spaces", "HTTP/1.1 503 Service  Unavailable\r\nContent-Length: 1\r\n\r\nx", "GET", true},
		{"keep-alive", "HTTP/1.1 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\nx", "GET", true},
		{"obs-text value", "HTTP/1.1 200 OK\r\nX-Name: caf\xc3\xa9\r\nContent-Length: 0\r\n\r\n", "GET", true},
		{"truncated body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "GET", true},
		{"chunked declined", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", "GET", false},
		{"no length declined", "HTTP/1.1 200 OK\r\n\r\n", "GET", false},
		{"two lengths declined", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", "GET", false},
		{"bad length declined", "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx", "GET", false},
		{"leading zero declined", "HTTP/1.1 200 OK\r\nContent-Length: 01\r\n\r\nx", "GET", false},
		{"Connection: close declined", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx", "GET", false},
		{"Pragma declined", "HTTP/1.1 200 OK\r\nPragma: no-cache\r\nContent-Length: 1\r\n\r\nx", "GET", false},
		{"Trailer declined", "HTTP/1.1 200 OK\r\nTrailer: X\r\nContent-Length: 1\r\n\r\nx", "GET", false},
		{"HEAD declined", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HEAD", false},
		{"204 declined", "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"304 declined", "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", "GET", false},
		{"1xx declined", "HTTP/1.1 100 Continue\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"HTTP/1.0 declined", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", "GET", false},
		{"folded line declined", "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 1\r\n\r\nx", "GET", false},
		{"space before colon declined", "HTTP/1.1 200 OK\r\nX-A : a\r\nContent-Length: 1\r\n\r\nx", "GET", false},
		{"bare LF declined", "HTTP/1.1 200 OK\r\nX-A: a\nX-B: b\r\nContent-Length: 1\r\n\r\nx", "GET", false},
		{"CR in value declined", "HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 1\r\n\r\nx", "GET", false},
		{"incomplete head declined", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n", "GET", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := checkRead(t, []byte(tc.raw), tc.method); got != tc.fast {
				t.Fatalf("fast parser took it: %v, want %v", got, tc.fast)
			}
		})
	}
}

func FuzzReadResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"), false)
	f.Add([]byte("HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nx-a:  b \r\n\r\nHTTP/1.1"), true)
	f.Add([]byte("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nab"), false)
	f.Fuzz(func(t *testing.T, raw []byte, head bool) {
		method := "GET"
		if head {
			method = "HEAD"
		}
		checkRead(t, raw, method)
	})
}

func BenchmarkReadResponse(b *testing.B) {
	raw := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Wed, 25 Nov 2026 15:00:00 GMT\r\nContent-Length: 11\r\n\r\n{\"ok\":true}")
	req := &http.Request{Method: "GET"}
	rd := bytes.NewReader(raw)
	br := bufio.NewReaderSize(rd, 16<<10)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rd.Reset(raw)
			br.Reset(rd)
			if _, ok := ReadResponse(br, req); !ok {
				b.Fatal("declined")
			}
		}
	})
	b.Run("net/http", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rd.Reset(raw)
			br.Reset(rd)
			if _, err := http.ReadResponse(br, req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// checkReadRequest parses raw both ways; when the fast parser takes it, the request and what
// is left on the reader must be what http.ReadRequest makes of it. It reports whether it
// took it.
func checkReadRequest(t *testing.T, raw []byte, max int) bool {
	t.Helper()
	br := bufio.NewReaderSize(bytes.NewReader(raw), 16<<10)
	br.Peek(1) // a server has waited for the first bytes before it parses
	got, ok := ReadRequest(br, max)
	if !ok {
		untouched(t, br, raw)
		return false
	}
	wbr := bufio.NewReaderSize(bytes.NewReader(raw), 16<<10)
	want, err := http.ReadRequest(wbr)
	if err != nil {
		t.Fatalf("fast parser accepted what ReadRequest refuses (%v): %q", err, raw)
	}
	if got.Method != want.Method || !reflect.DeepEqual(got.URL, want.URL) || got.Proto != want.Proto ||
		got.ProtoMajor != want.ProtoMajor || got.ProtoMinor != want.ProtoMinor ||
		got.Host != want.Host || got.RequestURI != want.RequestURI ||
		got.ContentLength != want.ContentLength || got.Close != want.Close ||
		(got.Body == http.NoBody) != (want.Body == http.NoBody) || got.TransferEncoding != nil || want.TransferEncoding != nil ||
		got.Trailer != nil || want.Trailer != nil || !reflect.DeepEqual(got.Header, want.Header) {
		t.Fatalf("fast parser differs from ReadRequest for %q\n got: %+v %+v\nwant: %+v %+v", raw, got, got.URL, want, want.URL)
	}
	sameBody(t, got.Body, want.Body)
	sameRest(t, br, wbr)
	return true
}

func TestReadRequestMatchesNetHTTP(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  string
		fast bool
	}{
		{"curl", "GET /v1/items?id=7&x=%20y HTTP/1.1\r\nHost: gw.example\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n", true},
		{"pipelined next request left", "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\n", true},
		{"lower-case, repeated, trimmed", "DELETE /a/b;c=d HTTP/1.1\r\nhost:  a.example:8443 \r\nx-a: 1\r\nX-A:2\r\nx_b:\t\r\n\r\n", true},
		{"force query", "GET /p? HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"query with ? and ;", "GET /p?a=1?b;c HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"path chars", "OPTIONS /-_.~$&+,:;=@/x HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"keep-alive", "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", true},
		{"obs-text value", "GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xc3\xa9\r\n\r\n", true},
		{"Expect kept for the server", "GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n", true},
		{"escaped path declined", "GET /a%20b HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"fragment declined", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"absolute form declined", "GET http://a.example/ HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"CONNECT declined", "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", false},
		{"asterisk declined", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"HTTP/1.0 declined", "GET / HTTP/1.0\r\nHost: a\r\n\r\n", false},
		{"no Host declined", "GET / HTTP/1.1\r\nX-A: b\r\n\r\n", false},
		{"two Hosts declined", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", false},
		{"Content-Length body", "POST /v1/items HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{\"a\": 1}", true},
		{"body, then the next request left", "PUT /a HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhiGET / HTTP/1.1\r\n", true},
		{"truncated body", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nshort", true},
		{"Content-Length 0", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", true},
		{"two lengths declined", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi", false},
		{"bad length declined", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x2\r\n\r\nhi", false},
		{"length and chunked declined", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false},
		{"chunked declined", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false},
		{"Connection: close declined", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false},
		{"Pragma declined", "GET / HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\n\r\n", false},
		{"double space declined", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"bad method declined", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"folded line declined", "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\r\n b\r\n\r\n", false},
		{"space before colon declined", "GET / HTTP/1.1\r\nHost: a\r\nX-A : a\r\n\r\n", false},
		{"bare LF declined", "GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n", false},
		{"NUL in value declined", "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n", false},
		{"incomplete head declined", "GET / HTTP/1.1\r\nHost: a\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := checkReadRequest(t, []byte(tc.raw), 1<<20); got != tc.fast {
				t.Fatalf("fast parser took it: %v, want %v", got, tc.fast)
			}
		})
	}
	if checkReadRequest(t, []byte("GET / HTTP/1.1\r\nHost: a\r\nX-Big: "+strings.Repeat("x", 100)+"\r\n\r\n"), 64) {
		t.Fatal("fast parser took a header larger than maxHeaderBytes")
	}
}

func FuzzReadRequest(f *testing.F) {
	f.Add([]byte("GET /v1/items?id=7 HTTP/1.1\r\nHost: gw.example\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"))
	f.Add([]byte("DELETE /a;b HTTP/1.1\r\nhost: a\r\nx-a: 1\r\nX-A:2\r\nConnection: keep-alive\r\n\r\nGET"))
	f.Add([]byte("GET /p?q? HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"))
	f.Add([]byte("POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkReadRequest(t, raw, 1<<20)
	})
}

func BenchmarkReadRequest(b *testing.B) {
	raw := []byte("GET /v1/items?id=7 HTTP/1.1\r\nHost: gw.example\r\nUser-Agent: loadgen/1\r\nAccept: application/json\r\nAccept-Encoding: gzip\r\n\r\n")
	rd := bytes.NewReader(raw)
	br := bufio.NewReaderSize(rd, 16<<10)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rd.Reset(raw)
			br.Reset(rd)
			br.Peek(1)
			if _, ok := ReadRequest(br, 1<<20); !ok {
				b.Fatal("declined")
			}
		}
	})
	b.Run("net/http", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rd.Reset(raw)
			br.Reset(rd)
			if _, err := http.ReadRequest(br); err != nil {
				b.Fatal(err)
			}
		}
	})
}
