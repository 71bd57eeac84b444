package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

const maxBulk = 16 << 30 // refuse /bulk requests above 16 GiB

// runOrigin serves a loopback HTTPS origin:
//
//	GET /                 -> -body bytes (default 128)
//	GET /bulk?bytes=N     -> N bytes, streamed, with Content-Length
//
// HTTP/1.1 only (no h2), keep-alive, no idle timeout below -idle-timeout so
// that the idle-tunnel test can hold thousands of connections.
func runOrigin(args []string) error {
	fs := flag.NewFlagSet("origin", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:8443", "loopback address to listen on")
	caOut := fs.String("ca-out", "", "write the CA certificate (PEM) that signs the origin's leaf here (required)")
	dnsList := fs.String("dns", "origin.bench.test", "comma-separated DNS SANs for the leaf")
	bodySize := fs.Int("body", 128, "size of the GET / body in bytes")
	idleTimeout := fs.Duration("idle-timeout", 10*time.Minute, "keep-alive idle timeout")
	maxLife := fs.Duration("max-life", 2*time.Hour, "exit after this long no matter what (safety bound)")
	fs.Parse(args)
	if *caOut == "" {
		return fmt.Errorf("-ca-out is required")
	}
	if err := mustLoopback(*listen); err != nil {
		return err
	}
	nofile := raiseNofile(65536)

	host, _, _ := net.SplitHostPort(*listen)
	ips, err := parseIPs(host + ",127.0.0.1")
	if err != nil {
		return err
	}
	cs, err := newCertSet("origin.bench.test", splitList(*dnsList), ips)
	if err != nil {
		return err
	}
	if err := os.WriteFile(*caOut, cs.caPEM, 0o644); err != nil {
		return err
	}

	body := make([]byte, *bodySize)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	bodyLen := strconv.Itoa(len(body))
	chunk := make([]byte, 256<<10)
	for i := range chunk {
		chunk[i] = byte(i)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"text/plain"}
		h["Content-Length"] = []string{bodyLen}
		w.Write(body)
	})
	mux.HandleFunc("GET /bulk", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("bytes"), 10, 64)
		if err != nil || n < 0 || n > maxBulk {
			http.Error(w, "bad bytes", http.StatusBadRequest)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Length", strconv.FormatInt(n, 10))
		for n > 0 {
			c := chunk
			if int64(len(c)) > n {
				c = c[:n]
			}
			if _, err := w.Write(c); err != nil {
				return
			}
			n -= int64(len(c))
		}
	})

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	tlsCfg := &tls.Config{
		Certificates: []tls.Certificate{cs.tlsCert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"},
	}
	srv := &http.Server{
		Handler:      mux,
		TLSConfig:    tlsCfg,
		IdleTimeout:  *idleTimeout,
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}, // no h2
		ErrorLog:     log.New(os.Stderr, "origin: ", 0),
	}
	srv.SetKeepAlivesEnabled(true)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		select {
		case <-ctx.Done():
		case <-time.After(*maxLife):
			fmt.Fprintln(os.Stderr, "origin: -max-life reached, exiting")
		}
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		srv.Close()
	}()

	fmt.Printf("READY origin=%s nofile=%d\n", ln.Addr(), nofile)
	err = srv.Serve(tls.NewListener(ln, tlsCfg))
	if err == http.ErrServerClosed {
		return nil
	}
	return err
}
