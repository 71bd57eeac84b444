package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// cmdHealthcheck is `fixedgate healthcheck --url URL`: one GET, exit 0 on a 2xx answer and 1
// otherwise with a one-line reason on stderr. It exists for images without a shell or curl
// (distroless): Docker's HEALTHCHECK and Kubernetes exec probes run the binary itself. It never
// uses a proxy from the environment (HTTPS_PROXY set for the proxy's own clients must not
// redirect its health check) and does not follow redirects.
func cmdHealthcheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("healthcheck", stderr)
	rawURL := fs.String("url", "", "URL to GET, e.g. http://127.0.0.1:9090/readyz")
	timeout := fs.Duration("timeout", 5*time.Second, "whole request, connect to last body byte")
	cacert := fs.String("cacert", "", "https only: PEM roots to verify the server with (default: system roots)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *rawURL == "" {
		fmt.Fprintln(stderr, "fixedgate healthcheck: --url URL is required (e.g. http://127.0.0.1:9090/readyz)")
		return errUsage
	}
	u, err := url.Parse(*rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fmt.Fprintf(stderr, "fixedgate healthcheck: --url %q must be an absolute http:// or https:// URL\n", *rawURL)
		return errUsage
	}
	if *timeout <= 0 {
		fmt.Fprintln(stderr, "fixedgate healthcheck: --timeout must be positive")
		return errUsage
	}
	client, err := healthcheckClient(*cacert)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	req.Header.Set("User-Agent", "fixedgate-healthcheck/"+versionString())
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("healthcheck %s: no answer within %s", u.Redacted(), *timeout)
		}
		return fmt.Errorf("healthcheck %s: %s", u.Redacted(), oneLine(err.Error()))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		reason := resp.Status
		if b := oneLine(string(body)); b != "" {
			reason += ": " + b
		}
		return fmt.Errorf("healthcheck %s: %s", u.Redacted(), reason)
	}
	return nil
}

// oneLine keeps the first line of s, trimmed, for a reason that fits one log line.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// healthcheckClient is the client of `fixedgate healthcheck`: no proxy from the environment, no
// redirects, no keep-alive; cacert (optional) replaces the system roots for https.
func healthcheckClient(cacert string) (*http.Client, error) {
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true, TLSClientConfig: &tls.Config{}}
	if cacert != "" {
		pem, err := os.ReadFile(cacert)
		if err != nil {
			return nil, fmt.Errorf("healthcheck: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("healthcheck: %s holds no PEM certificate", cacert)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}
