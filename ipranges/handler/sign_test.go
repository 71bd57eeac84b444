package handler

// Tests of ipranges/sign.go live here, beside the handler that serves the signatures, so that
// package ipranges keeps only the files of its own owners.

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fixedgate/fixedgate/ipranges"
)

func TestGenerateLoadSignVerify(t *testing.T) {
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "k.pem"), filepath.Join(dir, "k.pub")
	if err := ipranges.GenerateKey(priv, pub); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(priv); fi.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %v", fi.Mode().Perm())
	}
	if err := ipranges.GenerateKey(priv, filepath.Join(dir, "other.pub")); err == nil || !strings.Contains(err.Error(), "not overwriting") {
		t.Errorf("overwrote a key: %v", err)
	}
	if err := ipranges.GenerateKey(filepath.Join(dir, "other.pem"), pub); err == nil {
		t.Error("overwrote a public key")
	}
	if _, err := os.Stat(filepath.Join(dir, "other.pem")); err == nil {
		t.Error("a refused GenerateKey left a private key behind")
	}
	k, err := ipranges.LoadSigningKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ipranges.LoadPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte(`{"sync_token":"1"}` + "\n")
	sig := ipranges.Sign(k, data)
	if len(sig) != ipranges.SignatureSize || sig[len(sig)-1] != '\n' {
		t.Fatalf("signature file %q", sig)
	}
	if err := ipranges.Verify(p, data, sig); err != nil {
		t.Fatal(err)
	}
	if err := ipranges.Verify(p, data, bytes.TrimSpace(sig)); err != nil {
		t.Errorf("without the newline: %v", err)
	}
	bad := bytes.Clone(data)
	bad[2] = 'S'
	if err := ipranges.Verify(p, bad, sig); !errors.Is(err, ipranges.ErrBadSignature) {
		t.Errorf("tampered data: %v", err)
	}
	for _, s := range []string{"", "not base64!", "AAAA\n"} {
		if err := ipranges.Verify(p, data, []byte(s)); err == nil || errors.Is(err, ipranges.ErrBadSignature) {
			t.Errorf("malformed signature %q: %v", s, err)
		}
	}
	// Keys of the wrong kind or file are named in the error.
	if _, err := ipranges.LoadSigningKey(pub); err == nil || !strings.Contains(err.Error(), "PRIVATE KEY") {
		t.Errorf("public key as private: %v", err)
	}
	if _, err := ipranges.LoadPublicKey(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file loaded")
	}
	if !strings.HasPrefix(ipranges.KeyFingerprint(p), "SHA256:") {
		t.Error(ipranges.KeyFingerprint(p))
	}
}

// TestOpenSSLInterop checks the documented OpenSSL commands against our format, both ways:
// OpenSSL verifies our signature, and our loader reads OpenSSL's keys.
func TestOpenSSLInterop(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "k.pem"), filepath.Join(dir, "k.pub")
	if out, err := exec.Command(openssl, "genpkey", "-algorithm", "ed25519", "-out", priv).CombinedOutput(); err != nil {
		t.Skipf("openssl has no ed25519: %v %s", err, out)
	}
	if out, err := exec.Command(openssl, "pkey", "-in", priv, "-pubout", "-out", pub).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	k, err := ipranges.LoadSigningKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ipranges.LoadPublicKey(pub); err != nil {
		t.Fatal(err)
	}
	data := []byte("{\"hello\": \"world\"}\n")
	doc, sigBin := filepath.Join(dir, "ip-ranges.json"), filepath.Join(dir, "sig.bin")
	os.WriteFile(doc, data, 0o644)
	sig := ipranges.Sign(k, data)
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(sig)))
	if err != nil || len(raw) != 64 {
		t.Fatal(len(raw), err)
	}
	os.WriteFile(sigBin, raw, 0o644)
	out, err := exec.Command(openssl, "pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin", "-in", doc, "-sigfile", sigBin).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Signature Verified Successfully") {
		t.Fatalf("openssl verify: %v %s", err, out)
	}
}
