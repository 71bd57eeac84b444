// Command loadgen is the load generator, loopback HTTPS origin and DNS server
// used by bench/run.sh (CONNECT: fixedgate vs squid, tinyproxy) and
// bench/gateway.sh (reverse proxy: fixedgate vs nginx, haproxy).
//
// Sub-modes:
//
//	loadgen origin    -listen 127.0.0.1:8443 -ca-out FILE [-h2]
//	loadgen gencert   -dir DIR -ips 127.0.0.11 [-dns name]
//	loadgen dns       -listen 127.0.0.1:0 -addr-out FILE -name origin.bench.test=127.0.0.1
//	loadgen newconn   [client flags]   fresh CONNECT + TLS + GET / + close, N workers
//	loadgen keepalive [client flags]   N tunnels opened once, keep-alive GETs inside
//	loadgen bulk      [client flags]   one tunnel, GET /bulk?bytes=N
//	loadgen idle      [client flags]   open N tunnels, print READY, hold until SIGUSR1
//	loadgen probe     [client flags]   retry one tunnel + GET until it works (readiness)
//
// Gateway (reverse proxy) modes, see gateway.go:
//
//	loadgen gw-ka     -addr IP:port -ca FILE [-sni/-host gw.bench.test]   HTTP/1.1 keep-alive
//	loadgen gw-h2     -addr IP:port -ca FILE -c 16 -streams 4             HTTP/2
//	loadgen gw-new    -addr IP:port -ca FILE                              fresh TLS per request
//	loadgen gw-probe  -addr IP:port -ca FILE [-expect-fail]               readiness / negative control
//	loadgen gw-bulk   -addr IP:port -ca FILE [-bytes N] [-h2]             one GET /bulk?bytes=N, MiB/s
//
// Client modes print exactly one line starting with "RESULT " on stdout, made
// of space-separated key=value pairs, for run.sh to parse.
//
// Everything is meant for loopback only: the origin refuses to listen on a
// non-loopback address, and the client refuses to dial one.
package main

import (
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
)

func usage() {
	fmt.Fprintf(os.Stderr, `usage: loadgen MODE [flags]
modes: origin | gencert | dns | newconn | keepalive | bulk | idle | probe
       gw-ka | gw-h2 | gw-new | gw-probe | gw-bulk
run "loadgen MODE -h" for the flags of a mode
`)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	mode, args := os.Args[1], os.Args[2:]
	var err error
	switch mode {
	case "origin":
		err = runOrigin(args)
	case "gencert":
		err = runGencert(args)
	case "dns":
		err = runDNS(args)
	case "newconn", "keepalive", "bulk", "idle", "probe":
		err = runClient(mode, args)
	case "gw-ka", "gw-h2", "gw-new", "gw-probe", "gw-bulk":
		err = runGateway(mode, args)
	case "-h", "--help", "help":
		usage()
	default:
		fmt.Fprintf(os.Stderr, "loadgen: unknown mode %q\n", mode)
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadgen %s: %v\n", mode, err)
		os.Exit(1)
	}
}

// raiseNofile lifts RLIMIT_NOFILE as far as the hard limit (or want, if the
// process may raise the hard limit) and returns the soft limit in force.
func raiseNofile(want uint64) uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	if rl.Cur >= want {
		return rl.Cur
	}
	try := syscall.Rlimit{Cur: want, Max: want}
	if rl.Max > want {
		try.Max = rl.Max
	}
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &try) == nil {
		return want
	}
	rl.Cur = rl.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	return rl.Cur
}

// mustLoopback rejects any address that is not a literal loopback IP
// (127.0.0.0/8 or ::1). The benchmark must never send a packet elsewhere.
func mustLoopback(hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("bad address %q: %w", hostport, err)
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("address %q is not a loopback IP literal; loadgen only talks to 127.0.0.0/8 or ::1", hostport)
	}
	return nil
}
