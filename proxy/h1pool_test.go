package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// testH1Pool returns a pool dialling an HTTP/1.1-only TLS test server (loopback), and the
// number of connections that server accepted.
func testH1Pool(t *testing.T, h http.HandlerFunc) (*h1Pool, *atomic.Int64, *httptest.Server) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	var conns atomic.Int64
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	cfg := &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs, ServerName: "example.com", NextProtos: []string{"h2", "http/1.1"}}
	p := &h1Pool{idleTimeout: time.Minute, maxIdle: 8, responseHeaderTimeout: 10 * time.Second,
		dial: func(ctx context.Context) (*tls.Conn, error) {
			var d tls.Dialer
			d.Config = cfg
			c, err := d.DialContext(ctx, "tcp", srv.Listener.Addr().String())
			if err != nil {
				return nil, err
			}
			return c.(*tls.Conn), nil
		}}
	t.Cleanup(p.CloseIdleConnections)
	return p, &conns, srv
}

func get(t *testing.T, p *h1Pool, ctx context.Context, path string) (string, error) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://example.com"+path, nil)
	resp, err := p.RoundTrip(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestH1PoolReusesAndRecovers(t *testing.T) {
	p, conns, srv := testH1Pool(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Write([]byte(strings.Repeat("x", 1<<20)))
		case "/slow":
			<-r.Context().Done()
		case "/chunked":
			io.WriteString(w, "chunk ")
			w.(http.Flusher).Flush()
			io.WriteString(w, "ed")
		default:
			io.WriteString(w, "ok "+r.Host)
		}
	})
	ctx := context.Background()
	for i := range 3 {
		if b, err := get(t, p, ctx, "/"); err != nil || b != "ok example.com" {
			t.Fatalf("request %d: %q %v", i, b, err)
		}
	}
	// A chunked response goes through net/http's reader, and its connection is reused too.
	if b, err := get(t, p, ctx, "/chunked"); err != nil || b != "chunk ed" {
		t.Fatalf("chunked response: %q %v", b, err)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("4 sequential requests used %d connections, want 1 (keep-alive)", n)
	}
	// The common shape (Content-Length) is read by h1Body itself.
	req0, _ := http.NewRequest("GET", "https://example.com/", nil)
	resp0, err := p.RoundTrip(req0)
	if err != nil {
		t.Fatal(err)
	}
	if b, ok := resp0.Body.(*h1Body); !ok || b.rc != nil || b.direct.R == nil || resp0.ContentLength != int64(len("ok example.com")) {
		t.Errorf("a Content-Length response was not read directly: body %T, length %d", resp0.Body, resp0.ContentLength)
	}
	io.Copy(io.Discard, resp0.Body)
	resp0.Body.Close()

	// The backend closes its idle connections: the next request goes again on a fresh one.
	srv.CloseClientConnections()
	if b, err := get(t, p, ctx, "/"); err != nil || b != "ok example.com" {
		t.Fatalf("after the backend closed the idle connection: %q %v", b, err)
	}

	// A body abandoned half-way leaves bytes on the wire: that connection must not be reused.
	req, _ := http.NewRequest("GET", "https://example.com/big", nil)
	resp, err := p.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadFull(resp.Body, make([]byte, 1000))
	resp.Body.Close()
	before := conns.Load()
	if b, err := get(t, p, ctx, "/"); err != nil || b != "ok example.com" {
		t.Fatalf("after an abandoned body: %q %v", b, err)
	}
	if conns.Load() != before+1 {
		t.Errorf("the connection of an abandoned body was reused (the next request opened %d connections, want 1)", conns.Load()-before)
	}

	// Cancelling the request's context ends a response that never comes.
	cctx, cancel := context.WithCancel(ctx)
	go func() { time.Sleep(50 * time.Millisecond); cancel() }() // the cancellation under test
	if _, err := get(t, p, cctx, "/slow"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled request: %v, want context.Canceled", err)
	}
}

func TestH1PoolReportsH2(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	cfg := srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.NextProtos = []string{"h2", "http/1.1"}
	p := &h1Pool{idleTimeout: time.Minute, maxIdle: 8, dial: func(ctx context.Context) (*tls.Conn, error) {
		d := tls.Dialer{Config: cfg}
		c, err := d.DialContext(ctx, "tcp", srv.Listener.Addr().String())
		if err != nil {
			return nil, err
		}
		return c.(*tls.Conn), nil
	}}
	req, _ := http.NewRequest("GET", "https://example.com/", nil)
	if _, err := p.RoundTrip(req); !errors.Is(err, errH2Negotiated) {
		t.Fatalf("h2 backend: %v, want errH2Negotiated so the caller switches to HTTP/2", err)
	}
}

// A backend whose response header never ends (or that sends 1xx responses forever) costs the
// proxy an error once the header limit is reached, not memory and not the response timeout.
func TestH1PoolBoundsResponseHeader(t *testing.T) {
	const limit = 64 << 10
	p, _, _ := testH1Pool(t, func(w http.ResponseWriter, r *http.Request) {
		c, bw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		line := "X-Pad: " + strings.Repeat("a", 1000) + "\r\n"
		if r.URL.Path == "/interim" {
			line = "HTTP/1.1 100 Continue\r\n\r\n"
		} else {
			bw.WriteString("HTTP/1.1 200 OK\r\n")
		}
		for sent := 0; sent < 4*limit; sent += len(line) { // bounded: 4x what the proxy may read
			if _, err := bw.WriteString(line); err != nil {
				return
			}
		}
		bw.Flush()
	})
	p.maxHeaderBytes = limit
	for _, path := range []string{"/endless-header", "/interim"} {
		_, err := get(t, p, context.Background(), path)
		var tooLarge *errHeaderTooLarge
		if !errors.As(err, &tooLarge) || !strings.Contains(err.Error(), "larger than 65536 bytes") {
			t.Errorf("%s: %v, want the header limit named", path, err)
		}
	}
	// A header under the limit still works on the same pool.
	p2, _, _ := testH1Pool(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Pad", strings.Repeat("b", limit/2))
		io.WriteString(w, "ok")
	})
	p2.maxHeaderBytes = limit
	for i := range 2 {
		if b, err := get(t, p2, context.Background(), "/"); err != nil || b != "ok" {
			t.Fatalf("request %d with a %d-byte header: %q %v", i, limit/2, b, err)
		}
	}
}
