package tls

import (
	"context"
	gotls "crypto/tls"
	"errors"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// serveHTTPS runs an HTTPS server answering "ok" on a loopback listener.
func serveHTTPS(t *testing.T, host string, cfg *gotls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }),
		ReadHeaderTimeout: ioTimeout,
		ErrorLog:          nil,
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(gotls.NewListener(ln, cfg)) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Error(err)
		}
	})
	return ln.Addr().String()
}

func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestCurlSelfSigned is what the startup hint promises a user: curl trusting
// the printed CA reaches https://127.0.0.1:PORT (no SNI) and https://localhost.
func TestCurlSelfSigned(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	m := newManager(t, Config{SelfSigned: &SelfSignedConfig{Dir: t.TempDir()}})
	addr := serveHTTPS(t, "127.0.0.1", m.ServerConfig([]string{"h2", "http/1.1"}))
	_, port, _ := net.SplitHostPort(addr)
	for _, url := range []string{"https://" + addr + "/", "https://localhost:" + port + "/"} {
		out, err := run(t, "curl", "--silent", "--show-error", "--max-time", "5", "--cacert", m.CAPath(), url)
		if err != nil || out != "ok" {
			t.Errorf("curl %s: %v\n%s", url, err, out)
		}
	}
}

// TestOpenSSLIPLiteralSNI sends the IP address as SNI, which OpenSSL does
// when asked to, against a certificate that names only default_name.
func TestOpenSSLIPLiteralSNI(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	ca := newCA(t, "files CA")
	fp := writePair(t, ca, []string{"proxy.example.test"}, nil)
	m := newManager(t, Config{Files: []FilePair{fp}, DefaultName: "proxy.example.test"})
	addr := serveHTTPS(t, "127.0.0.1", m.ServerConfig(nil))
	out, err := run(t, "openssl", "s_client", "-connect", addr, "-servername", "127.0.0.1",
		"-CAfile", writeCA(t, ca), "-verify_hostname", "proxy.example.test", "-verify_return_error", "-brief")
	if err != nil || !strings.Contains(out, "Verification: OK") {
		t.Fatalf("openssl s_client: %v\n%s", err, out)
	}
}
