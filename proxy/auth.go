package proxy

import (
	"crypto/sha256"
	"crypto/subtle"
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
