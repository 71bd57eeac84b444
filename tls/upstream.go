package tls

import (
	gotls "crypto/tls"
	"crypto/x509"
	"fmt"
)

// ClientConfig loads the configured files once and returns a TLS client
// configuration template for connections to origins and backends: RootCAs
// from ca_file (or the system roots), the client certificate if set, and the
// minimum version. Certificate verification is always on. Callers clone the
// result and set ServerName for each connection. Errors are relative to the
// `upstream_tls:` key, like Validate's.
func (u UpstreamConfig) ClientConfig() (*gotls.Config, error) {
	if err := u.Validate(); err != nil {
		return nil, err
	}
	minVersion, err := parseMinVersion(u.MinVersion)
	if err != nil {
		return nil, err
	}
	c := &gotls.Config{MinVersion: minVersion}
	if u.CAFile != "" {
		if c.RootCAs, err = loadPool(u.CAFile); err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
	} else {
		if c.RootCAs, err = x509.SystemCertPool(); err != nil {
			return nil, fmt.Errorf("load system roots: %w", err)
		}
	}
	if u.ClientCert != "" {
		pair, err := gotls.LoadX509KeyPair(u.ClientCert, u.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("client_cert: load client certificate %s with key %s: %w", u.ClientCert, u.ClientKey, err)
		}
		c.Certificates = []gotls.Certificate{pair}
	}
	return c, nil
}
