package proxy

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"testing"
)

func TestAuthenticator(t *testing.T) {
	sum := sha256.Sum256([]byte("k3y:with:colons"))
	a := newAuthenticator([]User{{Name: "acme", KeySHA256: hex.EncodeToString(sum[:])}})
	basic := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		name, header, user string
		ok                 bool
	}{
		{"valid", basic("acme:k3y:with:colons"), "acme", true},
		{"scheme case-insensitive", "basic " + base64.StdEncoding.EncodeToString([]byte("acme:k3y:with:colons")), "acme", true},
		{"wrong key", basic("acme:k3y"), "", false},
		{"unknown user with the right key", basic("other:k3y:with:colons"), "", false},
		{"empty", "", "", false},
		{"no colon", basic("acme"), "", false},
		{"bearer", "Bearer abc", "", false},
		{"not base64", "Basic !!!", "", false},
		{"empty user and key", basic(":"), "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 2 { // the second round is served from the cache when valid
				user, ok := a.check(tc.header)
				if user != tc.user || ok != tc.ok {
					t.Fatalf("check(%q) = %q, %v; want %q, %v", tc.header, user, ok, tc.user, tc.ok)
				}
			}
		})
	}
	if newAuthenticator(nil) != nil {
		t.Error("no users must mean no authenticator")
	}
}

func BenchmarkAuthenticatorCached(b *testing.B) {
	sum := sha256.Sum256([]byte("key"))
	a := newAuthenticator([]User{{Name: "acme", KeySHA256: hex.EncodeToString(sum[:])}})
	h := "Basic " + base64.StdEncoding.EncodeToString([]byte("acme:key"))
	for b.Loop() {
		a.check(h)
	}
}

func TestCertIdentity(t *testing.T) {
	spiffe, _ := url.Parse("spiffe://example.test/client")
	chain := func(c *x509.Certificate) *tls.ConnectionState {
		return &tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}, VerifiedChains: [][]*x509.Certificate{{c}}}
	}
	cases := []struct {
		name  string
		cs    *tls.ConnectionState
		want  string
		found bool
	}{
		{"plain connection", nil, "", false},
		{"presented but not verified", &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{Subject: pkix.Name{CommonName: "mallory"}}}}, "", false},
		{"common name first", chain(&x509.Certificate{Subject: pkix.Name{CommonName: "acme"}, DNSNames: []string{"dns.example"}}), "acme", true},
		{"else DNS SAN", chain(&x509.Certificate{DNSNames: []string{"client.example", "other"}, URIs: []*url.URL{spiffe}}), "client.example", true},
		{"else URI SAN", chain(&x509.Certificate{URIs: []*url.URL{spiffe}}), "spiffe://example.test/client", true},
		{"names nobody", chain(&x509.Certificate{}), "", true},
	}
	for _, c := range cases {
		got, found := certIdentity(c.cs)
		if got != c.want || found != c.found {
			t.Errorf("%s: got %q %v, want %q %v", c.name, got, found, c.want, c.found)
		}
	}
}
