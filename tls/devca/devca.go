// Package devca is a small local certificate authority. fixedgate uses it for
// the `self_signed` listener mode, for the origin servers of `fixedgate demo`,
// and in tests, so that every TLS connection on a development machine is
// verified against a real root instead of being skipped.
package devca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	gotls "crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// DefaultCommonName is the subject common name of a CA made by LoadOrCreate,
// and of one made by New with an empty name.
const DefaultCommonName = "fixedgate local CA"

// CAValidity is how long a new root is valid. It is long so that a developer
// who trusted the root once does not have to do it again.
const CAValidity = 10 * 365 * 24 * time.Hour

// File names inside the directory given to LoadOrCreate.
const (
	CertFile = "ca.crt"
	KeyFile  = "ca.key"
)

// clockSkew backdates NotBefore so that a peer whose clock runs slightly
// behind still accepts a certificate issued a moment ago.
const clockSkew = time.Hour

// CA is a root certificate and its private key. It is safe for concurrent use.
type CA struct {
	cert     *x509.Certificate
	key      crypto.Signer
	certPEM  []byte
	certPath string
}

// New creates a CA in memory: an ECDSA P-256 root valid for ten years. An
// empty commonName means DefaultCommonName.
func New(commonName string) (*CA, error) {
	if commonName == "" {
		commonName = DefaultCommonName
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"fixedgate"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse new CA certificate: %w", err)
	}
	return &CA{
		cert:    cert,
		key:     key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	}, nil
}

// LoadOrCreate loads the CA persisted in dir (ca.crt and ca.key), or creates
// one there when neither file exists; created reports which happened. The
// directory is created with mode 0700, the certificate is written 0644 and the
// key 0600, each atomically. A file that is unreadable, corrupt, expired or
// does not match its partner is an error naming that file: it is never
// replaced, because clients may already trust the root it holds.
func LoadOrCreate(dir string) (ca *CA, created bool, err error) {
	if dir == "" {
		return nil, false, errors.New("local CA directory: empty path")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("create local CA directory %s: %w", dir, err)
	}
	certPath := filepath.Join(dir, CertFile)
	keyPath := filepath.Join(dir, KeyFile)

	certExists, err := exists(certPath)
	if err != nil {
		return nil, false, err
	}
	keyExists, err := exists(keyPath)
	if err != nil {
		return nil, false, err
	}
	switch {
	case certExists && keyExists:
		ca, err := load(certPath, keyPath)
		if err != nil {
			return nil, false, err
		}
		return ca, false, nil
	case certExists:
		return nil, false, fmt.Errorf("local CA: %s exists but %s is missing; restore the key or remove both files to create a new CA", certPath, keyPath)
	case keyExists:
		return nil, false, fmt.Errorf("local CA: %s exists but %s is missing; restore the certificate or remove both files to create a new CA", keyPath, certPath)
	}

	ca, err = New(DefaultCommonName)
	if err != nil {
		return nil, false, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		return nil, false, fmt.Errorf("encode CA key: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	// The key goes first: a crash in between leaves a key without a
	// certificate, which LoadOrCreate reports instead of guessing.
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, false, err
	}
	if err := writeFileAtomic(certPath, ca.certPEM, 0o644); err != nil {
		return nil, false, err
	}
	ca.certPath = certPath
	return ca, true, nil
}

// CertPEM returns the root certificate in PEM form, for clients to trust.
func (ca *CA) CertPEM() []byte {
	return bytes.Clone(ca.certPEM)
}

// CertPath returns the path of the persisted root certificate, or "" for a
// CA made by New.
func (ca *CA) CertPath() string {
	return ca.certPath
}

// Certificate returns the parsed root certificate.
func (ca *CA) Certificate() *x509.Certificate {
	return ca.cert
}

// Pool returns a new certificate pool holding only this root, for clients
// and servers that should trust this CA and nothing else.
func (ca *CA) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	return pool
}

// Issue returns a leaf certificate for the given names with a fresh ECDSA
// P-256 key. It carries both the serverAuth and clientAuth extended key
// usages so the same call serves listeners and mTLS clients. The validity is
// cut at the CA's own expiry, and the result has its Leaf field set.
func (ca *CA) Issue(dnsNames []string, ips []netip.Addr, validity time.Duration) (gotls.Certificate, error) {
	if len(dnsNames) == 0 && len(ips) == 0 {
		return gotls.Certificate{}, errors.New("issue certificate: no DNS names or IP addresses")
	}
	if validity <= 0 {
		return gotls.Certificate{}, fmt.Errorf("issue certificate: validity %s is not positive", validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return gotls.Certificate{}, fmt.Errorf("generate leaf key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return gotls.Certificate{}, err
	}
	netIPs := make([]net.IP, 0, len(ips))
	for _, ip := range ips {
		if !ip.IsValid() {
			return gotls.Certificate{}, errors.New("issue certificate: invalid IP address")
		}
		netIPs = append(netIPs, net.IP(ip.Unmap().WithZone("").AsSlice()))
	}
	var commonName string
	if len(dnsNames) > 0 {
		commonName = dnsNames[0]
	} else {
		commonName = ips[0].Unmap().WithZone("").String()
	}
	now := time.Now()
	notAfter := now.Add(validity)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: commonName, Organization: []string{"fixedgate"}},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     append([]string(nil), dnsNames...),
		IPAddresses:  netIPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return gotls.Certificate{}, fmt.Errorf("issue certificate for %v %v: %w", dnsNames, ips, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return gotls.Certificate{}, fmt.Errorf("parse issued certificate: %w", err)
	}
	return gotls.Certificate{
		Certificate: [][]byte{der},
		PrivateKey:  key,
		Leaf:        leaf,
	}, nil
}

func load(certPath, keyPath string) (*CA, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("read local CA certificate %s: %w", certPath, err)
	}
	block, rest := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("load local CA certificate %s: no PEM CERTIFICATE block", certPath)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("load local CA certificate %s: unexpected data after the certificate", certPath)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("load local CA certificate %s: %w", certPath, err)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, fmt.Errorf("load local CA certificate %s: not a CA certificate", certPath)
	}
	if now := time.Now(); now.After(cert.NotAfter) {
		return nil, fmt.Errorf("load local CA certificate %s: expired on %s; remove %s and %s to create a new CA (clients must trust the new one)",
			certPath, cert.NotAfter.UTC().Format(time.RFC3339), certPath, keyPath)
	}

	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("read local CA key %s: %w", keyPath, err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load local CA key %s: %w", keyPath, err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("load local CA key %s: does not match certificate %s", keyPath, certPath)
	}
	return &CA{cert: cert, key: key, certPEM: certPEM, certPath: certPath}, nil
}

func parseKey(keyPEM []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	var (
		parsed any
		err    error
	)
	switch block.Type {
	case "PRIVATE KEY":
		parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		parsed, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
	}
	if err != nil {
		return nil, err
	}
	signer, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported key type %T", parsed)
	}
	return signer, nil
}

func exists(path string) (bool, error) {
	_, err := os.Lstat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("stat %s: %w", path, err)
	}
}

// writeFileAtomic writes data to a temporary file beside path, syncs it and
// renames it over path, then syncs the directory, so that readers see either
// nothing or the whole file even across a crash.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: sync: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write %s: open directory: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write %s: sync directory: %w", path, err)
	}
	return nil
}

func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}
