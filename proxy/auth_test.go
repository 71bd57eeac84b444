package proxy

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
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
