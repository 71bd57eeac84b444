package main

import (
	"bytes"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func healthcheckRun(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"healthcheck"}, args...), &stdout, &stderr)
	return code, stderr.String()
}

func TestHealthcheck(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ready\n")) })
	mux.HandleFunc("/notready", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not ready: listeners not bound\nsecond line", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/readyz", http.StatusFound) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	srv := httptest.NewServer(mux) // 127.0.0.1
	defer srv.Close()

	t.Run("2xx exits 0", func(t *testing.T) {
		if code, stderr := healthcheckRun(t, "--url", srv.URL+"/readyz"); code != 0 || stderr != "" {
			t.Fatalf("exit %d, stderr %q; want 0 and nothing", code, stderr)
		}
	})
	t.Run("503 exits 1 with one line", func(t *testing.T) {
		code, stderr := healthcheckRun(t, "--url", srv.URL+"/notready")
		if code != 1 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "503") || !strings.Contains(stderr, "listeners not bound") {
			t.Fatalf("exit %d, stderr %q; want 1 and one line naming 503 and the reason", code, stderr)
		}
	})
	t.Run("redirect is not followed", func(t *testing.T) {
		if code, stderr := healthcheckRun(t, "--url", srv.URL+"/redirect"); code != 1 || !strings.Contains(stderr, "302") {
			t.Fatalf("exit %d, stderr %q; want 1 naming 302", code, stderr)
		}
	})
	t.Run("timeout exits 1 in time", func(t *testing.T) {
		start := time.Now()
		code, stderr := healthcheckRun(t, "--url", srv.URL+"/slow", "--timeout", "200ms")
		if code != 1 || !strings.Contains(stderr, "no answer within 200ms") || time.Since(start) > 3*time.Second {
			t.Fatalf("exit %d after %s, stderr %q; want 1 within the timeout", code, time.Since(start), stderr)
		}
	})
	t.Run("connection refused exits 1", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		code, stderr := healthcheckRun(t, "--url", "http://"+addr+"/readyz", "--timeout", "2s")
		if code != 1 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "refused") {
			t.Fatalf("exit %d, stderr %q; want 1 and one line saying refused", code, stderr)
		}
	})
	t.Run("usage errors exit 2", func(t *testing.T) {
		for _, args := range [][]string{nil, {"--url", "127.0.0.1:9090/readyz"}, {"--url", "ftp://x/"}, {"--url", srv.URL, "extra"}} {
			if code, _ := healthcheckRun(t, args...); code != 2 {
				t.Errorf("healthcheck %q: exit %d, want 2", args, code)
			}
		}
	})
}

func TestHealthcheckHTTPSWithCACert(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) }))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, stderr := healthcheckRun(t, "--url", srv.URL+"/healthz", "--cacert", ca); code != 0 {
		t.Fatalf("with --cacert: exit %d, stderr %q; want 0", code, stderr)
	}
	if code, stderr := healthcheckRun(t, "--url", srv.URL+"/healthz"); code != 1 || !strings.Contains(stderr, "certificate") {
		t.Fatalf("without --cacert: exit %d, stderr %q; want 1 naming the certificate", code, stderr)
	}
}

// TestHealthcheckIgnoresProxyEnvironment: HTTPS_PROXY/HTTP_PROXY set for the proxy's own users
// must not route the health check. Go skips proxies for loopback literals anyway, so the client's
// configuration is checked directly.
func TestHealthcheckIgnoresProxyEnvironment(t *testing.T) {
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:1")
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:1")
	c, err := healthcheckClient("")
	if err != nil {
		t.Fatal(err)
	}
	tr := c.Transport.(*http.Transport)
	if tr.Proxy != nil {
		req, _ := http.NewRequest("GET", "http://fixedgate.example/readyz", nil)
		if u, _ := tr.Proxy(req); u != nil {
			t.Fatalf("healthcheck would use proxy %s from the environment", u)
		}
	}
}
