package proxy

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"strings"

	lru "github.com/hashicorp/golang-lru/v2"
)

// authenticator checks Proxy-Authorization: Basic against forward.users. Verified header values
// are cached by their SHA-256 so a busy client costs one map lookup, and the cache never holds a
// plaintext key.
type authenticator struct {
	keys  map[string][32]byte
	cache *lru.Cache[[32]byte, string]
}

func newAuthenticator(users []User) *authenticator {
	if len(users) == 0 {
		return nil
	}
	a := &authenticator{keys: make(map[string][32]byte, len(users))}
	for _, u := range users {
		var k [32]byte
		b, _ := hex.DecodeString(u.KeySHA256)
		copy(k[:], b)
		a.keys[u.Name] = k
	}
	a.cache, _ = lru.New[[32]byte, string](4096)
	return a
}

// check returns the user named by header, or "" and false when it is missing or wrong.
func (a *authenticator) check(header string) (string, bool) {
	if header == "" {
		return "", false
	}
	hk := sha256.Sum256([]byte(header))
	if u, ok := a.cache.Get(hk); ok {
		return u, true
	}
	scheme, rest, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
	if err != nil {
		return "", false
	}
	name, key, ok := strings.Cut(string(raw), ":")
	if !ok {
		return "", false
	}
	want, known := a.keys[name]
	got := sha256.Sum256([]byte(key))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 || !known {
		return "", false
	}
	a.cache.Add(hk, name)
	return name, true
}

// known reports whether name is a forward.users name.
func (a *authenticator) known(name string) bool {
	_, ok := a.keys[name]
	return ok
}

// certIdentity returns the identity named by the client certificate that the TLS handshake
// verified against tls.client_ca: the subject's CommonName, else the first DNS SAN, else the
// first URI SAN (a SPIFFE ID, say). Only a verified chain counts: a certificate the client
// merely presented names nobody. found is false without a verified certificate; name is ""
// when the certificate names no one by these rules.
func certIdentity(cs *tls.ConnectionState) (name string, found bool) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return "", false
	}
	leaf := cs.VerifiedChains[0][0]
	switch {
	case leaf.Subject.CommonName != "":
		return leaf.Subject.CommonName, true
	case len(leaf.DNSNames) > 0:
		return leaf.DNSNames[0], true
	case len(leaf.URIs) > 0:
		return leaf.URIs[0].String(), true
	}
	return "", true
}
