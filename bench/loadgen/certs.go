package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// certSet is a throwaway CA and one ECDSA P-256 leaf signed by it.
type certSet struct {
	caPEM   []byte
	leafPEM []byte
	keyPEM  []byte
	tlsCert tls.Certificate
}

func newCertSet(cn string, dnsNames []string, ips []net.IP) (*certSet, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: cn + " bench CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano() + 1),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     dnsNames,
		IPAddresses:  ips,
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(leafKey)
	if err != nil {
		return nil, err
	}
	cs := &certSet{
		caPEM:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		leafPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
	cs.tlsCert, err = tls.X509KeyPair(cs.leafPEM, cs.keyPEM)
	if err != nil {
		return nil, err
	}
	return cs, nil
}

func parseIPs(list string) ([]net.IP, error) {
	var ips []net.IP
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, fmt.Errorf("bad IP %q", s)
		}
		ips = append(ips, ip)
	}
	return ips, nil
}

func splitList(list string) []string {
	var out []string
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// runGencert writes ca.crt, server.crt and server.key (ECDSA P-256) into -dir,
// for peers such as squid's https_port.
func runGencert(args []string) error {
	fs := flag.NewFlagSet("gencert", flag.ExitOnError)
	dir := fs.String("dir", "", "output directory (required)")
	ipList := fs.String("ips", "127.0.0.1", "comma-separated IP SANs")
	dnsList := fs.String("dns", "", "comma-separated DNS SANs")
	cn := fs.String("cn", "bench-proxy", "leaf common name")
	fs.Parse(args)
	if *dir == "" {
		return fmt.Errorf("-dir is required")
	}
	ips, err := parseIPs(*ipList)
	if err != nil {
		return err
	}
	cs, err := newCertSet(*cn, splitList(*dnsList), ips)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	for name, data := range map[string][]byte{"ca.crt": cs.caPEM, "server.crt": cs.leafPEM, "server.key": cs.keyPEM} {
		mode := os.FileMode(0o644)
		if name == "server.key" {
			mode = 0o640
		}
		if err := os.WriteFile(filepath.Join(*dir, name), data, mode); err != nil {
			return err
		}
	}
	return nil
}
