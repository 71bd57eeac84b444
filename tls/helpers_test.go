package tls

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	gotls "crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/fixedgate/fixedgate/tls/devca"
)

const ioTimeout = 5 * time.Second

// handshake is what a test server saw for one connection.
type handshake struct {
	serverName string // SNI as the server received it
	state      gotls.ConnectionState
	err        error
}

// testServer is a real TLS listener on loopback that completes the
// handshake, records it and writes "ok\n" so that a client also learns about
// failures the server detects after the client's side of a TLS 1.3 handshake
// is done (client certificates).
type testServer struct {
	addr string
	seen chan handshake
	wg   sync.WaitGroup
}

func startServer(t *testing.T, host string, cfg *gotls.Config) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{addr: ln.Addr().String(), seen: make(chan handshake, 16)}
	cfg = cfg.Clone()
	var lastSNI sync.Map
	cfg.GetConfigForClient = func(hello *gotls.ClientHelloInfo) (*gotls.Config, error) {
		lastSNI.Store(hello.Conn, hello.ServerName)
		return nil, nil
	}
	s.wg.Go(func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Go(func() {
				defer raw.Close()
				_ = raw.SetDeadline(time.Now().Add(ioTimeout))
				conn := gotls.Server(raw, cfg)
				err := conn.Handshake()
				if err == nil {
					_, err = conn.Write([]byte("ok\n"))
				}
				sni, _ := lastSNI.LoadAndDelete(raw)
				name, _ := sni.(string)
				s.seen <- handshake{serverName: name, state: conn.ConnectionState(), err: err}
				_ = conn.Close()
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		s.wg.Wait()
	})
	return s
}

// next returns the server's record of the next connection.
func (s *testServer) next(t *testing.T) handshake {
	t.Helper()
	select {
	case h := <-s.seen:
		return h
	case <-time.After(ioTimeout):
		t.Fatal("server saw no connection")
		return handshake{}
	}
}

// dial connects with cfg, completes the handshake and reads the server's
// "ok" line.
func dial(t *testing.T, addr string, cfg *gotls.Config) (gotls.ConnectionState, error) {
	t.Helper()
	d := net.Dialer{Timeout: ioTimeout}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(ioTimeout))
	conn := gotls.Client(raw, cfg)
	if err := conn.Handshake(); err != nil {
		return conn.ConnectionState(), err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return conn.ConnectionState(), err
	}
	if line != "ok\n" {
		return conn.ConnectionState(), errors.New("unexpected reply " + line)
	}
	return conn.ConnectionState(), nil
}

// clientFor trusts pool and verifies the server as serverName; an IP
// literal sends no SNI, as Go and curl do for IP-literal URLs.
func clientFor(pool *x509.CertPool, serverName string) *gotls.Config {
	return &gotls.Config{RootCAs: pool, ServerName: serverName}
}

// noSNIClient sends no SNI at all but still verifies the chain against pool
// for the name expected, the way a client with an IP-literal proxy URL and a
// pinned certificate name would.
func noSNIClient(pool *x509.CertPool, expectName string) *gotls.Config {
	return &gotls.Config{
		InsecureSkipVerify: true, // replaced by the full verification below
		VerifyConnection: func(cs gotls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no peer certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
				DNSName:       expectName,
				Roots:         pool,
				Intermediates: inter,
			})
			return err
		},
	}
}

func newManager(t *testing.T, cfg Config, ips ...netip.Addr) *Manager {
	t.Helper()
	m, err := New(context.Background(), cfg, ips, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func poolFromFile(t *testing.T, path string) *x509.CertPool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		t.Fatalf("%s holds no certificate", path)
	}
	return pool
}

// writePair writes a certificate issued by ca to cert and key PEM files.
func writePair(t *testing.T, ca *devca.CA, dnsNames []string, ips []netip.Addr) FilePair {
	t.Helper()
	pair, err := ca.Issue(dnsNames, ips, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(pair.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	fp := FilePair{Cert: filepath.Join(dir, "tls.crt"), Key: filepath.Join(dir, "tls.key")}
	writeFile(t, fp.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pair.Certificate[0]}))
	writeFile(t, fp.Key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	return fp
}

func writeCA(t *testing.T, ca *devca.CA) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	writeFile(t, path, ca.CertPEM())
	return path
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func newCA(t *testing.T, name string) *devca.CA {
	t.Helper()
	ca, err := devca.New(name)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}
