package h1server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ioTimeout is the safety bound on every client read and write: a test that waits this long
// has failed, it never waits this long when the server behaves.
const ioTimeout = 10 * time.Second

// testServer runs a Server behind a real loopback listener: one goroutine per accepted conn
// calls ServeConn (after a TLS handshake when tlsConf is set).
type testServer struct {
	srv     *Server
	ln      net.Listener
	addr    string
	accepts atomic.Int32
	wg      sync.WaitGroup
}

func startServer(t *testing.T, srv *Server, tlsConf *tls.Config) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{srv: srv, ln: ln, addr: ln.Addr().String()}
	ts.wg.Add(1) // the accept loop; every per-conn Add happens while it is counted
	go func() {
		defer ts.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ts.accepts.Add(1)
			ts.wg.Add(1)
			go func() {
				defer ts.wg.Done()
				if tlsConf != nil {
					tc := tls.Server(c, tlsConf)
					tc.SetDeadline(time.Now().Add(ioTimeout))
					if err := tc.Handshake(); err != nil {
						c.Close()
						return
					}
					tc.SetDeadline(time.Time{})
					c = tc
				}
				srv.ServeConn(context.Background(), c, nil)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		srv.Close()
		done := make(chan struct{})
		go func() { ts.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(ioTimeout):
			t.Errorf("server goroutines still running after Close")
		}
	})
	return ts
}

// dial opens a raw client connection with a safety deadline.
func (ts *testServer) dial(t *testing.T) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(ioTimeout))
	return c, bufio.NewReader(c)
}

// dialTee is dial whose reader also records every byte read, so header lines that
// http.ReadResponse consumes (Connection: close) can be checked as sent.
func (ts *testServer) dialTee(t *testing.T) (net.Conn, *bufio.Reader, *bytes.Buffer) {
	t.Helper()
	c, _ := ts.dial(t)
	rec := &bytes.Buffer{}
	return c, bufio.NewReader(io.TeeReader(c, rec)), rec
}

// hasHeaderLine reports whether the raw bytes hold the exact header line.
func hasHeaderLine(raw []byte, line string) bool {
	head := string(raw)
	if i := strings.Index(head, "\r\n\r\n"); i >= 0 {
		head = head[:i+2]
	}
	return strings.Contains(head, "\r\n"+line+"\r\n")
}

func (ts *testServer) client(t *testing.T) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: ioTimeout}
}

func write(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func readResp(t *testing.T, br *bufio.Reader, method string) *http.Response {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("ReadResponse: %v", err)
	}
	return resp
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return string(b)
}

// expectEOF asserts that the server closed the connection: the next read returns io.EOF
// (a reset is accepted too, it also means closed) with no bytes.
func expectEOF(t *testing.T, c net.Conn, br *bufio.Reader, bound time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(bound))
	b, err := br.ReadByte()
	if err == nil {
		t.Fatalf("connection still open: read %q", b)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection not closed within %v", bound)
	}
	if err != io.EOF && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("read after close: %v, want EOF", err)
	}
}

// rawExchange sends raw on a fresh connection and returns everything the server sends
// until it closes.
func (ts *testServer) rawExchange(t *testing.T, raw string) []byte {
	t.Helper()
	c, br := ts.dial(t)
	write(t, c, raw)
	b, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("reading until close: %v (got %q)", err, b)
	}
	return b
}

// splitResponse splits a raw response into its header block and body bytes.
func splitResponse(t *testing.T, raw []byte) (head string, body []byte) {
	t.Helper()
	i := bytes.Index(raw, []byte("\r\n\r\n"))
	if i < 0 {
		t.Fatalf("no end of headers in %q", raw)
	}
	return string(raw[:i+4]), raw[i+4:]
}

// syncBuffer is a log destination safe for the server's and the test's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// 1. Keep-alive and response framing, through net/http's client.
func TestKeepAliveFraming(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 256) + "tail" // 4100 bytes
	tests := []struct {
		name    string
		handler http.HandlerFunc
		body    string
		cl      int64  // resp.ContentLength; -1 for chunked
		clHdr   string // the Content-Length header on the wire, "" for none
	}{
		{
			name:    "small body gets Content-Length",
			handler: func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") },
			body:    "hello", cl: 5, clHdr: "5",
		},
		{
			name:    "empty body gets Content-Length 0",
			handler: func(w http.ResponseWriter, r *http.Request) {},
			body:    "", cl: 0, clHdr: "0",
		},
		{
			name: "exactly 2 KiB in two writes still gets Content-Length",
			handler: func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, big[:1024])
				io.WriteString(w, big[1024:2048])
			},
			body: big[:2048], cl: 2048, clHdr: "2048",
		},
		{
			name: "over 2 KiB without Content-Length is chunked",
			handler: func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, big[:1000])
				io.WriteString(w, big[1000:])
			},
			body: big, cl: -1,
		},
		{
			name: "2 KiB plus one byte is chunked",
			handler: func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, big[:2049])
			},
			body: big[:2049], cl: -1,
		},
		{
			name: "handler Content-Length is honoured",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", strconv.Itoa(len(big)))
				io.WriteString(w, big[:3000])
				io.WriteString(w, big[3000:])
			},
			body: big, cl: int64(len(big)), clHdr: strconv.Itoa(len(big)),
		},
		{
			name: "handler Content-Length with WriteHeader",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", "3")
				w.WriteHeader(http.StatusCreated)
				io.WriteString(w, "abc")
			},
			body: "abc", cl: 3, clHdr: "3",
		},
	}
	mux := http.NewServeMux()
	for i, tt := range tests {
		mux.Handle("/"+strconv.Itoa(i), tt.handler)
	}
	ts := startServer(t, &Server{Handler: mux}, nil)
	client := ts.client(t)
	for round := 0; round < 2; round++ { // every case twice, all on one connection
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				resp, err := client.Get("http://" + ts.addr + "/" + strconv.Itoa(i))
				if err != nil {
					t.Fatal(err)
				}
				body := readBody(t, resp)
				if body != tt.body {
					t.Errorf("body = %d bytes %.20q..., want %d bytes", len(body), body, len(tt.body))
				}
				if resp.ContentLength != tt.cl {
					t.Errorf("ContentLength = %d, want %d", resp.ContentLength, tt.cl)
				}
				if got := resp.Header.Get("Content-Length"); got != tt.clHdr {
					t.Errorf("Content-Length header = %q, want %q", got, tt.clHdr)
				}
				wantTE := []string(nil)
				if tt.cl < 0 {
					wantTE = []string{"chunked"}
				}
				if fmt.Sprint(resp.TransferEncoding) != fmt.Sprint(wantTE) {
					t.Errorf("TransferEncoding = %v, want %v", resp.TransferEncoding, wantTE)
				}
				if d := resp.Header.Get("Date"); d == "" {
					t.Error("no Date header")
				} else if _, err := http.ParseTime(d); err != nil {
					t.Errorf("Date %q: %v", d, err)
				}
				if resp.Close {
					t.Error("response closes the connection")
				}
			})
		}
	}
	if n := ts.accepts.Load(); n != 1 {
		t.Errorf("%d connections accepted for %d keep-alive requests, want 1", n, 2*len(tests))
	}
}

// 1 (raw). The chunked framing on the wire, several requests on one raw connection.
func TestKeepAliveRaw(t *testing.T) {
	big := strings.Repeat("x", 3000)
	ts := startServer(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			io.WriteString(w, big)
			return
		}
		io.WriteString(w, r.URL.Path)
	})}, nil)
	c, br := ts.dial(t)
	for i := 0; i < 5; i++ {
		path := "/r" + strconv.Itoa(i)
		write(t, c, "GET "+path+" HTTP/1.1\r\nHost: example\r\n\r\n")
		resp := readResp(t, br, "GET")
		if got := readBody(t, resp); got != path || resp.ContentLength != int64(len(path)) {
			t.Fatalf("request %d: body %q length %d", i, got, resp.ContentLength)
		}
	}
	write(t, c, "GET /big HTTP/1.1\r\nHost: example\r\n\r\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 200 OK\r\n" {
		t.Fatalf("status line %q, %v", line, err)
	}
	var hdr []string
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if l == "\r\n" {
			break
		}
		hdr = append(hdr, strings.TrimRight(l, "\r\n"))
	}
	joined := strings.Join(hdr, "|")
	if !strings.Contains(joined, "Transfer-Encoding: chunked") || strings.Contains(joined, "Content-Length") {
		t.Fatalf("headers %q: want chunked and no Content-Length", hdr)
	}
	// The chunks, decoded by hand, then the terminating chunk.
	var got strings.Builder
	for n := 0; n < 100; n++ {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		size, err := strconv.ParseInt(strings.TrimRight(l, "\r\n"), 16, 64)
		if err != nil {
			t.Fatalf("chunk size line %q", l)
		}
		chunk := make([]byte, size+2)
		if _, err := io.ReadFull(br, chunk); err != nil {
			t.Fatal(err)
		}
		if string(chunk[size:]) != "\r\n" {
			t.Fatalf("chunk not followed by CRLF: %q", chunk[size:])
		}
		if size == 0 {
			break
		}
		got.Write(chunk[:size])
	}
	if got.String() != big {
		t.Fatalf("chunked body: %d bytes, want %d", got.Len(), len(big))
	}
	// Still usable.
	write(t, c, "GET /after HTTP/1.1\r\nHost: example\r\n\r\n")
	if got := readBody(t, readResp(t, br, "GET")); got != "/after" {
		t.Fatalf("after chunked response: %q", got)
	}
}

// 2. Two requests in one write get two responses, in order.
func TestPipelining(t *testing.T) {
	ts := startServer(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, b)
	})}, nil)
	tests := []struct {
		name string
		raw  string
		want []string
	}{
		{
			name: "two GETs",
			raw:  "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
			want: []string{"GET /1 ", "GET /2 "},
		},
		{
			name: "POST with body then GET",
			raw:  "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbodyGET /g HTTP/1.1\r\nHost: a\r\n\r\n",
			want: []string{"POST /p body", "GET /g "},
		},
		{
			name: "three with chunked body in the middle",
			raw: "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n" +
				"PUT /2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" +
				"GET /3 HTTP/1.1\r\nHost: a\r\n\r\n",
			want: []string{"GET /1 ", "PUT /2 abc", "GET /3 "},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, br := ts.dial(t)
			write(t, c, tt.raw)
			for i, want := range tt.want {
				resp := readResp(t, br, "GET")
				if got := readBody(t, resp); got != want {
					t.Fatalf("response %d: %q, want %q", i, got, want)
				}
			}
		})
	}
}

// 3. HEAD, 204 and 304 carry no body.
func TestNoBodyResponses(t *testing.T) {
	tests := []struct {
		name     string
		method   string
		handler  func(w http.ResponseWriter, r *http.Request) error // returns its Write's error
		status   int
		wantHdr  []string // lines that must be in the header block
		noHdr    []string // header names that must not be
		writeErr error    // what the handler's Write returned
	}{
		{
			name:   "HEAD keeps handler Content-Length",
			method: "HEAD",
			handler: func(w http.ResponseWriter, r *http.Request) error {
				w.Header().Set("Content-Length", "1234")
				_, err := io.WriteString(w, "this is not sent")
				return err
			},
			status:  200,
			wantHdr: []string{"Content-Length: 1234"},
			noHdr:   []string{"Transfer-Encoding"},
		},
		{
			name:   "HEAD with a large body write",
			method: "HEAD",
			handler: func(w http.ResponseWriter, r *http.Request) error {
				_, err := io.WriteString(w, strings.Repeat("z", 5000))
				return err
			},
			status: 200,
			noHdr:  []string{"Transfer-Encoding"},
		},
		{
			name:   "204",
			method: "GET",
			handler: func(w http.ResponseWriter, r *http.Request) error {
				w.WriteHeader(http.StatusNoContent)
				_, err := io.WriteString(w, "x")
				return err
			},
			status:   204,
			noHdr:    []string{"Transfer-Encoding", "Content-Length"},
			writeErr: http.ErrBodyNotAllowed,
		},
		{
			name:   "304",
			method: "GET",
			handler: func(w http.ResponseWriter, r *http.Request) error {
				w.Header().Set("ETag", `"v1"`)
				w.WriteHeader(http.StatusNotModified)
				_, err := io.WriteString(w, strings.Repeat("z", 5000))
				return err
			},
			status:   304,
			wantHdr:  []string{`Etag: "v1"`},
			noHdr:    []string{"Transfer-Encoding", "Content-Length"},
			writeErr: http.ErrBodyNotAllowed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := make(chan error, 1)
			ts := startServer(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				errs <- tt.handler(w, r)
			})}, nil)
			// Connection: close makes the server end the conn after the response, so every
			// byte it sent is read and any body byte would show.
			raw := ts.rawExchange(t, tt.method+" / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
			head, body := splitResponse(t, raw)
			if len(body) != 0 {
				t.Errorf("%d body bytes on the wire: %q", len(body), body)
			}
			if want := fmt.Sprintf("HTTP/1.1 %d ", tt.status); !strings.HasPrefix(head, want) {
				t.Errorf("status line: %q, want %q", head, want)
			}
			for _, h := range tt.wantHdr {
				if !strings.Contains(head, "\r\n"+h+"\r\n") {
					t.Errorf("header %q missing from %q", h, head)
				}
			}
			for _, h := range tt.noHdr {
				if strings.Contains(strings.ToLower(head), "\r\n"+strings.ToLower(h)+":") {
					t.Errorf("unexpected %s in %q", h, head)
				}
			}
			if err := <-errs; err != tt.writeErr {
				t.Errorf("handler Write error = %v, want %v", err, tt.writeErr)
			}
		})
	}
	// On a kept-alive connection the next response follows the HEAD response directly.
	ts := startServer(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		io.WriteString(w, "hello")
	})}, nil)
	c, br := ts.dial(t)
	write(t, c, "HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
	resp := readResp(t, br, "HEAD")
	if resp.ContentLength != 5 {
		t.Errorf("HEAD ContentLength %d, want 5", resp.ContentLength)
	}
	if got := readBody(t, readResp(t, br, "GET")); got != "hello" {
		t.Errorf("GET after HEAD: %q", got)
	}
}

// 4. Requests that cannot be served are refused, as net/http refuses them.
func TestBadRequests(t *testing.T) {
	bigHeaders := "GET / HTTP/1.1\r\nHost: a\r\n"
	for i := 0; len(bigHeaders) < 8<<10; i++ {
		bigHeaders += fmt.Sprintf("X-Filler-%d: %s\r\n", i, strings.Repeat("f", 100))
	}
	bigHeaders += "\r\n"
	tests := []struct {
		name     string
		raw      string
		status   int
		bodyHas  string
		handlers int32 // handler calls expected
	}{
		{"malformed request line", "GARBAGE\r\n\r\n", 400, "malformed HTTP request", 0},
		{"malformed version", "GET / HTTP/1.x\r\nHost: a\r\n\r\n", 400, "malformed HTTP version", 0},
		{"headers over MaxHeaderBytes", bigHeaders, 431, "431 Request Header Fields Too Large", 0},
		{"HTTP/1.1 without Host", "GET / HTTP/1.1\r\n\r\n", 400, "missing required Host header", 0},
		{"malformed Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "malformed Host header", 0},
		{"header with a bare CR in its value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", 400, "", 0},
		{"HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, "505 HTTP Version Not Supported", 0},
		{"unsupported Transfer-Encoding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "Unsupported transfer encoding", 0},
		{"bad Expect", "POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx", 417, "417 Expectation Failed", 0},
		{"bad Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n", 400, "bad Content-Length", 0},
		{"HTTP/1.0 without Host is fine", "GET / HTTP/1.0\r\n\r\n", 200, "ok", 1},
		{"headers within MaxHeaderBytes", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-Fill: " + strings.Repeat("f", 900) + "\r\n\r\n", 200, "ok", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			ts := startServer(t, &Server{MaxHeaderBytes: 1024, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				io.WriteString(w, "ok")
			})}, nil)
			raw := ts.rawExchange(t, tt.raw)
			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
			if err != nil {
				t.Fatalf("parsing %q: %v", raw, err)
			}
			body := readBody(t, resp)
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d (body %q)", resp.StatusCode, tt.status, body)
			}
			if !strings.Contains(body, tt.bodyHas) {
				t.Errorf("body %q does not mention %q", body, tt.bodyHas)
			}
			if !resp.Close || !hasHeaderLine(raw, "Connection: close") {
				t.Errorf("no Connection: close in %q", raw)
			}
			if tt.status >= 400 {
				if ct := resp.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
					t.Errorf("Content-Type %q", ct)
				}
				if resp.ContentLength != int64(len(body)) {
					t.Errorf("Content-Length %d for %d body bytes", resp.ContentLength, len(body))
				}
			}
			if n := calls.Load(); n != tt.handlers {
				t.Errorf("handler called %d times, want %d", n, tt.handlers)
			}
		})
	}
}

// 4 (kept alive). The header limit holds for a later request on a connection too, whose
// first bytes the idle wait has already buffered.
func TestMaxHeaderBytesKeptAlive(t *testing.T) {
	ts := startServer(t, &Server{MaxHeaderBytes: 1024, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})}, nil)
	c, br := ts.dial(t)
	write(t, c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if got := readBody(t, readResp(t, br, "GET")); got != "ok" {
		t.Fatalf("first request: %q", got)
	}
	big := "GET / HTTP/1.1\r\nHost: a\r\n"
	for i := 0; len(big) < 8<<10; i++ {
		big += fmt.Sprintf("X-Filler-%d: %s\r\n", i, strings.Repeat("f", 100))
	}
	write(t, c, big+"\r\n")
	resp := readResp(t, br, "GET")
	readBody(t, resp)
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || !resp.Close {
		t.Fatalf("status %d close %v, want 431 and close", resp.StatusCode, resp.Close)
	}
	expectEOF(t, c, br, ioTimeout)
}

// 5. Request bodies.
func TestRequestBodies(t *testing.T) {
	largeBody := strings.Repeat("L", 100<<10)
	tests := []struct {
		name string
		req  string
		want string // the handler's echo: method, length and body
	}{
		{"Content-Length", "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world", "11:hello world"},
		{"chunked", "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "11:hello world"},
		{"chunked with trailer", "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nX-Trailer: t\r\n\r\n", "2:hi"},
		{"large Content-Length", "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: " + strconv.Itoa(len(largeBody)) + "\r\n\r\n" + largeBody, strconv.Itoa(len(largeBody)) + ":" + largeBody},
		{"ignored small body is drained", "POST /ignore HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n" + strings.Repeat("i", 100), "ignored"},
		{"ignored chunked body is drained", "POST /ignore HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "ignored"},
		{"half-read body is drained", "POST /half HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789", "half:01234"},
	}
	ts := startServer(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			b, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			fmt.Fprintf(w, "%d:%s", len(b), b)
		case "/ignore":
			io.WriteString(w, "ignored")
		case "/half":
			b := make([]byte, 5)
			io.ReadFull(r.Body, b)
			fmt.Fprintf(w, "half:%s", b)
		default:
			io.WriteString(w, "next")
		}
	})}, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, br := ts.dial(t)
			write(t, c, tt.req)
			if got := readBody(t, readResp(t, br, "POST")); got != tt.want {
				t.Fatalf("got %.40q, want %.40q", got, tt.want)
			}
			// The same connection carries the next request.
			write(t, c, "GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
			if got := readBody(t, readResp(t, br, "GET")); got != "next" {
				t.Fatalf("next request: %q", got)
			}
		})
	}
	// And through net/http's client.
	t.Run("net/http client", func(t *testing.T) {
		client := ts.client(t)
		for i := 0; i < 3; i++ {
			resp, err := client.Post("http://"+ts.addr+"/echo", "text/plain", strings.NewReader("abc"))
			if err != nil {
				t.Fatal(err)
			}
			if got := readBody(t, resp); got != "3:abc" {
				t.Fatalf("got %q", got)
			}
		}
	})
}

// 5 (Expect). 100 Continue is sent only when the handler reads the body.
func TestExpectContinue(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	ts := startServer(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Expect") != "" {
			http.Error(w, "Expect header passed to handler", 500)
			return
		}
		switch r.URL.Path {
		case "/read":
			started <- struct{}{}
			<-release
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "got %s", b)
		case "/refuse":
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, "denied")
		}
	})}, nil)

	t.Run("read", func(t *testing.T) {
		c, br := ts.dial(t)
		write(t, c, "POST /read HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
		<-started
		// The handler runs but has not read: nothing may have been sent. (A short read
		// window: it proves absence, it does not order anything.)
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if b, err := br.Peek(1); err == nil {
			t.Fatalf("server sent %q before the handler read the body", b)
		}
		c.SetReadDeadline(time.Now().Add(ioTimeout))
		close(release)
		line, err := br.ReadString('\n')
		if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
			t.Fatalf("interim status line %q, %v", line, err)
		}
		if blank, err := br.ReadString('\n'); err != nil || blank != "\r\n" {
			t.Fatalf("after 100 Continue: %q, %v", blank, err)
		}
		write(t, c, "hello")
		resp := readResp(t, br, "POST")
		if resp.StatusCode != 200 {
			t.Fatalf("final status %d", resp.StatusCode)
		}
		if got := readBody(t, resp); got != "got hello" {
			t.Fatalf("final body %q", got)
		}
		// The body was read: the connection stays.
		write(t, c, "POST /refuse HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
		if resp := readResp(t, br, "POST"); resp.StatusCode != 403 {
			t.Fatalf("next request: %d", resp.StatusCode)
		}
	})

	t.Run("refuse", func(t *testing.T) {
		c, br := ts.dial(t)
		write(t, c, "POST /refuse HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n")
		resp := readResp(t, br, "POST")
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("status %d, want 403 (no 100 Continue first)", resp.StatusCode)
		}
		if got := readBody(t, resp); got != "denied" {
			t.Fatalf("body %q", got)
		}
		if !resp.Close {
			t.Errorf("response to an unread Expect body lacks Connection: close (header %q)", resp.Header.Get("Connection"))
		}
		expectEOF(t, c, br, ioTimeout)
	})

	t.Run("net/http client", func(t *testing.T) {
		tr := &http.Transport{ExpectContinueTimeout: ioTimeout}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("POST", "http://"+ts.addr+"/refuse", strings.NewReader("body-not-wanted"))
		req.Header.Set("Expect", "100-continue")
		resp, err := (&http.Client{Transport: tr, Timeout: ioTimeout}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 403 || readBody(t, resp) != "denied" {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
}

// 6. The connection closes when the client asks, or for HTTP/1.0 without keep-alive.
func TestConnectionClose(t *testing.T) {
	tests := []struct {
		name      string
		req       string
		wantConn  string // the response's Connection header
		wantClose bool
		body      string // handler writes this
	}{
		{"HTTP/1.1 Connection: close", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "close", true, "x"},
		{"HTTP/1.1 Connection: close, big body", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "close", true, strings.Repeat("y", 5000)},
		{"HTTP/1.0 plain", "GET / HTTP/1.0\r\n\r\n", "close", true, "x"},
		{"HTTP/1.0 big body", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "close", true, strings.Repeat("y", 5000)},
		{"HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "keep-alive", false, "x"},
		{"HTTP/1.1 default", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", "", false, "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, tt.body)
			})}, nil)
			c, br, rec := ts.dialTee(t)
			write(t, c, tt.req)
			resp := readResp(t, br, "GET")
			if got := readBody(t, resp); got != tt.body {
				t.Fatalf("body %d bytes, want %d", len(got), len(tt.body))
			}
			if tt.wantConn != "" && !hasHeaderLine(rec.Bytes(), "Connection: "+tt.wantConn) {
				t.Errorf("no Connection: %s in %.200q", tt.wantConn, rec.Bytes())
			}
			if tt.wantConn == "" && bytes.Contains(bytes.ToLower(rec.Bytes()), []byte("\r\nconnection:")) {
				t.Errorf("unexpected Connection header in %.200q", rec.Bytes())
			}
			if resp.Close != tt.wantClose {
				t.Errorf("resp.Close = %v, want %v", resp.Close, tt.wantClose)
			}
			if tt.wantClose {
				expectEOF(t, c, br, ioTimeout)
				return
			}
			write(t, c, strings.Replace(tt.req, "GET / ", "GET /again ", 1))
			if got := readBody(t, readResp(t, br, "GET")); got != tt.body {
				t.Fatalf("second request body %q", got)
			}
		})
	}
}

// 7. Flush streams: the client gets "a" while the handler still waits to write "b".
func TestFlushStreams(t *testing.T) {
	clientGotA := make(chan struct{})
	ts := startServer(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "a")
		w.(http.Flusher).Flush()
		select {
		case <-clientGotA:
		case <-time.After(ioTimeout):
			return // the test fails on its own
		}
		io.WriteString(w, "b")
	})}, nil)
	tests := []struct {
		name string
		get  func(t *testing.T) *http.Response
	}{
		{"raw", func(t *testing.T) *http.Response {
			c, br := ts.dial(t)
			write(t, c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
			return readResp(t, br, "GET")
		}},
		{"net/http client", func(t *testing.T) *http.Response {
			resp, err := ts.client(t).Get("http://" + ts.addr + "/")
			if err != nil {
				t.Fatal(err)
			}
			return resp
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := tt.get(t)
			defer resp.Body.Close()
			if fmt.Sprint(resp.TransferEncoding) != "[chunked]" {
				t.Fatalf("TransferEncoding %v, want chunked", resp.TransferEncoding)
			}
			buf := make([]byte, 10)
			n, err := resp.Body.Read(buf)
			if err != nil || string(buf[:n]) != "a" {
				t.Fatalf("first read %q, %v; want \"a\"", buf[:n], err)
			}
			clientGotA <- struct{}{}
			rest, err := io.ReadAll(resp.Body)
			if err != nil || string(rest) != "b" {
				t.Fatalf("rest %q, %v; want \"b\"", rest, err)
			}
		})
	}
}

// 8. Hijack: the handler owns the conn, and bytes sent behind the request are not lost.
func TestHijack(t *testing.T) {
	handlerDone := make(chan error, 1)
	ts := startServer(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			handlerDone <- err
			return
		}
		defer conn.Close()
		if _, _, err := w.(http.Hijacker).Hijack(); err != http.ErrHijacked {
			handlerDone <- fmt.Errorf("second Hijack: %v", err)
			return
		}
		if _, err := w.Write([]byte("x")); err != http.ErrHijacked {
			handlerDone <- fmt.Errorf("Write after Hijack: %v", err)
			return
		}
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		if err := brw.Flush(); err != nil {
			handlerDone <- err
			return
		}
		// Echo until the client leaves; the safety deadline bounds it.
		conn.SetDeadline(time.Now().Add(ioTimeout))
		_, err = io.Copy(conn, brw.Reader)
		handlerDone <- err
	})}, nil)
	c, br := ts.dial(t)
	write(t, c, "GET /upgrade HTTP/1.1\r\nHost: a\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nearly-bytes")
	resp := readResp(t, br, "GET")
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := make([]byte, len("early-bytes"))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "early-bytes" {
		t.Fatalf("echo of bytes sent with the request: %q, %v", got, err)
	}
	for i := 0; i < 3; i++ {
		msg := fmt.Sprintf("message-%d", i)
		write(t, c, msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
			t.Fatalf("echo %q, %v", got, err)
		}
	}
	c.(*net.TCPConn).CloseWrite()
	if err := <-handlerDone; err != nil {
		t.Fatalf("handler: %v", err)
	}
	expectEOF(t, c, br, ioTimeout)
}

// 9. Panics: ErrAbortHandler cuts the response short; other panics are logged too.
func TestHandlerPanic(t *testing.T) {
	part := strings.Repeat("p", 3000)
	logBuf := &syncBuffer{}
	ts := startServer(t, &Server{
		ErrorLog: log.New(logBuf, "", 0),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/abort":
				io.WriteString(w, part) // over holdBack: chunked
				w.(http.Flusher).Flush()
				panic(http.ErrAbortHandler)
			case "/abort-small":
				io.WriteString(w, "held back")
				panic(http.ErrAbortHandler)
			case "/panic":
				panic("boom from handler")
			}
		}),
	}, nil)

	t.Run("ErrAbortHandler mid-body", func(t *testing.T) {
		c, br := ts.dial(t)
		write(t, c, "GET /abort HTTP/1.1\r\nHost: a\r\n\r\n")
		resp := readResp(t, br, "GET")
		if fmt.Sprint(resp.TransferEncoding) != "[chunked]" {
			t.Fatalf("TransferEncoding %v", resp.TransferEncoding)
		}
		b, err := io.ReadAll(resp.Body)
		if err != io.ErrUnexpectedEOF {
			t.Fatalf("body read error %v, want io.ErrUnexpectedEOF (no terminating chunk)", err)
		}
		if string(b) != part {
			t.Fatalf("got %d body bytes, want the %d written", len(b), len(part))
		}
		expectEOF(t, c, br, ioTimeout)
	})
	t.Run("ErrAbortHandler before commit", func(t *testing.T) {
		c, br := ts.dial(t)
		write(t, c, "GET /abort-small HTTP/1.1\r\nHost: a\r\n\r\n")
		expectEOF(t, c, br, ioTimeout) // nothing at all, not a truncated-but-framed response
	})
	if s := logBuf.String(); s != "" {
		t.Errorf("ErrAbortHandler was logged: %q", s)
	}
	t.Run("ordinary panic", func(t *testing.T) {
		c, br := ts.dial(t)
		write(t, c, "GET /panic HTTP/1.1\r\nHost: a\r\n\r\n")
		expectEOF(t, c, br, ioTimeout)
		s := logBuf.String()
		if !strings.Contains(s, "h1server: panic serving 127.0.0.1:") || !strings.Contains(s, "boom from handler") {
			t.Fatalf("log %q lacks the panic", s)
		}
		if !strings.Contains(s, "goroutine ") {
			t.Errorf("log lacks the stack: %q", s)
		}
	})
}

// 10. Timeouts: a stalled request head and an idle keep-alive conn are closed.
func TestTimeouts(t *testing.T) {
	tests := []struct {
		name string
		srv  *Server
		run  func(t *testing.T, c net.Conn, br *bufio.Reader)
		// want400 is set where net/http too answers 400 before closing: at the deadline
		// the partial request line reaches the parser, which finds it malformed.
		want400 bool
	}{
		{
			name:    "ReadHeaderTimeout on half a request line",
			srv:     &Server{ReadHeaderTimeout: 200 * time.Millisecond},
			want400: true,
			run: func(t *testing.T, c net.Conn, br *bufio.Reader) {
				write(t, c, "GET /slo")
			},
		},
		{
			name: "ReadHeaderTimeout on half the headers of a second request",
			srv:  &Server{ReadHeaderTimeout: 200 * time.Millisecond, IdleTimeout: time.Minute},
			run: func(t *testing.T, c net.Conn, br *bufio.Reader) {
				write(t, c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
				readBody(t, readResp(t, br, "GET"))
				write(t, c, "GET / HTTP/1.1\r\nHost: a\r\n")
			},
		},
		{
			name: "IdleTimeout after a response",
			srv:  &Server{ReadHeaderTimeout: time.Minute, IdleTimeout: 200 * time.Millisecond},
			run: func(t *testing.T, c net.Conn, br *bufio.Reader) {
				write(t, c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
				readBody(t, readResp(t, br, "GET"))
			},
		},
		{
			name: "ReadHeaderTimeout bounds a silent new conn",
			srv:  &Server{ReadHeaderTimeout: 200 * time.Millisecond, IdleTimeout: time.Minute},
			run:  func(t *testing.T, c net.Conn, br *bufio.Reader) {},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
			ts := startServer(t, tt.srv, nil)
			c, br := ts.dial(t)
			tt.run(t, c, br)
			if tt.want400 {
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				resp := readResp(t, br, "GET")
				body := readBody(t, resp)
				if resp.StatusCode != 400 || !resp.Close || !strings.Contains(body, "malformed HTTP request") {
					t.Fatalf("status %d close %v body %q", resp.StatusCode, resp.Close, body)
				}
			}
			expectEOF(t, c, br, 5*time.Second)
		})
	}
}

// 11. A client that leaves cancels its bodyless request's context.
func TestClientDisconnectCancels(t *testing.T) {
	started := make(chan struct{})
	result := make(chan error, 1)
	ts := startServer(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		select {
		case <-r.Context().Done():
			result <- nil
		case <-time.After(ioTimeout):
			result <- errors.New("request context not cancelled after the client left")
		}
	})}, nil)
	c, _ := ts.dial(t)
	write(t, c, "GET /wait HTTP/1.1\r\nHost: a\r\n\r\n")
	<-started
	c.Close()
	if err := <-result; err != nil {
		t.Fatal(err)
	}
}

// 11 (converse). A client that stays does not cancel a slow handler; a pipelined request
// behind it is served afterwards.
func TestSlowHandlerNotCancelled(t *testing.T) {
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	ts := startServer(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		if err := r.Context().Err(); err != nil {
			io.WriteString(w, "cancelled")
			return
		}
		io.WriteString(w, r.URL.Path)
	})}, nil)
	c, br := ts.dial(t)
	write(t, c, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n")
	<-started
	// Let the watcher arm and fire (it starts 50 ms into the request): wait for more than
	// that by waiting for a read that must time out.
	c.SetReadDeadline(time.Now().Add(2 * watchAfter))
	if _, err := br.Peek(1); err == nil {
		t.Fatal("response before the handler was released")
	}
	c.SetReadDeadline(time.Now().Add(ioTimeout))
	close(release)
	for _, want := range []string{"/slow", "/next"} {
		if got := readBody(t, readResp(t, br, "GET")); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
}

// 12. Shutdown: graceful, then forced.
func TestShutdown(t *testing.T) {
	t.Run("graceful", func(t *testing.T) {
		started := make(chan struct{}, 1)
		release := make(chan struct{})
		srv := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/block" {
				started <- struct{}{}
				<-release
			}
			io.WriteString(w, "done "+r.URL.Path)
		})}
		ts := startServer(t, srv, nil)

		idle, idleBR := ts.dial(t)
		write(t, idle, "GET /idle HTTP/1.1\r\nHost: a\r\n\r\n")
		if resp := readResp(t, idleBR, "GET"); readBody(t, resp) != "done /idle" || resp.Close {
			t.Fatal("idle conn setup")
		}

		busy, busyBR, busyRec := ts.dialTee(t)
		write(t, busy, "GET /block HTTP/1.1\r\nHost: a\r\n\r\n")
		<-started

		shutdownErr := make(chan error, 1)
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		defer cancel()
		go func() { shutdownErr <- srv.Shutdown(ctx) }()

		// The idle conn goes while the busy one is still held.
		expectEOF(t, idle, idleBR, 5*time.Second)
		select {
		case err := <-shutdownErr:
			t.Fatalf("Shutdown returned %v with a request in progress", err)
		default:
		}

		close(release)
		resp := readResp(t, busyBR, "GET")
		if got := readBody(t, resp); got != "done /block" {
			t.Fatalf("in-progress response %q", got)
		}
		if !resp.Close || !hasHeaderLine(busyRec.Bytes(), "Connection: close") {
			t.Errorf("in-progress response lacks Connection: close: %q", busyRec.Bytes())
		}
		expectEOF(t, busy, busyBR, 5*time.Second)
		if err := <-shutdownErr; err != nil {
			t.Fatalf("Shutdown: %v", err)
		}

		// A conn handed over after Shutdown is refused and closed.
		a, b := net.Pipe()
		defer b.Close()
		if err := srv.ServeConn(context.Background(), a, nil); err != ErrServerClosed {
			t.Fatalf("ServeConn after Shutdown: %v", err)
		}
		if _, err := b.Write([]byte("x")); err == nil {
			t.Fatal("conn handed over after Shutdown not closed")
		}
	})

	t.Run("ctx expires", func(t *testing.T) {
		started := make(chan struct{}, 1)
		release := make(chan struct{})
		defer close(release)
		srv := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			started <- struct{}{}
			<-release
			io.WriteString(w, "late")
		})}
		ts := startServer(t, srv, nil)
		busy, busyBR := ts.dial(t)
		write(t, busy, "GET /block HTTP/1.1\r\nHost: a\r\n\r\n")
		<-started
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if err := srv.Shutdown(ctx); err != context.DeadlineExceeded {
			t.Fatalf("Shutdown: %v, want context.DeadlineExceeded", err)
		}
		expectEOF(t, busy, busyBR, 5*time.Second)
	})
}

// 13. CR and LF in a response header value cannot inject headers.
func TestResponseHeaderInjection(t *testing.T) {
	ts := startServer(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Value", "v\r\nX-Injected: 1")
		w.Header().Set("X-Lf", "w\nX-Injected: 2")
		w.Header()["Bad Name\r\nX-Injected"] = []string{"3"}
		io.WriteString(w, "ok")
	})}, nil)
	raw := ts.rawExchange(t, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	head, body := splitResponse(t, raw)
	if string(body) != "ok" {
		t.Errorf("body %q", body)
	}
	if strings.Contains(strings.ToLower(head), "\nx-injected") {
		t.Errorf("injected header on the wire: %q", head)
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := resp.Header["X-Injected"]; ok {
		t.Errorf("client sees X-Injected: %q", v)
	}
	if got := resp.Header.Get("X-Value"); got != "v  X-Injected: 1" {
		t.Errorf("X-Value %q", got)
	}
	if got := resp.Header.Get("X-Lf"); got != "w X-Injected: 2" {
		t.Errorf("X-Lf %q", got)
	}
}

// TLS: req.TLS is set, keep-alive works, and an error response survives the TLS close.
func TestTLS(t *testing.T) {
	cert, pool := selfSignedCert(t)
	seen := make(chan *tls.ConnectionState, 4)
	ts := startServer(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.TLS
		io.WriteString(w, "secure "+r.URL.Path)
	})}, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})

	t.Run("net/http client", func(t *testing.T) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}}}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr, Timeout: ioTimeout}
		for i := 0; i < 2; i++ {
			resp, err := client.Get("https://" + ts.addr + "/x")
			if err != nil {
				t.Fatal(err)
			}
			if got := readBody(t, resp); got != "secure /x" {
				t.Fatalf("body %q", got)
			}
			if resp.TLS == nil {
				t.Fatal("client: not TLS")
			}
			st := <-seen
			if st == nil {
				t.Fatal("req.TLS is nil")
			}
			if !st.HandshakeComplete || st.Version < tls.VersionTLS12 || st.NegotiatedProtocol != "http/1.1" {
				t.Errorf("req.TLS: complete %v version %x proto %q", st.HandshakeComplete, st.Version, st.NegotiatedProtocol)
			}
		}
		if n := ts.accepts.Load(); n != 1 {
			t.Errorf("%d TLS connections for 2 keep-alive requests", n)
		}
	})

	t.Run("bad request over TLS", func(t *testing.T) {
		c, err := tls.Dial("tcp", ts.addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(ioTimeout))
		write(t, c, "GARBAGE\r\n\r\n")
		resp := readResp(t, bufio.NewReader(c), "GET")
		if resp.StatusCode != 400 || !resp.Close {
			t.Fatalf("status %d close %v", resp.StatusCode, resp.Close)
		}
		if body := readBody(t, resp); !strings.Contains(body, "malformed HTTP request") {
			t.Fatalf("body %q", body)
		}
	})
}

// A reader holding sniffed bytes passed to ServeConn is read before the conn.
func TestServeConnReadAhead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s", r.URL.Path, b)
	})}
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		br := bufio.NewReader(c)
		if _, err := br.Peek(3); err != nil { // sniff, as the proxy does
			served <- err
			c.Close()
			return
		}
		served <- srv.ServeConn(context.Background(), c, br)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(ioTimeout))
	cbr := bufio.NewReader(c)
	write(t, c, "POST /sniffed HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
	if got := readBody(t, readResp(t, cbr, "POST")); got != "/sniffed abc" {
		t.Fatalf("first: %q", got)
	}
	write(t, c, "GET /second HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	if got := readBody(t, readResp(t, cbr, "GET")); got != "/second " {
		t.Fatalf("second: %q", got)
	}
	if err := <-served; err != nil {
		t.Fatalf("ServeConn: %v", err)
	}
}

func selfSignedCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "h1server test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// A handler that ignores a request body too large to drain (over 256 KiB) gets its response
// with Connection: close, and the connection then ends; a small ignored body is drained and the
// connection stays.
func TestUnreadBodyTooLargeAnnouncesClose(t *testing.T) {
	ts := startServer(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "refused")
	})}, nil)
	c, br, rec := ts.dialTee(t)
	const size = 300 << 10
	// The body is sent from another goroutine: the server reads (drains) 256 KiB of it before
	// answering, more than the socket buffers may hold.
	sent := make(chan error, 1)
	go func() {
		_, err := io.WriteString(c, fmt.Sprintf("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", size)+strings.Repeat("z", size))
		sent <- err
	}()
	resp := readResp(t, br, "POST")
	if got := readBody(t, resp); got != "refused" {
		t.Fatalf("body %q", got)
	}
	if !resp.Close || !hasHeaderLine(rec.Bytes(), "Connection: close") {
		t.Fatalf("want Connection: close, got %.300q", rec.Bytes())
	}
	expectEOF(t, c, br, ioTimeout)
	c.Close()
	<-sent
}

// A client that sends a request and then stops reading is cut off after SendTimeout: the
// handler's write fails and the connection is closed, instead of both being held forever.
func TestSendTimeout(t *testing.T) {
	writeErr := make(chan error, 1)
	ts := startServer(t, &Server{SendTimeout: 200 * time.Millisecond, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := bytes.Repeat([]byte("s"), 64<<10)
		for i := 0; i < 4096; i++ { // 256 MiB at most: far more than socket buffers hold
			if _, err := w.Write(chunk); err != nil {
				writeErr <- err
				return
			}
		}
		writeErr <- nil
	})}, nil)
	c, _ := ts.dial(t)
	c.(*net.TCPConn).SetReadBuffer(4 << 10)
	write(t, c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	select {
	case err := <-writeErr:
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("handler's write: %v, want a timeout", err)
		}
	case <-time.After(ioTimeout):
		t.Fatal("a client that stopped reading held the handler")
	}
}

// A bodyless request keeps its header deadline during the handler (no deadline change per
// request); a handler that outlives it must still learn that the client left, and must not be
// cut off while the client stays.
func TestHandlerOutlivesHeaderDeadline(t *testing.T) {
	const headerTimeout = 100 * time.Millisecond
	started := make(chan struct{}, 2)
	release := make(chan struct{})
	cancelled := make(chan error, 1)
	ts := startServer(t, &Server{ReadHeaderTimeout: headerTimeout, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		switch r.URL.Path {
		case "/stay":
			<-release
			io.WriteString(w, "done")
		case "/leave":
			select {
			case <-r.Context().Done():
				cancelled <- nil
			case <-time.After(ioTimeout):
				cancelled <- errors.New("request context not cancelled after the client left")
			}
		}
	})}, nil)
	// pastDeadline waits, on the client's own read, for longer than the header deadline.
	pastDeadline := func(c net.Conn, br *bufio.Reader) {
		c.SetReadDeadline(time.Now().Add(3 * headerTimeout))
		if _, err := br.Peek(1); err == nil {
			t.Fatal("response before the handler was released")
		}
		c.SetReadDeadline(time.Now().Add(ioTimeout))
	}

	c, br := ts.dial(t)
	write(t, c, "GET /stay HTTP/1.1\r\nHost: a\r\n\r\n")
	<-started
	pastDeadline(c, br)
	close(release)
	if got := readBody(t, readResp(t, br, "GET")); got != "done" {
		t.Fatalf("slow handler's response: %q", got)
	}

	c2, br2 := ts.dial(t)
	write(t, c2, "GET /leave HTTP/1.1\r\nHost: a\r\n\r\n")
	<-started
	pastDeadline(c2, br2)
	c2.Close()
	if err := <-cancelled; err != nil {
		t.Fatal(err)
	}
}
