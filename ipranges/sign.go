package ipranges

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// Signatures (ipranges.signing_key, /ip-ranges.json.sig, `fixedgate ipranges verify`).
//
// The served /ip-ranges.json can be signed with an ed25519 key so that a firewall team that
// fetches it through caches, mirrors or a corporate proxy can check it came from the operator
// unchanged. The signature is detached and covers the exact bytes of the unfiltered
// /ip-ranges.json served at that moment.
//
// Signature file format (/ip-ranges.json.sig): the standard base64 encoding (RFC 4648 §4, with
// padding) of the 64-byte ed25519 signature, followed by one "\n"; 89 bytes in all. Verifiers
// ignore surrounding whitespace. With OpenSSL 3:
//
//	base64 -d ip-ranges.json.sig > sig.bin
//	openssl pkeyutl -verify -pubin -inkey ip-ranges.pub -rawin -in ip-ranges.json -sigfile sig.bin
//
// Keys are PEM files as OpenSSL writes them: the private key a "PRIVATE KEY" block (PKCS #8),
// the public key a "PUBLIC KEY" block (PKIX); `openssl genpkey -algorithm ed25519` keys work,
// as do those GenerateKey writes.

// SignatureSize is the length of a signature file: base64 of 64 bytes plus a newline.
const SignatureSize = 89

// LoadSigningKey reads an ed25519 private key from a PEM file holding a "PRIVATE KEY" (PKCS #8)
// block.
func LoadSigningKey(path string) (ed25519.PrivateKey, error) {
	der, err := readPEM(path, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key %s: a %T, not an ed25519 key", path, k)
	}
	return ek, nil
}

// LoadPublicKey reads an ed25519 public key from a PEM file holding a "PUBLIC KEY" (PKIX)
// block.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	der, err := readPEM(path, "PUBLIC KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", path, err)
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("public key %s: a %T, not an ed25519 key", path, k)
	}
	return ek, nil
}

func readPEM(path, typ string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, fmt.Errorf("key %s: no PEM %q block", path, typ)
		}
		if b.Type == typ {
			return b.Bytes, nil
		}
	}
}

// Sign returns the content of the signature file for data: base64 of the ed25519 signature and
// a newline (see the format above).
func Sign(key ed25519.PrivateKey, data []byte) []byte {
	sig := ed25519.Sign(key, data)
	out := make([]byte, base64.StdEncoding.EncodedLen(len(sig))+1)
	base64.StdEncoding.Encode(out, sig)
	out[len(out)-1] = '\n'
	return out
}

// ErrBadSignature is returned (wrapped) by Verify when the signature is well-formed but does
// not match the data and key.
var ErrBadSignature = errors.New("signature does not match")

// Verify checks a signature file's content (as Sign returns it) against data and pub.
func Verify(pub ed25519.PublicKey, data, sig []byte) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("verify: public key has %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	sig = bytes.TrimSpace(sig)
	raw := make([]byte, base64.StdEncoding.DecodedLen(len(sig)))
	n, err := base64.StdEncoding.Decode(raw, sig)
	if err != nil {
		return fmt.Errorf("verify: signature is not base64: %w", err)
	}
	if n != ed25519.SignatureSize {
		return fmt.Errorf("verify: signature has %d bytes, want %d", n, ed25519.SignatureSize)
	}
	if !ed25519.Verify(pub, data, raw[:n]) {
		return fmt.Errorf("verify: %w (key %s)", ErrBadSignature, KeyFingerprint(pub))
	}
	return nil
}

// KeyFingerprint names a public key in messages: "SHA256:" and the unpadded base64 of the
// SHA-256 of its PKIX encoding (the form `ssh-keygen -l` uses for its keys).
func KeyFingerprint(pub ed25519.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "SHA256:?"
	}
	sum := sha256.Sum256(der)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

// GenerateKey creates an ed25519 key pair and writes the private key to privPath (mode 0600)
// and the public key to pubPath (0644), both PEM. It refuses to overwrite either file, so a key
// that firewall teams already trust is never replaced by accident.
func GenerateKey(privPath, pubPath string) error {
	if privPath == "" || pubPath == "" {
		return errors.New("generate key: both a private and a public key path are needed")
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	for _, p := range []string{privPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("generate key: %s exists; not overwriting it", p)
		}
	}
	if err := writeNew(privPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), 0o600); err != nil {
		return err
	}
	if err := writeNew(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		os.Remove(privPath)
		return err
	}
	return nil
}

// writeNew creates path (failing when it exists), writes data and syncs it.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("generate key: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("generate key: sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("generate key: close %s: %w", path, err)
	}
	return nil
}
