package main

// Request smuggling, tried from outside as an attacker would: raw bytes against the real
// binary's gateway door (HTTP/1.1 and HTTP/2 over TLS) and its forward door (absolute-form on
// the plain listener), with a backend that records every request it receives, behind both an
// HTTP/2 and an HTTP/1.1-only backend. And h2spec against the TLS listener.

import (
	"bufio"
	"bytes"
	"context"
	gotls "crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// recorder is a backend (127.0.1.1) that notes every request it receives and whether its body
// arrived whole. It answers 200 with a short body, also to a request that asks to upgrade.
type recorder struct {
	port   int
	caFile string
	mu     sync.Mutex
	seen   []seenRequest
}

type seenRequest struct {
	method, uri string // the request target exactly as received
	complete    bool   // the body was read to its end without error
}

func startRecorder(t *testing.T, h1Only bool) *recorder {
	t.Helper()
	ca := newTestCA(t, "smuggling backend CA")
	rec := &recorder{caFile: filepath.Join(t.TempDir(), "backend-ca.pem")}
	if err := os.WriteFile(rec.caFile, ca.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue([]string{fleetName, "smuggle.test"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	protos := []string{"h2", "http/1.1"}
	if h1Only {
		protos = []string{"http/1.1"}
	}
	ln, err := gotls.Listen("tcp", "127.0.1.1:0", &gotls.Config{Certificates: []gotls.Certificate{cert}, NextProtos: protos})
	if err != nil {
		t.Fatal(err)
	}
	rec.port = ln.Addr().(*net.TCPAddr).Port
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, ErrorLog: quietLog(),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, err := io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
			rec.mu.Lock()
			rec.seen = append(rec.seen, seenRequest{r.Method, r.RequestURI, err == nil})
			rec.mu.Unlock()
			fmt.Fprintf(w, "backend saw %s %s\n", r.Method, r.URL.Path)
		})}
	if h1Only {
		srv.TLSNextProto = map[string]func(*http.Server, *gotls.Conn, http.Handler){}
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return rec
}

// since returns the requests ("METHOD target") that arrived whole since mark, and whether any
// request at all (whole or not) asked for /smuggled.
func (r *recorder) since(mark int) (complete []string, smuggled bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.seen[mark:] {
		if s.complete {
			complete = append(complete, s.method+" "+s.uri)
		}
		smuggled = smuggled || strings.Contains(s.uri, "smuggled")
	}
	return complete, smuggled
}

func (r *recorder) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

// startSmugglingProxy starts the proxy with the gateway route gw.test → the recorder, and a
// forward rule that sends http://smuggle.test:PORT/ upstream as https:// (the absolute-form
// door to the same backend).
func startSmugglingProxy(t *testing.T, h1Only bool, edit func(cfg string, rec *recorder) string) (*proc, *recorder) {
	t.Helper()
	f := newFixture(t)
	rec := startRecorder(t, h1Only)
	f.dns.Set(fleetName, 60, netip.MustParseAddr("127.0.1.1"))
	f.dns.Set("smuggle.test", 60, netip.MustParseAddr("127.0.1.1"))
	p := startGatewayEdit(t, f, &fleet{port: rec.port, caFile: rec.caFile}, "5s", "", func(cfg string) string {
		cfg = strings.Replace(cfg, "  allow:\n", fmt.Sprintf("  allow:\n    - {host: smuggle.test, ports: [%d], upgrade_tls: true}\n", rec.port), 1)
		if edit != nil {
			cfg = edit(cfg, rec)
		}
		return cfg
	})
	return p, rec
}

// door writes request heads for one of the proxy's doors.
type door struct {
	name string
	dial func(t *testing.T) net.Conn
	head func(method, path string) string // request line and the fields that door needs
}

func gatewayDoor(p *proc, proxyCA string) door {
	return door{
		name: "gateway",
		dial: func(t *testing.T) net.Conn {
			t.Helper()
			c, err := gotls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", p.tlsAddr,
				&gotls.Config{ServerName: gwHost, RootCAs: rootsWith(t, proxyCA), NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			return c
		},
		head: func(method, path string) string {
			return method + " " + path + " HTTP/1.1\r\nHost: " + gwHost + "\r\n"
		},
	}
}

func forwardDoor(p *proc, rec *recorder) door {
	authority := fmt.Sprintf("smuggle.test:%d", rec.port)
	return door{
		name: "forward",
		dial: func(t *testing.T) net.Conn {
			t.Helper()
			c, err := net.DialTimeout("tcp", p.plain, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			return c
		},
		head: func(method, path string) string {
			return method + " http://" + authority + path + " HTTP/1.1\r\nHost: " + authority + "\r\n" + authHeader() + "\r\n"
		},
	}
}

// smuggleCase is one attack: the bytes sent on one connection, and the one unambiguous
// reading of them: how many requests the backend receives whole, which statuses the client
// gets, and whether the proxy must close the connection after them (every ambiguous case).
type smuggleCase struct {
	name     string
	raw      func(d door) string
	statuses []int // the responses, in order; a status of 400 also accepts 501 (an encoding refused)
	backend  int   // requests the backend receives whole
	closed   bool
}

// smuggled is the request an attacker hides behind the first one: it must never reach a backend.
func smuggled(d door) string { return d.head("GET", "/smuggled") + "\r\n" }

func smugglingCases() []smuggleCase {
	post := func(d door, fields ...string) string {
		return d.head("POST", "/echo") + strings.Join(fields, "\r\n") + "\r\n\r\n"
	}
	refused := func(name string, raw func(d door) string) smuggleCase {
		return smuggleCase{name: name, raw: raw, statuses: []int{400}, closed: true}
	}
	// clte is the classic CL.TE attack with the Transfer-Encoding line spelled as te: a
	// Content-Length reader sees one request whose body ends after /smuggled; a chunked reader
	// sees an empty body and /smuggled as a second request.
	clte := func(te string) func(d door) string {
		return func(d door) string {
			body := "0\r\n\r\n" + smuggled(d)
			return post(d, fmt.Sprintf("Content-Length: %d", len(body)), te) + body
		}
	}
	return []smuggleCase{
		{name: "control: two pipelined GETs", raw: func(d door) string {
			return d.head("GET", "/one") + "\r\n" + d.head("GET", "/two") + "\r\n"
		}, statuses: []int{200, 200}, backend: 2},
		{name: "control: duplicate identical Content-Length, then a pipelined GET", raw: func(d door) string {
			return post(d, "Content-Length: 5", "Content-Length: 5") + "hello" + d.head("GET", "/two") + "\r\n"
		}, statuses: []int{200, 200}, backend: 2},
		refused("CL.TE", clte("Transfer-Encoding: chunked")),
		refused("TE.CL", func(d door) string {
			chunk := smuggled(d)
			return post(d, "Transfer-Encoding: chunked", "Content-Length: 4") + fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(chunk), chunk)
		}),
		refused("CL.TE, TE with a trailing space", clte("Transfer-Encoding: chunked ")),
		refused("CL.TE, TE with a trailing tab", clte("Transfer-Encoding: chunked\t")),
		refused("CL.TE, TE folded onto a second line", clte("Transfer-Encoding:\r\n chunked")),
		refused("CL.TE, TE after a bare LF", clte("X-A: b\nTransfer-Encoding: chunked")),
		refused("CL.TE, white space before the colon", clte("Transfer-Encoding : chunked")),
		refused("Content-Length with white space before the colon", func(d door) string {
			return post(d, "Content-Length : 5") + "hello" + smuggled(d)
		}),
		refused("HTTP/1.0 with Transfer-Encoding and Content-Length", func(d door) string {
			body := "0\r\n\r\n" + smuggled(d)
			h := strings.Replace(post(d, fmt.Sprintf("Content-Length: %d", len(body)), "Transfer-Encoding: chunked"), "HTTP/1.1\r\n", "HTTP/1.0\r\n", 1)
			return h + body
		}),
		refused("HTTP/1.0 keep-alive with Transfer-Encoding", func(d door) string {
			h := strings.Replace(post(d, "Connection: keep-alive", "Transfer-Encoding: chunked"), "HTTP/1.1\r\n", "HTTP/1.0\r\n", 1)
			return h + "0\r\n\r\n" + smuggled(d)
		}),
		refused("two different Content-Lengths", func(d door) string {
			return post(d, "Content-Length: 5", "Content-Length: 40") + "hello" + smuggled(d)
		}),
		refused("Content-Length as a list", func(d door) string {
			return post(d, "Content-Length: 5, 5") + "hello" + smuggled(d)
		}),
		refused("Content-Length with a sign", func(d door) string {
			return post(d, "Content-Length: +5") + "hello" + smuggled(d)
		}),
		refused("Transfer-Encoding other than chunked", func(d door) string {
			return post(d, "Transfer-Encoding: identity, chunked") + "0\r\n\r\n" + smuggled(d)
		}),
		refused("two Transfer-Encodings", func(d door) string {
			return post(d, "Transfer-Encoding: chunked", "Transfer-Encoding: identity") + "0\r\n\r\n" + smuggled(d)
		}),
		refused("bare LF line ends", func(d door) string {
			return strings.ReplaceAll(d.head("GET", "/one")+"\r\n", "\r\n", "\n") + smuggled(d)
		}),
		refused("bare CR in a field value", func(d door) string {
			return d.head("GET", "/one") + "X-A: b\rTransfer-Encoding: chunked\r\n\r\n" + smuggled(d)
		}),
		refused("obs-fold", func(d door) string {
			return d.head("GET", "/one") + "X-A: b\r\n c\r\n\r\n" + smuggled(d)
		}),
		refused("NUL in a field value", func(d door) string {
			return d.head("GET", "/one") + "X-A: b\x00c\r\n\r\n" + smuggled(d)
		}),
		refused("two Host fields", func(d door) string {
			return d.head("GET", "/one") + "Host: other.test\r\n\r\n" + smuggled(d)
		}),
		refused("chunk size that is not hex", func(d door) string {
			return post(d, "Transfer-Encoding: chunked") + "zz\r\nhello\r\n0\r\n\r\n" + smuggled(d)
		}),
		refused("chunk size that overflows", func(d door) string {
			return post(d, "Transfer-Encoding: chunked") + "fffffffffffffffff1\r\nhello\r\n0\r\n\r\n" + smuggled(d)
		}),
		refused("chunk size line ending in a bare LF", func(d door) string {
			return post(d, "Transfer-Encoding: chunked") + "5\nhello\r\n0\r\n\r\n" + smuggled(d)
		}),
		{name: "pipelined after an upgrade the backend refused", raw: func(d door) string {
			return d.head("GET", "/ws") + "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n" + smuggled(d)
		}, statuses: []int{200}, backend: 1, closed: true},
	}
}

// TestSmugglingBattery sends every case to both HTTP/1.x doors, in front of an HTTP/2 backend
// and of an HTTP/1.1-only one, and holds each to its one unambiguous reading: the backend
// receives exactly the requests that reading has (never /smuggled), the client gets exactly
// its responses, and every ambiguous case ends with the proxy closing the connection.
func TestSmugglingBattery(t *testing.T) {
	for _, h1Only := range []bool{false, true} {
		t.Run(map[bool]string{false: "h2 backend", true: "HTTP/1.1 backend"}[h1Only], func(t *testing.T) {
			p, rec := startSmugglingProxy(t, h1Only, nil)
			for _, d := range []door{gatewayDoor(p, p.caFile), forwardDoor(p, rec)} {
				for _, tc := range smugglingCases() {
					t.Run(d.name+"/"+tc.name, func(t *testing.T) { runSmuggleCase(t, d, rec, tc) })
				}
			}
			if n := metric(t, p, "fixedgate_requests_total", `door="malformed"`, `code="400"`); n == 0 {
				t.Errorf("no refused request counted as fixedgate_requests_total{door=\"malformed\"}")
			}
			if log := p.log(); !strings.Contains(log, `"door":"malformed"`) || !strings.Contains(log, "both Transfer-Encoding and Content-Length") {
				t.Errorf("no summary line with door=malformed and the reason in the log")
			}
		})
	}
}

func runSmuggleCase(t *testing.T, d door, rec *recorder, tc smuggleCase) {
	mark := rec.mark()
	c := d.dial(t)
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second)) // a failsafe: a correct proxy answers at once
	raw := tc.raw(d)
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for i, want := range tc.statuses {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d of %d: %v\nsent %q", i+1, len(tc.statuses), err, raw)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want && !(want == 400 && resp.StatusCode == 501) {
			t.Fatalf("response %d: %d %q, want %d\nsent %q", i+1, resp.StatusCode, b, want, raw)
		}
		if want == 400 && !resp.Close {
			t.Errorf("the 400 does not say Connection: close")
		}
	}
	if tc.closed {
		if b, err := br.ReadByte(); err == nil {
			rest, _ := br.Peek(br.Buffered())
			t.Fatalf("connection still open after the responses; it sent more: %q", append([]byte{b}, rest...))
		} else if ne := (net.Error)(nil); errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection not closed by the proxy")
		}
	} else {
		// Nothing is left unanswered: a sentinel on the same connection is served next.
		io.WriteString(c, d.head("GET", "/sentinel")+"\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("sentinel after the case: %v %v", resp, err)
		}
		resp.Body.Close()
		tc.backend++
	}
	got, sawSmuggled := rec.since(mark)
	if sawSmuggled {
		t.Errorf("the backend received the smuggled request; it received %q", got)
	}
	if len(got) != tc.backend {
		t.Errorf("the backend received %d whole requests %q, want %d", len(got), got, tc.backend)
	}
}

// h2conn is a raw HTTP/2 client on the gateway's TLS listener: it writes frames as given.
type h2conn struct {
	t   *testing.T
	fr  *http2.Framer
	enc *hpack.Encoder
	buf bytes.Buffer
}

func dialGatewayH2(t *testing.T, p *proc) *h2conn {
	t.Helper()
	c, err := gotls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", p.tlsAddr,
		&gotls.Config{ServerName: gwHost, RootCAs: rootsWith(t, p.caFile), NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	h := &h2conn{t: t, fr: http2.NewFramer(c, c)}
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.enc = hpack.NewEncoder(&h.buf)
	io.WriteString(c, http2.ClientPreface)
	h.fr.WriteSettings()
	return h
}

// request sends HEADERS for stream 1 with the usual pseudo-fields (overridden by fields of the
// same name) and the given fields, then body as DATA if any.
func (h *h2conn) request(method string, body []byte, fields ...[2]string) {
	h.buf.Reset()
	pseudo := map[string]string{":method": method, ":scheme": "https", ":authority": gwHost, ":path": "/h2"}
	for _, f := range fields {
		if _, ok := pseudo[f[0]]; ok {
			pseudo[f[0]] = f[1]
		}
	}
	for _, k := range []string{":method", ":scheme", ":authority", ":path"} {
		h.enc.WriteField(hpack.HeaderField{Name: k, Value: pseudo[k]})
	}
	for _, f := range fields {
		if !strings.HasPrefix(f[0], ":") {
			h.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
	}
	h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h.buf.Bytes(), EndHeaders: true, EndStream: body == nil})
	if body != nil {
		h.fr.WriteData(1, true, body)
	}
}

// outcome is what became of stream 1: "status N", "RST_STREAM CODE", "GOAWAY CODE" or "closed".
func (h *h2conn) outcome() string {
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				h.t.Fatalf("no answer: %v", err)
			}
			return "closed"
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if f.StreamID == 1 {
				return "status " + f.PseudoValue("status")
			}
		case *http2.RSTStreamFrame:
			return "RST_STREAM " + f.ErrCode.String()
		case *http2.GoAwayFrame:
			return "GOAWAY " + f.ErrCode.String()
		case *http2.SettingsFrame:
			if !f.IsAck() {
				h.fr.WriteSettingsAck()
			}
		}
	}
}

// TestSmugglingHTTP2 sends HTTP/2 requests that must not be turned into HTTP/1.1 for a backend:
// connection-specific fields, te other than trailers, a content-length the DATA does not keep,
// CR, LF or NUL in a field, bad names and paths. Each gets a stream or connection error
// (PROTOCOL_ERROR), or a 400, and the backend receives none of them whole; the controls are
// served.
func TestSmugglingHTTP2(t *testing.T) {
	p, rec := startSmugglingProxy(t, true, nil) // an HTTP/1.1 backend: the downgrade is the risk
	type f = [2]string
	for _, tc := range []struct {
		name   string
		method string
		body   []byte
		fields []f
		ok     string // a control: served with 200, and the backend receives this request line
	}{
		{"control GET", "GET", nil, nil, "GET /h2"},
		{"control te: trailers", "GET", nil, []f{{"te", "trailers"}}, "GET /h2"},
		{"control POST with content-length", "POST", []byte("hello"), []f{{"content-length", "5"}}, "POST /h2"},
		// A space is not valid in a target, but it cannot split the HTTP/1.1 request line
		// either: it goes upstream escaped.
		{"space in :path, escaped upstream", "GET", nil, []f{{":path", "/a b"}}, "GET /a%20b"},
		{"connection", "GET", nil, []f{{"connection", "keep-alive"}}, ""},
		{"keep-alive", "GET", nil, []f{{"keep-alive", "timeout=5"}}, ""},
		{"proxy-connection", "GET", nil, []f{{"proxy-connection", "keep-alive"}}, ""},
		{"transfer-encoding", "POST", []byte("0\r\n\r\n"), []f{{"transfer-encoding", "chunked"}}, ""},
		{"upgrade", "GET", nil, []f{{"upgrade", "websocket"}}, ""},
		{"te: gzip", "GET", nil, []f{{"te", "gzip"}}, ""},
		{"content-length above the DATA", "POST", []byte("hello"), []f{{"content-length", "10"}}, ""},
		{"content-length below the DATA", "POST", []byte("hello"), []f{{"content-length", "2"}}, ""},
		{"CRLF in a value", "GET", nil, []f{{"x-a", "b\r\ntransfer-encoding: chunked"}}, ""},
		{"LF in a value", "GET", nil, []f{{"x-a", "b\nhost: other.test"}}, ""},
		{"NUL in a value", "GET", nil, []f{{"x-a", "b\x00c"}}, ""},
		{"upper-case name", "GET", nil, []f{{"X-A", "b"}}, ""},
		{"space in a name", "GET", nil, []f{{"x a", "b"}}, ""},
		{"CRLF in :path", "GET", nil, []f{{":path", "/a HTTP/1.1\r\nHost: other.test\r\n\r\nGET /smuggled"}}, ""},
		{"CRLF in :authority", "GET", nil, []f{{":authority", gwHost + "\r\nx: y"}}, ""},
		{"CRLF in :method", "GET", nil, []f{{":method", "GET /smuggled HTTP/1.1\r\n"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mark := rec.mark()
			h := dialGatewayH2(t, p)
			h.request(tc.method, tc.body, tc.fields...)
			got := h.outcome()
			whole, sawSmuggled := rec.since(mark)
			if tc.ok != "" {
				if got != "status 200" || len(whole) != 1 || whole[0] != tc.ok {
					t.Fatalf("got %s, backend received %q; want status 200 and %q", got, whole, tc.ok)
				}
				return
			}
			switch got {
			case "RST_STREAM PROTOCOL_ERROR", "GOAWAY PROTOCOL_ERROR", "status 400", "closed":
			default:
				t.Fatalf("got %s, want a PROTOCOL_ERROR or a 400", got)
			}
			if len(whole) != 0 || sawSmuggled {
				t.Fatalf("the backend received %q", whole)
			}
		})
	}
}

// TestSmugglingALPNSniffing: on a connection that negotiated h2, only the HTTP/2 preface or a
// proxy request line (CONNECT, or an absolute-form target: what Go's Transport sends to an
// https:// proxy) is served; any other bytes close the connection without an answer.
func TestSmugglingALPNSniffing(t *testing.T) {
	p, rec := startSmugglingProxy(t, false, nil)
	dial := func(t *testing.T) net.Conn {
		c, err := gotls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", p.tlsAddr,
			&gotls.Config{ServerName: gwHost, RootCAs: rootsWith(t, p.caFile), NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(30 * time.Second))
		return c
	}
	for _, bad := range []string{"INVALID CONNECTION PREFACE\r\n\r\n", "GET / HTTP/1.1\r\nHost: " + gwHost + "\r\n\r\n", "PRI * HTTP/1.1\r\n\r\n"} {
		c := dial(t)
		io.WriteString(c, bad)
		if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
			t.Errorf("%q: got %q, %v; want the connection closed without an answer", bad, b, err)
		}
	}
	// An absolute-form request through the same kind of connection is served (forward door).
	c := dial(t)
	authority := fmt.Sprintf("smuggle.test:%d", rec.port)
	io.WriteString(c, "GET http://"+authority+"/sniffed HTTP/1.1\r\nHost: "+authority+"\r\n"+authHeader()+"\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("absolute-form request after h2 in ALPN: %v %v", resp, err)
	}
}

// TestLocalhostRefusedByName: CONNECT to localhost and *.localhost, however spelled, is refused
// with 403 by name, before any DNS question, even with allow: {host: "*"}.
func TestLocalhostRefusedByName(t *testing.T) {
	f := newFixture(t)
	p := f.startProxy(t, "")
	before := f.dns.Queries()
	for _, target := range []string{"localhost:443", "LOCALHOST:443", "localhost.:443", "app.localhost:443", "A.LocalHost.:443"} {
		resp, _, _ := rawConnect(t, p.plain, target, authHeader())
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "loopback name") {
			t.Errorf("CONNECT %s: %d %q, want 403 naming the loopback name", target, resp.StatusCode, b)
		}
	}
	if q := f.dns.Queries() - before; q != 0 {
		t.Errorf("%d DNS questions for localhost names, want none", q)
	}
}

// TestH2Spec runs h2spec (HTTP/2 conformance, github.com/summerwind/h2spec; .ci/run installs it)
// against the gateway's TLS listener and requires every case to pass.
func TestH2Spec(t *testing.T) {
	bin, err := exec.LookPath("h2spec")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("h2spec is not installed (.ci/run installs it)")
		}
		t.Skip("h2spec is not installed: go install github.com/summerwind/h2spec/cmd/h2spec@latest")
	}
	// h2spec sends :authority IP:PORT, so a route answers the listener's IP.
	p, _ := startSmugglingProxy(t, false, func(cfg string, rec *recorder) string {
		return strings.Replace(cfg, "routes:\n", fmt.Sprintf("routes:\n  - {host: %q, upstream: \"https://%s:%d\"}\n", ingressIP, fleetName, rec.port), 1)
	})
	host, port, _ := net.SplitHostPort(p.tlsAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-t", "-k", "-h", host, "-p", port, "-o", "5").CombinedOutput()
	m := regexp.MustCompile(`(\d+) tests, (\d+) passed, (\d+) skipped, (\d+) failed`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("h2spec: %v\n%s", err, out)
	}
	t.Logf("h2spec: %s", m[0])
	if m[4] != "0" || m[1] != m[2] {
		i := bytes.Index(out, []byte("Failures:"))
		t.Fatalf("h2spec: %s\n%s", m[0], out[max(i, 0):])
	}
}
