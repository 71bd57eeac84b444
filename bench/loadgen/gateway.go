package main

// Client modes for the gateway (reverse proxy) scenario, bench/gateway.sh:
//
//	gw-ka     -c 64 connections, HTTP/1.1 keep-alive, back-to-back GET -path
//	          (-post-bytes N: POST with an N-byte JSON body instead, also gw-new)
//	gw-h2     -c 16 HTTP/2 connections x -streams 4 concurrent streams each
//	gw-new    -c 64 workers, each request on a fresh TCP + TLS connection (full
//	          handshake, no session resumption), "Connection: close"
//	gw-probe  retry one HTTP/1.1 and one HTTP/2 request until both work
//	          (with -expect-fail: until the target answers 5xx, and fail on 200)
//	gw-bulk   one connection: a warm-up GET -path, then a timed
//	          GET /bulk?bytes=N (-bytes, default 1 GiB) read to the end into a
//	          discarded 256 KiB buffer; HTTP/1.1, or HTTP/2 with -h2. Prints
//	          mib_s, secs, bytes, lg_cpu_pct (the keys of the CONNECT bench's
//	          bulk mode) and ttfb_ms; the whole run is bounded by -timeout,
//	          at least 60 s (up to 30m allowed)
//
// The client talks TLS straight to -addr (the reverse proxy, or the origin for
// the "direct" baseline) with SNI -sni and "Host: -host". HTTP/1.1 is written
// and parsed by hand on a tls.Conn (no pooling); HTTP/2 uses one
// golang.org/x/net/http2 ClientConn per connection. The work per request is
// the same whichever target answers.

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pires/go-proxyproto"
	"golang.org/x/net/http2"
)

type gwOpts struct {
	postBytes  int
	addr       string
	sni        string
	host       string
	ca         string
	path       string
	curves     string
	conc       int
	streams    int
	duration   time.Duration
	warmup     time.Duration
	maxReqs    int64
	timeout    time.Duration
	verifyMemo bool
	expectFail bool
	h2         bool  // gw-probe: also try HTTP/2; gw-bulk: use HTTP/2
	bytes      int64 // gw-bulk
	label      string
	proxyHdr   string // "", "v1" or "v2": each connection starts with a PROXY header, as a balancer's would
}

func parseGwFlags(mode string, args []string) (*gwOpts, error) {
	o := &gwOpts{}
	defConc := 64
	if mode == "gw-h2" {
		defConc = 16
	}
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	fs.StringVar(&o.addr, "addr", "", "IP:port to connect to (the reverse proxy, or the origin for the direct baseline); loopback only (required)")
	fs.StringVar(&o.sni, "sni", "gw.bench.test", "SNI and the name the server certificate is verified against")
	fs.StringVar(&o.host, "host", "gw.bench.test", "Host header (HTTP/1.1) / :authority (HTTP/2)")
	fs.StringVar(&o.ca, "ca", "", "PEM CA file that signs the server's certificate (required)")
	fs.StringVar(&o.path, "path", "/json", "request path")
	fs.StringVar(&o.curves, "curves", "x25519", "client key exchange groups: x25519 | default | mlkem | p256")
	fs.IntVar(&o.conc, "c", defConc, "connections (gw-ka, gw-h2) or workers (gw-new)")
	fs.IntVar(&o.streams, "streams", 4, "concurrent streams per connection (gw-h2)")
	fs.DurationVar(&o.duration, "d", 5*time.Second, "measured duration")
	fs.DurationVar(&o.warmup, "warmup", 1*time.Second, "unmeasured warm-up before -d")
	fs.Int64Var(&o.maxReqs, "max", 2_000_000, "hard cap on requests started")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "per-request deadline (gw-probe: total time to wait)")
	fs.BoolVar(&o.verifyMemo, "verify-memo", true, "verify each distinct certificate chain once and memoise it (the handshake signature is still checked every time)")
	fs.BoolVar(&o.expectFail, "expect-fail", false, "gw-probe: succeed when the target answers a 5xx status (negative control: proxy pointed at a wrong origin CA); a 200 is an error")
	fs.BoolVar(&o.h2, "h2", mode == "gw-probe", "gw-probe: also require one HTTP/2 request to work (default true); gw-bulk: HTTP/2 instead of HTTP/1.1 (default false)")
	fs.Int64Var(&o.bytes, "bytes", 1<<30, "gw-bulk: bytes to fetch with GET /bulk?bytes=N")
	fs.StringVar(&o.label, "label", "", "label echoed in the RESULT line")
	fs.IntVar(&o.postBytes, "post-bytes", 0, "gw-ka, gw-new: send POST with a JSON body of this many bytes (Content-Length) instead of GET")
	fs.StringVar(&o.proxyHdr, "proxy-header", "", "v1 or v2: start every connection with a PROXY protocol header naming the client's own address, as a balancer in front would")
	fs.Parse(args)
	if o.addr == "" || o.ca == "" {
		return nil, errors.New("-addr and -ca are required")
	}
	if err := mustLoopback(o.addr); err != nil {
		return nil, err
	}
	if o.conc < 1 || o.conc > 10000 || o.streams < 1 || o.streams > 1000 {
		return nil, errors.New("-c or -streams out of range")
	}
	maxTimeout := 5 * time.Minute
	if mode == "gw-bulk" {
		maxTimeout = 30 * time.Minute // the whole transfer, not one small request
	}
	if o.duration > 10*time.Minute || o.warmup > time.Minute || o.timeout <= 0 || o.timeout > maxTimeout {
		return nil, fmt.Errorf("-d must be <= 10m, -warmup <= 1m, -timeout in (0, %v]", maxTimeout)
	}
	if o.bytes < 1 || o.bytes > maxBulk {
		return nil, fmt.Errorf("-bytes must be 1..%d (the origin's limit)", int64(maxBulk))
	}
	if o.proxyHdr != "" && o.proxyHdr != "v1" && o.proxyHdr != "v2" {
		return nil, errors.New("-proxy-header must be v1 or v2")
	}
	if !strings.HasPrefix(o.path, "/") {
		return nil, errors.New("-path must start with /")
	}
	if o.postBytes < 0 || o.postBytes > 1<<20 || o.postBytes > 0 && mode != "gw-ka" && mode != "gw-new" {
		return nil, errors.New("-post-bytes must be 0..1048576, and is for gw-ka and gw-new")
	}
	return o, nil
}

// statusErr is a complete HTTP response with a status other than 200.
type statusErr struct{ code int }

func (e statusErr) Error() string { return fmt.Sprintf("status %d", e.code) }

type gwClient struct {
	o      *gwOpts
	tls1   *tls.Config // ALPN http/1.1
	tls2   *tls.Config // ALPN h2
	reqKA  []byte
	reqNew []byte
	h2req  *http.Request
	h2tr   *http2.Transport

	conns    atomic.Int64 // TLS connections opened
	bodySize atomic.Int64 // body bytes of the last good response
	infoMu   sync.Mutex
	info     map[string]string // ALPN -> "TLS_1.3/X25519/TLS_AES_128_GCM_SHA256"
}

func newGwClient(o *gwOpts) (*gwClient, error) {
	curves, err := curvePrefs(o.curves)
	if err != nil {
		return nil, err
	}
	roots, err := loadPool(o.ca)
	if err != nil {
		return nil, err
	}
	hdr := "Host: " + o.host + "\r\nUser-Agent: fixedgate-bench-loadgen\r\nAccept: application/json\r\n"
	method, body := "GET", ""
	if o.postBytes > 0 {
		method, body = "POST", strings.Repeat("x", o.postBytes)
		if o.postBytes >= 10 {
			body = `{"pad":"` + strings.Repeat("x", o.postBytes-10) + `"}` // o.postBytes long
		}
		hdr += "Content-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n"
	}
	c := &gwClient{
		o:      o,
		tls1:   tlsConfig(roots, o.sni, curves, o.verifyMemo, []string{"http/1.1"}),
		tls2:   tlsConfig(roots, o.sni, curves, o.verifyMemo, []string{"h2"}),
		reqKA:  []byte(method + " " + o.path + " HTTP/1.1\r\n" + hdr + "\r\n" + body),
		reqNew: []byte(method + " " + o.path + " HTTP/1.1\r\n" + hdr + "Connection: close\r\n\r\n" + body),
		h2tr:   &http2.Transport{DisableCompression: true},
		info:   map[string]string{},
	}
	c.h2req, err = http.NewRequest(http.MethodGet, "https://"+o.host+o.path, nil)
	if err != nil {
		return nil, err
	}
	c.h2req.Header.Set("User-Agent", "fixedgate-bench-loadgen")
	c.h2req.Header.Set("Accept", "application/json")
	return c, nil
}

// dial opens TCP + TLS with the given config and checks the negotiated ALPN.
func (c *gwClient) dial(cfg *tls.Config, wantALPN string, deadline time.Time) (net.Conn, *tls.Conn, error) {
	nd := net.Dialer{Deadline: deadline}
	raw, err := nd.Dial("tcp", c.o.addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dial: %w", err)
	}
	raw.SetDeadline(deadline)
	if c.o.proxyHdr != "" {
		v := byte(1)
		if c.o.proxyHdr == "v2" {
			v = 2
		}
		if _, err := proxyproto.HeaderProxyFromAddrs(v, raw.LocalAddr(), raw.RemoteAddr()).WriteTo(raw); err != nil {
			raw.Close()
			return nil, nil, fmt.Errorf("PROXY header: %w", err)
		}
	}
	tc := tls.Client(raw, cfg)
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return nil, nil, fmt.Errorf("tls: %w", err)
	}
	cs := tc.ConnectionState()
	if cs.NegotiatedProtocol != wantALPN && !(wantALPN == "http/1.1" && cs.NegotiatedProtocol == "") {
		tc.Close()
		return nil, nil, fmt.Errorf("ALPN: server chose %q, want %q", cs.NegotiatedProtocol, wantALPN)
	}
	c.conns.Add(1)
	c.infoMu.Lock()
	if _, ok := c.info[wantALPN]; !ok {
		c.info[wantALPN] = tlsInfo(cs)
	}
	c.infoMu.Unlock()
	return raw, tc, nil
}

func (c *gwClient) checkResp(code int, ctype string, n, clen int64) error {
	if code != http.StatusOK {
		return statusErr{code}
	}
	if !strings.HasPrefix(ctype, "application/json") {
		return fmt.Errorf("content-type %q, want application/json (not the origin's answer?)", ctype)
	}
	if clen >= 0 && n != clen {
		return fmt.Errorf("short body %d/%d", n, clen)
	}
	if n == 0 {
		return errors.New("empty body")
	}
	c.bodySize.Store(n)
	return nil
}

// h1conn is one HTTP/1.1 connection over TLS.
type h1conn struct {
	raw net.Conn
	tc  *tls.Conn
	br  *bufio.Reader
}

func (c *gwClient) openH1(deadline time.Time) (*h1conn, error) {
	raw, tc, err := c.dial(c.tls1, "http/1.1", deadline)
	if err != nil {
		return nil, err
	}
	return &h1conn{raw: raw, tc: tc, br: bufio.NewReaderSize(tc, 4096)}, nil
}

func (h *h1conn) Close() error { return h.tc.Close() }

func (c *gwClient) doH1(h *h1conn, req []byte, deadline time.Time) error {
	h.raw.SetDeadline(deadline)
	if _, err := h.tc.Write(req); err != nil {
		return fmt.Errorf("request write: %w", err)
	}
	resp, err := http.ReadResponse(h.br, nil)
	if err != nil {
		return fmt.Errorf("response: %w", err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("body: %w", err)
	}
	return c.checkResp(resp.StatusCode, resp.Header.Get("Content-Type"), n, resp.ContentLength)
}

// h2conn is one HTTP/2 connection shared by -streams workers; it is
// re-dialled by the first worker that finds it broken.
type h2conn struct {
	mu sync.Mutex
	cc *http2.ClientConn
}

func (c *gwClient) openH2(deadline time.Time) (*http2.ClientConn, error) {
	raw, tc, err := c.dial(c.tls2, "h2", deadline)
	if err != nil {
		return nil, err
	}
	raw.SetDeadline(time.Time{}) // the ClientConn's reader runs for the connection's life
	cc, err := c.h2tr.NewClientConn(tc)
	if err != nil {
		tc.Close()
		return nil, fmt.Errorf("h2 client conn: %w", err)
	}
	return cc, nil
}

func (c *gwClient) doH2(hc *h2conn, deadline time.Time) error {
	hc.mu.Lock()
	cc := hc.cc
	if cc == nil || !cc.CanTakeNewRequest() {
		if cc != nil {
			cc.Close()
		}
		var err error
		if cc, err = c.openH2(deadline); err != nil {
			hc.cc = nil
			hc.mu.Unlock()
			return err
		}
		hc.cc = cc
	}
	hc.mu.Unlock()
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	resp, err := cc.RoundTrip(c.h2req.WithContext(ctx))
	if err != nil {
		hc.mu.Lock()
		if hc.cc == cc {
			cc.Close()
			hc.cc = nil
		}
		hc.mu.Unlock()
		return fmt.Errorf("h2: %w", err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("h2 body: %w", err)
	}
	return c.checkResp(resp.StatusCode, resp.Header.Get("Content-Type"), n, resp.ContentLength)
}

func runGateway(mode string, args []string) error {
	o, err := parseGwFlags(mode, args)
	if err != nil {
		return err
	}
	raiseNofile(65536)
	c, err := newGwClient(o)
	if err != nil {
		return err
	}
	res := newResult(mode, o.label)
	res.set("addr", o.addr)
	res.set("sni", o.sni)
	res.set("curves", o.curves)
	alpn := "http/1.1"
	switch mode {
	case "gw-ka":
		err = c.runKA(res)
	case "gw-h2":
		alpn = "h2"
		err = c.runH2(res)
	case "gw-new":
		err = c.runNew(res)
	case "gw-probe":
		err = c.runProbe(res)
	case "gw-bulk":
		if o.h2 {
			alpn = "h2"
		}
		err = c.runBulk(res)
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		return err
	}
	res.set("conns", c.conns.Load())
	res.set("body", c.bodySize.Load())
	c.infoMu.Lock()
	if mode == "gw-probe" {
		res.set("tls_h1", c.info["http/1.1"])
		res.set("tls_h2", c.info["h2"])
	} else {
		res.set("alpn", alpn)
		res.set("tls", c.info[alpn])
	}
	c.infoMu.Unlock()
	res.set("lg_cpu_ms_total", cpuTime())
	res.print()
	return nil
}

func (c *gwClient) runKA(res *result) error {
	o := c.o
	conns := make([]*h1conn, o.conc)
	if err := openAll(o.conc, func(i int) (err error) {
		conns[i], err = c.openH1(time.Now().Add(o.timeout))
		return err
	}); err != nil {
		closeAll(conns)
		return fmt.Errorf("opening %d keep-alive connections: %w", o.conc, err)
	}
	gwLoad(o, o.conc, res, func(w int, deadline time.Time) error {
		var err error
		if conns[w] == nil {
			if conns[w], err = c.openH1(deadline); err != nil {
				return err
			}
		}
		if err = c.doH1(conns[w], c.reqKA, deadline); err != nil {
			conns[w].Close()
			conns[w] = nil
		}
		return err
	})
	closeAll(conns)
	return nil
}

func (c *gwClient) runH2(res *result) error {
	o := c.o
	conns := make([]*h2conn, o.conc)
	if err := openAll(o.conc, func(i int) error {
		cc, err := c.openH2(time.Now().Add(o.timeout))
		conns[i] = &h2conn{cc: cc}
		return err
	}); err != nil {
		closeH2(conns)
		return fmt.Errorf("opening %d HTTP/2 connections: %w", o.conc, err)
	}
	res.set("streams", o.streams)
	gwLoad(o, o.conc*o.streams, res, func(w int, deadline time.Time) error {
		return c.doH2(conns[w/o.streams], deadline)
	})
	closeH2(conns)
	return nil
}

func (c *gwClient) runNew(res *result) error {
	gwLoad(c.o, c.o.conc, res, func(w int, deadline time.Time) error {
		h, err := c.openH1(deadline)
		if err != nil {
			return err
		}
		err = c.doH1(h, c.reqNew, deadline)
		h.Close()
		return err
	})
	return nil
}

// runProbe retries until the target answers (or, with -expect-fail, until it
// answers 5xx). It is the readiness check and the negative control.
func (c *gwClient) runProbe(res *result) error {
	o := c.o
	until := time.Now().Add(o.timeout)
	var last error
	for tries := 1; ; tries++ {
		// A proxy that cannot reach a backend may retry for a few seconds before its 5xx
		// (haproxy: ~3 s), so give one attempt up to 10 s.
		deadline := time.Now().Add(10 * time.Second)
		if deadline.After(until) {
			deadline = until
		}
		h, err := c.openH1(deadline)
		if err == nil {
			err = c.doH1(h, c.reqNew, deadline)
			h.Close()
		}
		if o.expectFail {
			var se statusErr
			switch {
			case err == nil:
				return errors.New("expected a 5xx (negative control) but the target answered 200 with the origin's body")
			case errors.As(err, &se) && se.code >= 500:
				res.set("tries", tries)
				res.set("status", se.code)
				return nil
			}
		} else if err == nil && o.h2 {
			var cc *http2.ClientConn
			if cc, err = c.openH2(deadline); err == nil {
				err = c.doH2(&h2conn{cc: cc}, deadline)
				cc.Close()
			}
		}
		if err == nil && !o.expectFail {
			res.set("tries", tries)
			res.set("status", 200)
			return nil
		}
		last = err
		if time.Now().Add(200 * time.Millisecond).After(until) {
			return fmt.Errorf("not ready after %d tries: %w", tries, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// runBulk (gw-bulk): one TLS connection, a warm-up GET -path on it, then the
// timed GET /bulk?bytes=N read to the end into a 256 KiB buffer that is thrown
// away. The clock (and the loadgen CPU reading) starts before the request is
// written and stops at the body's last byte. Everything, connection setup and
// warm-up included, must finish within -timeout (at least 60 s, as the CONNECT
// bench's bulk mode: 1 GiB may need more than a per-request timeout).
func (c *gwClient) runBulk(res *result) error {
	o := c.o
	timeout := max(o.timeout, 60*time.Second)
	deadline := time.Now().Add(timeout)
	path := "/bulk?bytes=" + strconv.FormatInt(o.bytes, 10)
	buf := make([]byte, 256<<10)
	var (
		cpu0, cpu1 time.Duration
		ttfb, el   time.Duration
		n          int64
		code       int
		ctype      string
		clen       int64
		berr       error
		framing    = "content-length"
	)
	if !o.h2 {
		h, err := c.openH1(deadline) // the socket's deadline is the whole run's
		if err != nil {
			return err
		}
		defer h.Close()
		if err := c.doH1(h, c.reqKA, deadline); err != nil {
			return fmt.Errorf("warm-up GET %s: %w", o.path, err)
		}
		req := []byte("GET " + path + " HTTP/1.1\r\nHost: " + o.host + "\r\nUser-Agent: fixedgate-bench-loadgen\r\nAccept: */*\r\n\r\n")
		cpu0 = cpuTime()
		t0 := time.Now()
		if _, err := h.tc.Write(req); err != nil {
			return fmt.Errorf("bulk request write: %w", err)
		}
		resp, err := http.ReadResponse(h.br, nil)
		if err != nil {
			return fmt.Errorf("bulk response: %w", err)
		}
		ttfb = time.Since(t0)
		n, berr = readDiscard(resp.Body, buf)
		el = time.Since(t0)
		cpu1 = cpuTime()
		resp.Body.Close()
		code, ctype, clen = resp.StatusCode, resp.Header.Get("Content-Type"), resp.ContentLength
		if len(resp.TransferEncoding) > 0 {
			framing = strings.Join(resp.TransferEncoding, ",")
		} else if clen < 0 {
			framing = "close"
		}
	} else {
		// unlike openH2, the socket keeps the whole run's deadline: it bounds the ClientConn's reader too
		_, tc, err := c.dial(c.tls2, "h2", deadline)
		if err != nil {
			return err
		}
		cc, err := c.h2tr.NewClientConn(tc)
		if err != nil {
			tc.Close()
			return fmt.Errorf("h2 client conn: %w", err)
		}
		hc := &h2conn{cc: cc}
		defer closeH2([]*h2conn{hc})
		if err := c.doH2(hc, deadline); err != nil {
			return fmt.Errorf("warm-up GET %s: %w", o.path, err)
		}
		if hc.cc != cc {
			return errors.New("warm-up: the HTTP/2 connection was replaced")
		}
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+o.host+path, nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", "fixedgate-bench-loadgen")
		req.Header.Set("Accept", "*/*")
		cpu0 = cpuTime()
		t0 := time.Now()
		resp, err := cc.RoundTrip(req)
		if err != nil {
			return fmt.Errorf("bulk h2: %w", err)
		}
		ttfb = time.Since(t0)
		n, berr = readDiscard(resp.Body, buf)
		el = time.Since(t0)
		cpu1 = cpuTime()
		resp.Body.Close()
		code, ctype, clen = resp.StatusCode, resp.Header.Get("Content-Type"), resp.ContentLength
		if clen < 0 {
			framing = "none" // DATA frames until END_STREAM, no content-length
		}
	}
	switch {
	case berr != nil:
		return fmt.Errorf("bulk body after %d bytes: %w", n, berr)
	case code != http.StatusOK:
		return fmt.Errorf("bulk: status %d", code)
	case !strings.HasPrefix(ctype, "application/octet-stream"):
		return fmt.Errorf("bulk: content-type %q, want application/octet-stream (not the origin's answer?)", ctype)
	case n != o.bytes || clen >= 0 && clen != o.bytes:
		return fmt.Errorf("bulk: got %d bytes (content-length %d), want %d", n, clen, o.bytes)
	}
	c.bodySize.Store(n)
	s := el.Seconds()
	res.set("bytes", n)
	res.set("secs", s)
	res.set("mib_s", float64(n)/s/(1<<20))
	res.set("mb_s", float64(n)/s/1e6)
	res.set("ttfb_ms", ttfb)
	res.set("framing", framing)
	res.set("lg_cpu_pct", 100*float64(cpu1-cpu0)/float64(el))
	res.set("ok", 1)
	res.set("ok_total", 2) // the warm-up and the bulk request, as the origin counts them
	res.set("err", 0)
	res.set("err_total", 0)
	return nil
}

// readDiscard reads r to EOF into buf (each read as large as what is there,
// up to len(buf)) and returns the byte count.
func readDiscard(r io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		k, err := r.Read(buf)
		n += int64(k)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func openAll(n int, open func(i int) error) error {
	var wg sync.WaitGroup
	var first atomic.Value
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := open(i); err != nil {
				first.CompareAndSwap(nil, err)
			}
		}()
	}
	wg.Wait()
	if e := first.Load(); e != nil {
		return e.(error)
	}
	return nil
}

func closeAll(conns []*h1conn) {
	for _, h := range conns {
		if h != nil {
			h.Close()
		}
	}
}

func closeH2(conns []*h2conn) {
	for _, h := range conns {
		if h != nil && h.cc != nil {
			h.cc.Close()
		}
	}
}

// gwLoad runs workers that call do back to back for warmup+duration (bounded
// by -max requests started) and records latencies of requests that finish
// inside the measured window.
func gwLoad(o *gwOpts, workers int, res *result, do func(w int, deadline time.Time) error) {
	var (
		started atomic.Int64
		stop    atomic.Bool
		errs    errTally
		allErrs atomic.Int64
		okTotal atomic.Int64
		wg      sync.WaitGroup
		mu      sync.Mutex
		all     []time.Duration
	)
	begin := time.Now()
	measStart := begin.Add(o.warmup)
	end := measStart.Add(o.duration)
	cpu0 := time.Duration(-1)
	cpuTimer := time.AfterFunc(o.warmup, func() { mu.Lock(); cpu0 = cpuTime(); mu.Unlock() })

	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 4096)
			for !stop.Load() && started.Add(1) <= o.maxReqs {
				t0 := time.Now()
				if t0.After(end) {
					break
				}
				err := do(w, t0.Add(o.timeout))
				t1 := time.Now()
				inWindow := !t1.Before(measStart) && !t1.After(end)
				if err != nil {
					allErrs.Add(1)
					if inWindow {
						errs.add(err)
					}
					time.Sleep(10 * time.Millisecond) // don't spin on a dead target
					continue
				}
				okTotal.Add(1)
				if inWindow {
					lat = append(lat, t1.Sub(t0))
				}
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Until(end)):
	}
	stop.Store(true)
	cpuTimer.Stop()
	mu.Lock()
	c0 := cpu0
	mu.Unlock()
	cpu1 := cpuTime()
	elapsed := time.Since(measStart)
	if elapsed > o.duration {
		elapsed = o.duration
	}
	select {
	case <-done:
	case <-time.After(o.timeout + 2*time.Second):
		fmt.Fprintln(os.Stderr, "loadgen: some workers did not finish in time; reporting anyway")
	}

	mu.Lock()
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	lats := all
	mu.Unlock()
	secs := elapsed.Seconds()
	if secs <= 0 {
		secs = 1e-9
	}
	res.set("conc", o.conc)
	res.set("workers", workers)
	res.set("secs", secs)
	res.set("ok", len(lats))
	res.set("ok_total", okTotal.Load())
	res.set("err", errs.count())
	res.set("err_total", allErrs.Load())
	res.set("rps", float64(len(lats))/secs)
	res.set("p50_ms", percentile(lats, 0.50))
	res.set("p90_ms", percentile(lats, 0.90))
	res.set("p99_ms", percentile(lats, 0.99))
	res.set("max_ms", percentile(lats, 1))
	if c0 >= 0 && elapsed > 0 {
		res.set("lg_cpu_pct", 100*float64(cpu1-c0)/float64(elapsed))
	}
	errs.report(o.label + " " + o.addr)
}
