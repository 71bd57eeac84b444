package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// clientOpts are the flags shared by the client modes.
type clientOpts struct {
	proxy      string
	proxyCA    string
	proxySNI   string
	target     string
	originCA   string
	originSNI  string
	curves     string
	conc       int
	duration   time.Duration
	warmup     time.Duration
	maxReqs    int64
	timeout    time.Duration
	bytes      int64
	n          int
	hold       time.Duration
	idleGet    bool
	maxFail    int64
	verifyMemo bool
	label      string
}

func parseClientFlags(mode string, args []string) (*clientOpts, error) {
	o := &clientOpts{}
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	fs.StringVar(&o.proxy, "proxy", "", "proxy URL: http://IP:port (plain CONNECT) or https://IP:port (TLS to the proxy); empty = direct")
	fs.StringVar(&o.proxyCA, "proxy-ca", "", "PEM CA file that signs the https proxy's certificate")
	fs.StringVar(&o.proxySNI, "proxy-sni", "", "name to verify the proxy's certificate against (and send as SNI if not an IP); default: host of -proxy")
	fs.StringVar(&o.target, "target", "127.0.0.1:8443", "origin address (sent in CONNECT; dialled directly when -proxy is empty)")
	fs.StringVar(&o.originCA, "origin-ca", "", "PEM CA file of the origin (required)")
	fs.StringVar(&o.originSNI, "origin-sni", "origin.bench.test", "SNI and verification name for the origin")
	fs.StringVar(&o.curves, "curves", "x25519", "client key exchange groups: x25519 | default (Go's default, X25519MLKEM768 first) | mlkem | p256")
	fs.IntVar(&o.conc, "c", 64, "concurrent workers (newconn, keepalive) or dialers (idle)")
	fs.DurationVar(&o.duration, "d", 10*time.Second, "measured duration (newconn, keepalive)")
	fs.DurationVar(&o.warmup, "warmup", 1*time.Second, "unmeasured warm-up before -d (newconn, keepalive)")
	fs.Int64Var(&o.maxReqs, "max", 2_000_000, "hard cap on requests started (newconn, keepalive)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "per-operation deadline (bulk: whole transfer)")
	fs.Int64Var(&o.bytes, "bytes", 1<<30, "bytes to fetch (bulk)")
	fs.IntVar(&o.n, "n", 5000, "tunnels to open and hold (idle)")
	fs.DurationVar(&o.hold, "hold", 120*time.Second, "longest time to hold the idle tunnels waiting for SIGUSR1/stdin (idle)")
	fs.BoolVar(&o.idleGet, "idle-get", true, "send one GET / in every idle tunnel after the handshake (idle)")
	fs.Int64Var(&o.maxFail, "max-fail", 200, "stop opening tunnels after this many failures (idle)")
	fs.BoolVar(&o.verifyMemo, "verify-memo", true, "verify each distinct certificate chain once and memoise it (the TLS handshake signature is still checked every time); keeps the client's x509 cost out of the measurement")
	fs.StringVar(&o.label, "label", "", "label echoed in the RESULT line")
	fs.Parse(args)
	if o.originCA == "" {
		return nil, errors.New("-origin-ca is required")
	}
	if o.conc < 1 || o.conc > 10000 {
		return nil, errors.New("-c out of range")
	}
	if o.duration > 10*time.Minute || o.warmup > time.Minute {
		return nil, errors.New("-d must be <= 10m and -warmup <= 1m")
	}
	if o.n < 1 || o.n > 60000 {
		return nil, errors.New("-n out of range")
	}
	if o.hold > 30*time.Minute {
		return nil, errors.New("-hold must be <= 30m")
	}
	return o, nil
}

// dialer opens one tunnel: TCP (+ TLS to an https proxy) + CONNECT + TLS to
// the origin. It implements CONNECT by hand over a net.Conn so there is no
// connection pooling anywhere.
type dialer struct {
	proxy     *url.URL // nil: direct
	proxyAddr string
	proxyTLS  *tls.Config
	originTLS *tls.Config
	target    string
	connect   []byte
	timeout   time.Duration

	infoOnce  sync.Once
	proxyInfo string
	orgInfo   string
}

func curvePrefs(s string) ([]tls.CurveID, error) {
	switch strings.ToLower(s) {
	case "x25519":
		return []tls.CurveID{tls.X25519}, nil
	case "default", "":
		return nil, nil
	case "mlkem", "x25519mlkem768":
		return []tls.CurveID{tls.X25519MLKEM768}, nil
	case "p256":
		return []tls.CurveID{tls.CurveP256}, nil
	}
	return nil, fmt.Errorf("unknown -curves %q (want x25519|default|mlkem|p256)", s)
}

func loadPool(file string) (*x509.CertPool, error) {
	pemData, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		return nil, fmt.Errorf("%s: no PEM certificates", file)
	}
	return pool, nil
}

// tlsConfig builds a client config. With memo, chain verification is done
// by hand once per distinct leaf; Go still verifies the CertificateVerify
// signature with the leaf key on every handshake.
func tlsConfig(roots *x509.CertPool, name string, curves []tls.CurveID, memo bool, alpn []string) *tls.Config {
	cfg := &tls.Config{
		RootCAs:            roots,
		ServerName:         name,
		CurvePreferences:   curves,
		MinVersion:         tls.VersionTLS12,
		NextProtos:         alpn,
		ClientSessionCache: nil, // every handshake is a full one
	}
	// An IP as name is not sent as SNI; verification then uses IP SANs.
	if !memo {
		return cfg
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("no peer certificate")
		}
		leaf := cs.PeerCertificates[0]
		key := string(leaf.Raw)
		mu.Lock()
		ok := seen[key]
		mu.Unlock()
		if ok {
			return nil
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: name}); err != nil {
			return err
		}
		mu.Lock()
		seen[key] = true
		mu.Unlock()
		return nil
	}
	return cfg
}

func newDialer(o *clientOpts) (*dialer, error) {
	curves, err := curvePrefs(o.curves)
	if err != nil {
		return nil, err
	}
	if err := mustLoopback(o.target); err != nil {
		return nil, err
	}
	originRoots, err := loadPool(o.originCA)
	if err != nil {
		return nil, err
	}
	d := &dialer{
		target:    o.target,
		timeout:   o.timeout,
		originTLS: tlsConfig(originRoots, o.originSNI, curves, o.verifyMemo, []string{"http/1.1"}),
		connect:   []byte("CONNECT " + o.target + " HTTP/1.1\r\nHost: " + o.target + "\r\nUser-Agent: fixedgate-bench-loadgen\r\n\r\n"),
	}
	if o.proxy == "" {
		return d, nil
	}
	u, err := url.Parse(o.proxy)
	if err != nil {
		return nil, err
	}
	if u.Port() == "" {
		return nil, fmt.Errorf("-proxy %q needs an explicit port", o.proxy)
	}
	if err := mustLoopback(u.Host); err != nil {
		return nil, err
	}
	d.proxy, d.proxyAddr = u, u.Host
	switch u.Scheme {
	case "http":
	case "https":
		if o.proxyCA == "" {
			return nil, errors.New("-proxy https://... needs -proxy-ca")
		}
		roots, err := loadPool(o.proxyCA)
		if err != nil {
			return nil, err
		}
		name := o.proxySNI
		if name == "" {
			name = u.Hostname()
		}
		d.proxyTLS = tlsConfig(roots, name, curves, o.verifyMemo, nil)
	default:
		return nil, fmt.Errorf("-proxy scheme %q: want http or https", u.Scheme)
	}
	return d, nil
}

// prefixConn replays bytes a bufio.Reader read past the CONNECT response.
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func tlsInfo(cs tls.ConnectionState) string {
	return fmt.Sprintf("%s/%s/%s", tls.VersionName(cs.Version), cs.CurveID, tls.CipherSuiteName(cs.CipherSuite))
}

// tunnel is one open connection to the origin (through the proxy or not).
type tunnel struct {
	raw net.Conn  // the TCP socket, for deadlines
	tc  *tls.Conn // TLS to the origin
	br  *bufio.Reader
}

func (t *tunnel) Close() error { return t.tc.Close() }

// open dials one tunnel. The deadline covers the whole setup.
func (d *dialer) open(deadline time.Time) (*tunnel, error) {
	addr := d.target
	if d.proxy != nil {
		addr = d.proxyAddr
	}
	nd := net.Dialer{Deadline: deadline}
	raw, err := nd.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	raw.SetDeadline(deadline)
	var c net.Conn = raw
	var proxyState *tls.ConnectionState
	fail := func(stage string, err error) (*tunnel, error) {
		c.Close()
		return nil, fmt.Errorf("%s: %w", stage, err)
	}
	if d.proxy != nil {
		if d.proxyTLS != nil {
			pt := tls.Client(raw, d.proxyTLS)
			if err := pt.Handshake(); err != nil {
				return fail("proxy tls", err)
			}
			st := pt.ConnectionState()
			proxyState = &st
			c = pt
		}
		if _, err := c.Write(d.connect); err != nil {
			return fail("connect write", err)
		}
		br := bufio.NewReaderSize(c, 512)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil {
			return fail("connect response", err)
		}
		if resp.StatusCode != http.StatusOK {
			return fail("connect", fmt.Errorf("proxy answered %s", resp.Status))
		}
		if n := br.Buffered(); n > 0 {
			extra, _ := br.Peek(n)
			c = &prefixConn{Conn: c, r: io.MultiReader(strings.NewReader(string(extra)), c)}
		}
	}
	tc := tls.Client(c, d.originTLS)
	if err := tc.Handshake(); err != nil {
		return fail("origin tls", err)
	}
	d.infoOnce.Do(func() {
		if proxyState != nil {
			d.proxyInfo = tlsInfo(*proxyState)
		}
		d.orgInfo = tlsInfo(tc.ConnectionState())
	})
	return &tunnel{raw: raw, tc: tc}, nil
}

// get sends one request on the tunnel and reads the whole response.
func (t *tunnel) get(req []byte, deadline time.Time, bufSize int) (int64, error) {
	t.raw.SetDeadline(deadline)
	if _, err := t.tc.Write(req); err != nil {
		return 0, fmt.Errorf("request write: %w", err)
	}
	if t.br == nil {
		t.br = bufio.NewReaderSize(t.tc, bufSize)
	}
	resp, err := http.ReadResponse(t.br, nil)
	if err != nil {
		return 0, fmt.Errorf("response: %w", err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return n, fmt.Errorf("body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return n, fmt.Errorf("origin answered %s", resp.Status)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return n, fmt.Errorf("short body %d/%d", n, resp.ContentLength)
	}
	return n, nil
}

func getRequest(originSNI, path string) []byte {
	return []byte("GET " + path + " HTTP/1.1\r\nHost: " + originSNI + "\r\nUser-Agent: fixedgate-bench-loadgen\r\n\r\n")
}
