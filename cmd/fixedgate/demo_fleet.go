package main

// The demo's backend fleet: real HTTPS servers on 127.0.1.1–127.0.1.N sharing one port, with
// their own CA, each switchable at run time between up, down and flapping. (The gateway tests
// have a similar fleet in fleet_test.go; the demo cannot use test code, so it has its own.)

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
	"sync"
	"sync/atomic"
	"time"

	"github.com/fixedgate/fixedgate/tls/devca"
)

// demoMode is how one fleet backend behaves for new connections.
type demoMode int32

const (
	demoUp   demoMode = iota
	demoDown          // the listener is closed: connections are refused
	demoFlap          // every other connection is reset before TLS; the others get one request each
)

func (m demoMode) String() string {
	switch m {
	case demoDown:
		return "down"
	case demoFlap:
		return "flapping"
	}
	return "up"
}

// demoReply is what every fleet backend answers: which backend it is and how it was reached.
type demoReply struct {
	Backend string `json:"backend"`
	Remote  string `json:"remote"`
	SNI     string `json:"sni"`
	Host    string `json:"host"`
	Proto   string `json:"proto"`
}

type demoBackend struct {
	addr  netip.Addr
	mode  atomic.Int32
	conns atomic.Int64 // connections accepted

	mu  sync.Mutex
	ln  net.Listener // nil while down
	srv *http.Server
}

type demoFleet struct {
	name     string
	port     int
	caPEM    []byte
	cert     gotls.Certificate
	backends []*demoBackend
}

type demoBackendKey struct{}

// startDemoFleet starts n backends on 127.0.1.1–127.0.1.n, all on one port that is free on
// every address, with a certificate for name from a CA of their own.
func startDemoFleet(name string, n int) (*demoFleet, error) {
	ca, err := devca.New("fixedgate demo fleet CA")
	if err != nil {
		return nil, err
	}
	f := &demoFleet{name: name, caPEM: ca.CertPEM()}
	if f.cert, err = ca.Issue([]string{name}, nil, 24*time.Hour); err != nil {
		return nil, err
	}
	for i := 1; i <= n; i++ {
		f.backends = append(f.backends, &demoBackend{addr: netip.AddrFrom4([4]byte{127, 0, 1, byte(i)})})
	}
	lns := make([]net.Listener, n)
	closeAll := func() {
		for i, ln := range lns {
			if ln != nil {
				ln.Close()
				lns[i] = nil
			}
		}
	}
	var lastErr error
	for range 20 { // a port the kernel gave on the first address may be taken on another
		probe, err := net.Listen("tcp", f.backends[0].addr.String()+":0")
		if err != nil {
			return nil, fmt.Errorf("fleet: listen on %s: %w (Linux routes all of 127.0.0.0/8 to loopback; other systems need the aliases added)", f.backends[0].addr, err)
		}
		port := probe.Addr().(*net.TCPAddr).Port
		probe.Close()
		lastErr = nil
		for i, b := range f.backends {
			if lns[i], lastErr = net.Listen("tcp", fmt.Sprintf("%s:%d", b.addr, port)); lastErr != nil {
				break
			}
		}
		if lastErr == nil {
			f.port = port
			break
		}
		closeAll()
	}
	if lastErr != nil {
		return nil, fmt.Errorf("fleet: no port free on all %d addresses: %w", n, lastErr)
	}
	for i, b := range f.backends {
		f.serve(b, lns[i])
	}
	return f, nil
}

// serve starts backend b on ln (b.mu held or b not yet shared).
func (f *demoFleet) serve(b *demoBackend, ln net.Listener) {
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { f.answer(b, w, r) }),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          log.New(io.Discard, "", 0), // resets are the point of flapping
		ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			return context.WithValue(ctx, demoBackendKey{}, b)
		},
	}
	b.ln, b.srv = ln, srv
	go srv.Serve(&demoListener{Listener: ln, f: f, b: b})
}

func (f *demoFleet) answer(b *demoBackend, w http.ResponseWriter, r *http.Request) {
	if demoMode(b.mode.Load()) == demoFlap {
		w.Header().Set("Connection", "close") // one request per connection, half of them reset
	}
	w.Header().Set("Content-Type", "application/json")
	sni := ""
	if r.TLS != nil {
		sni = r.TLS.ServerName
	}
	json.NewEncoder(w).Encode(demoReply{Backend: b.addr.String(), Remote: r.RemoteAddr, SNI: sni, Host: r.Host, Proto: r.Proto})
}

// demoListener does what the backend's mode says with each new connection, then TLS.
type demoListener struct {
	net.Listener
	f *demoFleet
	b *demoBackend
}

func (l *demoListener) Accept() (net.Conn, error) {
	c, err := acceptFlapping(l.Listener, &l.b.conns, func() bool { return demoMode(l.b.mode.Load()) == demoFlap })
	if err != nil {
		return nil, err
	}
	return gotls.Server(c, &gotls.Config{Certificates: []gotls.Certificate{l.f.cert}, NextProtos: []string{"h2", "http/1.1"}}), nil
}

// acceptFlapping accepts the next connection and counts it in n. While flapping() says so,
// every second connection is reset at once (accepted, then RST), as by a backend that keeps
// crashing: reachable, and failing.
func acceptFlapping(ln net.Listener, n *atomic.Int64, flapping func() bool) (net.Conn, error) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return nil, err
		}
		if n.Add(1)%2 == 0 && flapping() {
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0) // RST, not FIN
			}
			c.Close()
			continue
		}
		return c, nil
	}
}

// setMode switches backend i. Its open connections are closed, as when a machine or its link
// fails; unless the new mode is down, it listens again on the same address and port.
func (f *demoFleet) setMode(i int, m demoMode) error {
	b := f.backends[i]
	b.mu.Lock()
	defer b.mu.Unlock()
	b.mode.Store(int32(m))
	b.conns.Store(0)
	b.stop()
	if m == demoDown {
		return nil
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("%s:%d", b.addr, f.port))
	if err != nil {
		return fmt.Errorf("fleet: reopen %s:%d: %w", b.addr, f.port, err)
	}
	f.serve(b, ln)
	return nil
}

// addrs returns every backend's address.
func (f *demoFleet) addrs() []netip.Addr {
	out := make([]netip.Addr, len(f.backends))
	for i, b := range f.backends {
		out[i] = b.addr
	}
	return out
}

func (f *demoFleet) close() {
	for _, b := range f.backends {
		b.mu.Lock()
		b.stop()
		b.mu.Unlock()
	}
}

// stop closes the backend's listener (now, even if Serve has not started yet) and its
// connections; b.mu is held.
func (b *demoBackend) stop() {
	if b.ln != nil {
		b.ln.Close()
		b.srv.Close()
		b.ln, b.srv = nil, nil
	}
}
