package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const maxBulk = 16 << 30 // refuse /bulk requests above 16 GiB

// runOrigin serves a loopback HTTPS origin:
//
//	GET /                 -> -body bytes (default 128)
//	GET /bulk?bytes=N     -> N bytes, streamed, with Content-Length
//	GET /json             -> a fixed ~200-byte application/json document (gateway scenario)
//	POST /json            -> the same, after reading the request body (up to 1 MiB)
//	GET /stats            -> one "STATS k=v ..." line: connections and requests so far
//
// HTTP/1.1 only unless -h2 (then ALPN offers h2 and http/1.1); -listen-h2
// adds a second listener that always offers h2 (bench/gateway.sh: the
// proxies' backend port stays HTTP/1.1 while the direct baseline can do h2).
// Keep-alive, no idle timeout below -idle-timeout so that the idle-tunnel
// test can hold thousands of connections.
//
// /stats counts, since start, in total and per client IP: conns_accepted
// (every TCP connection accepted, including failed handshakes and the /stats
// connections themselves), conns_open (open now, not counting the one
// asking), conns_h1 / conns_h2 (connections that carried at least one request
// other than /stats, by protocol) and requests (requests other than /stats). bench/gateway.sh reads it around each run to show how
// many connections a reverse proxy opened to the origin.
func runOrigin(args []string) error {
	fs := flag.NewFlagSet("origin", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:8443", "loopback address to listen on")
	caOut := fs.String("ca-out", "", "write the CA certificate (PEM) that signs the origin's leaf here (required)")
	dnsList := fs.String("dns", "origin.bench.test", "comma-separated DNS SANs for the leaf")
	bodySize := fs.Int("body", 128, "size of the GET / body in bytes")
	idleTimeout := fs.Duration("idle-timeout", 10*time.Minute, "keep-alive idle timeout")
	maxLife := fs.Duration("max-life", 2*time.Hour, "exit after this long no matter what (safety bound)")
	h2 := fs.Bool("h2", false, "also serve HTTP/2 on -listen (ALPN h2, http/1.1); default: HTTP/1.1 only")
	listenH2 := fs.String("listen-h2", "", "optional second loopback address, always offering h2 and http/1.1 (same handlers and counters)")
	fs.Parse(args)
	if *caOut == "" {
		return fmt.Errorf("-ca-out is required")
	}
	if err := mustLoopback(*listen); err != nil {
		return err
	}
	if *listenH2 != "" {
		if err := mustLoopback(*listenH2); err != nil {
			return err
		}
	}
	nofile := raiseNofile(65536)

	host, _, _ := net.SplitHostPort(*listen)
	ipList := host + ",127.0.0.1"
	if *listenH2 != "" {
		h, _, _ := net.SplitHostPort(*listenH2)
		ipList += "," + h
	}
	ips, err := parseIPs(ipList)
	if err != nil {
		return err
	}
	cs, err := newCertSet("origin.bench.test", splitList(*dnsList), ips)
	if err != nil {
		return err
	}
	if err := os.WriteFile(*caOut, cs.caPEM, 0o644); err != nil {
		return err
	}

	body := make([]byte, *bodySize)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	bodyLen := strconv.Itoa(len(body))
	chunk := make([]byte, 256<<10)
	for i := range chunk {
		chunk[i] = byte(i)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"text/plain"}
		h["Content-Length"] = []string{bodyLen}
		w.Write(body)
	})
	jsonBody := []byte(benchJSON)
	jsonLen := strconv.Itoa(len(jsonBody))
	serveJSON := func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{jsonLen}
		w.Write(jsonBody)
	}
	mux.HandleFunc("GET /json", serveJSON)
	mux.HandleFunc("POST /json", func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20)); err != nil {
			http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
			return
		}
		serveJSON(w, r)
	})
	st := &originStats{byIP: map[string]*connCounters{}}
	mux.HandleFunc("GET /stats", st.serve)
	mux.HandleFunc("GET /bulk", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("bytes"), 10, 64)
		if err != nil || n < 0 || n > maxBulk {
			http.Error(w, "bad bytes", http.StatusBadRequest)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Length", strconv.FormatInt(n, 10))
		for n > 0 {
			c := chunk
			if int64(len(c)) > n {
				c = c[:n]
			}
			if _, err := w.Write(c); err != nil {
				return
			}
			n -= int64(len(c))
		}
	})

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	var lnH2 net.Listener
	if *listenH2 != "" {
		if lnH2, err = net.Listen("tcp", *listenH2); err != nil {
			ln.Close()
			return err
		}
	}
	tlsCfg := &tls.Config{
		Certificates: []tls.Certificate{cs.tlsCert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"},
	}
	if *h2 {
		tlsCfg.NextProtos = []string{"h2", "http/1.1"}
	}
	tlsCfgH2 := tlsCfg.Clone()
	tlsCfgH2.NextProtos = []string{"h2", "http/1.1"}
	srv := &http.Server{
		Handler:     st.wrap(mux),
		TLSConfig:   tlsCfgH2, // offers h2, so Serve sets up HTTP/2; each listener's own config decides ALPN
		IdleTimeout: *idleTimeout,
		ErrorLog:    log.New(os.Stderr, "origin: ", 0),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connInfoKey{}, &connInfo{ctr: st.of(c.RemoteAddr())})
		},
		ConnState: st.connState,
	}
	if !*h2 && lnH2 == nil {
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){} // no h2 at all
	}
	srv.SetKeepAlivesEnabled(true)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		select {
		case <-ctx.Done():
		case <-time.After(*maxLife):
			fmt.Fprintln(os.Stderr, "origin: -max-life reached, exiting")
		}
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		srv.Close()
	}()

	if lnH2 != nil {
		go func() {
			if err := srv.Serve(tls.NewListener(lnH2, tlsCfgH2)); err != nil && err != http.ErrServerClosed {
				fmt.Fprintln(os.Stderr, "origin: -listen-h2:", err)
			}
		}()
	}
	extra := ""
	if lnH2 != nil {
		extra = " origin_h2=" + lnH2.Addr().String()
	}
	fmt.Printf("READY origin=%s nofile=%d h2=%v%s\n", ln.Addr(), nofile, *h2, extra)
	err = srv.Serve(tls.NewListener(ln, tlsCfg))
	if err == http.ErrServerClosed {
		return nil
	}
	return err
}

// benchJSON is the body of GET /json: a small API-style document (200 bytes).
const benchJSON = `{"id":1234567,"name":"fixedgate bench","kind":"gateway","ok":true,` +
	`"tags":["alpha","beta","gamma"],"owner":{"team":"edge","region":"loopback"},` +
	`"ts":"2026-01-01T00:00:00Z","pad":"abcdefghijklmnopqrstu"}`

// originStats counts connections and requests for GET /stats, in total and
// per client IP (each proxy dials the origin from its own source address).
type originStats struct {
	all  connCounters
	mu   sync.Mutex
	byIP map[string]*connCounters
}

type connCounters struct {
	accepted, open, h1, h2, requests atomic.Int64
}

type connInfoKey struct{}

// connInfo is attached to every connection's context.
type connInfo struct {
	ctr     *connCounters
	counted atomic.Bool // the connection has carried a counted request
}

func ipOf(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return "?"
	}
	return host
}

func (st *originStats) of(a net.Addr) *connCounters {
	ip := ipOf(a)
	st.mu.Lock()
	defer st.mu.Unlock()
	c, ok := st.byIP[ip]
	if !ok {
		c = &connCounters{}
		st.byIP[ip] = c
	}
	return c
}

func (st *originStats) connState(c net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		ctr := st.of(c.RemoteAddr())
		ctr.accepted.Add(1)
		ctr.open.Add(1)
		st.all.accepted.Add(1)
		st.all.open.Add(1)
	case http.StateClosed, http.StateHijacked:
		st.of(c.RemoteAddr()).open.Add(-1)
		st.all.open.Add(-1)
	}
}

// serve writes one line for all clients and one per client IP:
//
//	STATS ip=all conns_accepted=N conns_open=N conns_h1=N conns_h2=N requests=N
//	STATS ip=127.0.0.13 ...
//
// conns_open does not count the connection asking.
func (st *originStats) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Cache-Control", "no-store")
	self := ""
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		self = host
	}
	line := func(ip string, c *connCounters, selfConn int64) {
		fmt.Fprintf(w, "STATS ip=%s conns_accepted=%d conns_open=%d conns_h1=%d conns_h2=%d requests=%d\n",
			ip, c.accepted.Load(), c.open.Load()-selfConn, c.h1.Load(), c.h2.Load(), c.requests.Load())
	}
	line("all", &st.all, 1)
	st.mu.Lock()
	ips := make([]string, 0, len(st.byIP))
	for ip := range st.byIP {
		ips = append(ips, ip)
	}
	st.mu.Unlock()
	sort.Strings(ips)
	for _, ip := range ips {
		var selfConn int64
		if ip == self {
			selfConn = 1
		}
		st.mu.Lock()
		c := st.byIP[ip]
		st.mu.Unlock()
		line(ip, c, selfConn)
	}
}

// wrap counts requests and, on a connection's first counted request, the
// connection by protocol. /stats itself is not counted, so reading the
// counters does not change them (except conns_accepted).
func (st *originStats) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/stats") {
			st.all.requests.Add(1)
			if ci, ok := r.Context().Value(connInfoKey{}).(*connInfo); ok {
				ci.ctr.requests.Add(1)
				if !ci.counted.Load() && ci.counted.CompareAndSwap(false, true) {
					if r.ProtoMajor == 2 {
						ci.ctr.h2.Add(1)
						st.all.h2.Add(1)
					} else {
						ci.ctr.h1.Add(1)
						st.all.h1.Add(1)
					}
				}
			}
		}
		h.ServeHTTP(w, r)
	})
}
