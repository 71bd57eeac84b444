package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/fixedgate/fixedgate/proxy/resolver/dnstest"
)

// runDNS serves a loopback DNS server (the project's dnstest package: UDP and
// TCP on one kernel-chosen port) so that a proxy can resolve the bench origin
// by name. It answers only the -name entries; everything else is NXDOMAIN.
//
//	loadgen dns -listen 127.0.0.1:0 -addr-out FILE -name origin.bench.test=127.0.0.1
//
// It checks its own answers, writes the host:port to -addr-out, prints
// "READY dns=host:port" and serves until SIGINT/SIGTERM or -max-life.
func runDNS(args []string) error {
	fs := flag.NewFlagSet("dns", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "loopback IP to listen on; the port must be 0 (the kernel picks one free for UDP and TCP)")
	addrOut := fs.String("addr-out", "", "write the server's host:port here (required)")
	ttl := fs.Uint("ttl", 300, "TTL of the answers, seconds")
	maxLife := fs.Duration("max-life", 2*time.Hour, "exit after this long no matter what (safety bound)")
	names := map[string][]netip.Addr{}
	fs.Func("name", "NAME=IP[,IP...] to answer (repeatable; loopback IPs only)", func(v string) error {
		name, list, ok := strings.Cut(v, "=")
		if !ok || name == "" {
			return fmt.Errorf("want NAME=IP[,IP...], got %q", v)
		}
		for _, s := range splitList(list) {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return err
			}
			if !a.IsLoopback() {
				return fmt.Errorf("%s: only loopback answers are allowed (the benchmark stays on 127.0.0.0/8)", a)
			}
			names[name] = append(names[name], a)
		}
		return nil
	})
	fs.Parse(args)
	if *addrOut == "" {
		return fmt.Errorf("-addr-out is required")
	}
	if len(names) == 0 {
		return fmt.Errorf("at least one -name is required")
	}
	if *ttl > 1<<31-1 {
		return fmt.Errorf("-ttl out of range")
	}
	if err := mustLoopback(*listen); err != nil {
		return err
	}
	host, port, _ := net.SplitHostPort(*listen)
	if port != "0" {
		return fmt.Errorf("-listen %s: the port must be 0 (dnstest picks one free for both UDP and TCP)", *listen)
	}
	srv, err := dnstest.Start(host)
	if err != nil {
		return err
	}
	defer srv.Close()
	for name, addrs := range names {
		srv.Set(name, uint32(*ttl), addrs...)
	}

	// Self-check over UDP and TCP before announcing readiness.
	for _, network := range []string{"udp", "tcp"} {
		r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, srv.Addr)
		}}
		for name, want := range names {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			got, err := r.LookupNetIP(ctx, "ip", name)
			cancel()
			if err != nil {
				return fmt.Errorf("self-check over %s: %s: %w", network, name, err)
			}
			for _, a := range want {
				if !slices.Contains(got, a) {
					return fmt.Errorf("self-check over %s: %s answered %v, want %v", network, name, got, want)
				}
			}
		}
	}

	tmp := filepath.Join(filepath.Dir(*addrOut), "."+filepath.Base(*addrOut)+".tmp")
	if err := os.WriteFile(tmp, []byte(srv.Addr+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, *addrOut); err != nil {
		return err
	}
	fmt.Printf("READY dns=%s names=%d ttl=%d\n", srv.Addr, len(names), *ttl)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	select {
	case <-ctx.Done():
	case <-time.After(*maxLife):
		fmt.Fprintln(os.Stderr, "dns: -max-life reached, exiting")
	}
	return nil
}
