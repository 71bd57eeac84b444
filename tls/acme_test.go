package tls

import (
	"context"
	gotls "crypto/tls"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

// TestACMESetupWithoutCA checks what New sets up for tls.acme before any ACME traffic (Start
// is not called; the e2e tests in cmd/fixedgate run the real thing against Pebble): the
// listener offers acme-tls/1 beside the given protocols, /readyz reasons name the domain, the
// HTTP-01 listener answers only challenge paths, and with client_ca a validator's
// acme-tls/1-only hello is not asked for a client certificate.
func TestACMESetupWithoutCA(t *testing.T) {
	ca := newCA(t, "client CA")
	m, err := New(context.Background(), Config{
		ACME: &ACMEConfig{
			Domains: []string{"Proxy.Example.test"}, CA: "https://127.0.0.1:1/dir",
			Storage: t.TempDir(), HTTPListen: "127.0.0.1:0",
		},
		ListenerAddress: "127.0.0.1:8443",
		ClientCA:        writeCA(t, ca),
	}, nil, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)

	sc := m.ServerConfig([]string{"h2", "http/1.1"})
	if want := []string{"h2", "http/1.1", acmeTLS1}; !slices.Equal(sc.NextProtos, want) {
		t.Fatalf("NextProtos %v, want %v", sc.NextProtos, want)
	}
	if sc.ClientAuth != gotls.RequireAndVerifyClientCert {
		t.Fatalf("ClientAuth %v for ordinary clients", sc.ClientAuth)
	}
	ch, err := sc.GetConfigForClient(&gotls.ClientHelloInfo{ServerName: "proxy.example.test", SupportedProtos: []string{acmeTLS1}})
	if err != nil || ch == nil || ch.ClientAuth != gotls.NoClientCert || !slices.Equal(ch.NextProtos, []string{acmeTLS1}) {
		t.Fatalf("config for the TLS-ALPN-01 validator: %+v %v", ch, err)
	}
	if ch, _ := sc.GetConfigForClient(&gotls.ClientHelloInfo{ServerName: "proxy.example.test", SupportedProtos: []string{"h2", acmeTLS1}}); ch != nil {
		t.Fatal("an ordinary client offering acme-tls/1 among others escapes client certificates")
	}

	err = m.Ready()
	if err == nil || !strings.Contains(err.Error(), "proxy.example.test: not obtained yet") {
		t.Fatalf("Ready before any certificate: %v", err)
	}
	if m.magic.DefaultServerName != "proxy.example.test" {
		t.Fatalf("DefaultServerName %q", m.magic.DefaultServerName)
	}
	if m.magic.OnDemand != nil {
		t.Fatal("on-demand issuance is configured")
	}

	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	resp, err := c.Get("http://" + m.acme.httpLn.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("HTTP-01 listener, path /: %s", resp.Status)
	}
	addr := m.acme.httpLn.Addr().String()
	m.Close()
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Fatal("HTTP-01 listener still accepts after Close")
	}
}

func TestACMENoProxyFromEnvironment(t *testing.T) {
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:9")
	req, _ := http.NewRequest(http.MethodGet, "https://acme.example.test/dir", nil)
	if u, err := noProxy(req); u != nil || err != nil {
		t.Fatalf("noProxy: %v %v", u, err)
	}
}
