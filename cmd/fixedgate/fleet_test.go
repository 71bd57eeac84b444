package main

// The backend fleet of the gateway tests: real TLS servers on 127.0.1.1–127.0.1.N, one port for
// all, with their own CA, each switchable between healthy, down, flapping and a wrong
// certificate while the test runs.

import (
	"context"
	gotls "crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const fleetName = "fleet.test"

// backendMode is how one backend behaves for new connections.
type backendMode int32

const (
	modeUp       backendMode = iota
	modeDown                 // connections are refused (the listener is closed)
	modeFlap                 // every other connection is accepted and then dropped before any response
	modeWrongTLS             // a certificate from another CA
)

type fleetBackend struct {
	addr  netip.Addr
	mode  atomic.Int32
	hits  atomic.Int64 // requests answered
	conns atomic.Int64 // connections accepted
	open  atomic.Int64 // HTTP connections open now
	mu    sync.Mutex
	ln    net.Listener
	srvs  []*http.Server
}

// fleet is N backends sharing one port.
type fleet struct {
	t        *testing.T
	port     int
	caFile   string
	backends []*fleetBackend
	good     gotls.Certificate
	bad      gotls.Certificate
	handler  http.Handler
	protos   []string // ALPN the backends offer
}

// backendReply is what every backend answers, so tests see where a request landed and how.
type backendReply struct {
	Backend string `json:"backend"`
	Remote  string `json:"remote"`
	SNI     string `json:"sni"`
	Host    string `json:"host"`
	Proto   string `json:"proto"`
	XFF     string `json:"xff"`
	XFP     string `json:"xfp"`
	Proxy   string `json:"proxy_auth"`
}

// startFleet starts n backends offering HTTP/2 and HTTP/1.1; with h1Only, HTTP/1.1 alone.
func startFleet(t *testing.T, n int, h1Only ...bool) *fleet {
	t.Helper()
	ca := newTestCA(t, "e2e fleet CA")
	other := newTestCA(t, "someone else's CA")
	f := &fleet{t: t, caFile: filepath.Join(t.TempDir(), "fleet-ca.pem"), protos: []string{"h2", "http/1.1"}}
	if len(h1Only) > 0 && h1Only[0] {
		f.protos = []string{"http/1.1"}
	}
	if err := os.WriteFile(f.caFile, ca.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	var err error
	if f.good, err = ca.Issue([]string{fleetName}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	if f.bad, err = other.Issue([]string{fleetName}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		b := r.Context().Value(backendKey{}).(*fleetBackend)
		b.hits.Add(1)
		if backendMode(b.mode.Load()) == modeFlap {
			w.Header().Set("Connection", "close") // one request per connection, half of them reset
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(backendReply{
			Backend: b.addr.String(), Remote: r.RemoteAddr, SNI: r.TLS.ServerName, Host: r.Host, Proto: r.Proto,
			XFF: r.Header.Get("X-Forwarded-For"), XFP: r.Header.Get("X-Forwarded-Proto"), Proxy: r.Header.Get("Proxy-Authorization"),
		})
	})
	mux.HandleFunc("/upgrade", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want Upgrade: echo", http.StatusBadRequest)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.Copy(c, brw) // echo until the client closes
	})
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i := range 3 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			rc.Flush()
			// the next event only after the client has read this one: proves flushing
			if r.URL.Query().Get("wait") != "" {
				select {
				case <-r.Context().Done():
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		}
	})
	f.handler = mux
	for i := 1; i <= n; i++ {
		f.backends = append(f.backends, &fleetBackend{addr: netip.AddrFrom4([4]byte{127, 0, 1, byte(i)})})
	}
	// One port free on every backend address.
	for try := 0; ; try++ {
		if try == 20 {
			t.Fatal("no port free on all fleet addresses")
		}
		port := freePort(t, "127.0.1.1")
		ok := true
		for _, b := range f.backends {
			ln, err := net.Listen("tcp", fmt.Sprintf("%s:%d", b.addr, port))
			if err != nil {
				ok = false
				break
			}
			b.ln = ln
		}
		if ok {
			f.port = port
			break
		}
		for _, b := range f.backends {
			if b.ln != nil {
				b.ln.Close()
				b.ln = nil
			}
		}
	}
	for _, b := range f.backends {
		go f.serve(b, b.ln)
	}
	t.Cleanup(func() {
		for _, b := range f.backends {
			b.mu.Lock()
			if b.ln != nil {
				b.ln.Close()
			}
			for _, s := range b.srvs {
				s.Close()
			}
			b.mu.Unlock()
		}
	})
	return f
}

type backendKey struct{}

// serve runs backend b on ln until ln closes: TLS with the certificate its mode says, and the
// flapping behaviour before TLS (the connection is accepted, then reset).
func (f *fleet) serve(b *fleetBackend, ln net.Listener) {
	srv := &http.Server{Handler: f.handler, ReadHeaderTimeout: 5 * time.Second, ErrorLog: quietLog(),
		ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			return context.WithValue(ctx, backendKey{}, b)
		},
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				b.open.Add(1)
			case http.StateClosed, http.StateHijacked:
				b.open.Add(-1)
			}
		}}
	b.mu.Lock()
	b.srvs = append(b.srvs, srv)
	b.mu.Unlock()
	srv.Serve(&backendListener{Listener: ln, f: f, b: b})
}

type backendListener struct {
	net.Listener
	f *fleet
	b *fleetBackend
}

func (l *backendListener) Accept() (net.Conn, error) {
	c, err := acceptFlapping(l.Listener, &l.b.conns, func() bool { return backendMode(l.b.mode.Load()) == modeFlap })
	if err != nil {
		return nil, err
	}
	cert := l.f.good
	if backendMode(l.b.mode.Load()) == modeWrongTLS {
		cert = l.f.bad
	}
	return gotls.Server(c, &gotls.Config{Certificates: []gotls.Certificate{cert}, NextProtos: l.f.protos}), nil
}

// setMode switches a backend; modeDown closes its listener, anything else reopens it.
func (f *fleet) setMode(i int, m backendMode) {
	b := f.backends[i]
	b.mode.Store(int32(m))
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case m == modeDown && b.ln != nil:
		b.ln.Close()
		b.ln = nil
	case m != modeDown && b.ln == nil:
		ln, err := net.Listen("tcp", fmt.Sprintf("%s:%d", b.addr, f.port))
		if err != nil {
			f.t.Fatalf("reopen backend %s: %v", b.addr, err)
		}
		b.ln = ln
		go f.serve(b, ln)
	}
}

func (f *fleet) addrs(from, to int) []netip.Addr {
	var out []netip.Addr
	for _, b := range f.backends[from:to] {
		out = append(out, b.addr)
	}
	return out
}

func quietLog() *log.Logger { return log.New(io.Discard, "", 0) }

// gatewayClient returns an HTTPS client for the proxy's TLS listener that connects to proxyAddr
// whatever the URL's host, so requests carry the route's Host and SNI.
func gatewayClient(t *testing.T, p *proc, h2 bool) *http.Client {
	t.Helper()
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", p.tlsAddr)
		},
		TLSClientConfig:     &gotls.Config{RootCAs: rootsWith(t, p.caFile)},
		ForceAttemptHTTP2:   h2,
		MaxIdleConnsPerHost: 16,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *gotls.Conn) http.RoundTripper{}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// getReply sends GET url and decodes the backend's reply; a non-200 is returned as an error
// carrying the status and body.
func getReply(c *http.Client, url string) (backendReply, int, error) {
	var br backendReply
	resp, err := c.Get(url)
	if err != nil {
		return br, 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != 200 {
		return br, resp.StatusCode, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return br, 200, json.Unmarshal(b, &br)
}
