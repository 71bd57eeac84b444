package main

// The end-to-end harness: it builds the real fixedgate binary once, and starts it, a real HTTPS
// origin, a real DNS server and real clients on loopback addresses. Nothing here is mocked and no
// packet leaves 127.0.0.0/8.

import (
	"bufio"
	"crypto/sha256"
	gotls "crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fixedgate/fixedgate/proxy/resolver/dnstest"
	"github.com/fixedgate/fixedgate/tls/devca"
)

const (
	ingressIP = "127.0.0.10"
	egressIP  = "127.0.0.20"
	originIP  = "127.0.0.30"
	dnsIP     = "127.0.0.53"
	testUser  = "acme-corp"
	testKey   = "s3cret-key"
)

var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fixedgate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "fixedgate")
	args := []string{"build", "-o", binPath}
	if raceBuild {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build fixedgate:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// origin is a real HTTPS server on originIP with its own CA. It reports the address that
// connected to it, echoes request headers, and can hold a response (/slow) for shutdown tests.
type origin struct {
	ca       *devca.CA
	caFile   string
	port     int
	received chan string // request paths, as they arrive
}

func startOrigin(t *testing.T) *origin {
	t.Helper()
	ca := newTestCA(t, "e2e origin CA")
	o := &origin{ca: ca, caFile: filepath.Join(t.TempDir(), "origin-ca.pem"), received: make(chan string, 100)}
	if err := os.WriteFile(o.caFile, ca.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue([]string{"api.test", "slow.test"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := gotls.Listen("tcp", originIP+":0", &gotls.Config{Certificates: []gotls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	o.port = ln.Addr().(*net.TCPAddr).Port
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		o.received <- r.URL.Path
		fmt.Fprintf(w, "remote=%s tls=%v\n", r.RemoteAddr, r.TLS != nil)
	})
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(r.Header)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		o.received <- r.URL.Path
		d, _ := time.ParseDuration(r.URL.Query().Get("d"))
		time.Sleep(d) // the behaviour under test: a response that takes a while
		io.WriteString(w, "slow done\n")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return o
}

func (o *origin) pool() *x509.CertPool { return o.ca.Pool() }

// startEcho runs a plain TCP server on originIP that reads until EOF, then answers with how many
// bytes it got and closes: it proves half-close travels through a tunnel.
func startEcho(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", originIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				n, _ := io.Copy(io.Discard, c)
				fmt.Fprintf(c, "got %d bytes from %s", n, c.RemoteAddr().(*net.TCPAddr).IP)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// startGreeter runs a plain TCP server on originIP that says hello and closes at once, before
// the client has finished: the upstream ends a tunnel first.
func startGreeter(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", originIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "hello\n")
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

func startDNS(t *testing.T) *dnstest.Server {
	t.Helper()
	s, err := dnstest.Start(dnsIP)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// freePort returns a port free on ip right now.
func freePort(t *testing.T, ip string) int {
	t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func keySHA(key string) string {
	s := sha256.Sum256([]byte(key))
	return hex.EncodeToString(s[:])
}

// child is a process a test started: the lines of its log are kept (and printed when the
// test fails), and it is killed at cleanup if it still runs.
type child struct {
	name    string
	cmd     *exec.Cmd
	mu      sync.Mutex
	logs    strings.Builder
	exited  chan struct{}
	exitErr error // valid once exited is closed
}

// startChild starts cmd and reads its log from r (a pipe of its output) line by line, calling
// onLine, if set, for each.
func startChild(t *testing.T, name string, cmd *exec.Cmd, r io.Reader, onLine func(string)) *child {
	t.Helper()
	c := &child{name: name, cmd: cmd, exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			c.mu.Lock()
			c.logs.WriteString(line + "\n")
			c.mu.Unlock()
			if onLine != nil {
				onLine(line)
			}
		}
		c.exitErr = cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-c.exited:
		default:
			cmd.Process.Kill()
			<-c.exited
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", name, c.log())
		}
	})
	return c
}

// waitListening waits (bounded) until every addr accepts a connection: a daemon that binds its
// ports after starting gives no other signal. It fails the test if the child exits first.
func (c *child) waitListening(t *testing.T, addrs ...string) {
	t.Helper()
	for _, addr := range addrs {
		waitFor(t, 10*time.Second, c.name+" listening on "+addr, func() bool {
			select {
			case <-c.exited:
				t.Fatalf("%s exited: %v\n%s", c.name, c.exitErr, c.log())
			default:
			}
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				conn.Close()
			}
			return err == nil
		})
	}
}

func (c *child) log() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.logs.String()
}

// newTestCA makes a throwaway CA for a test's certificates.
func newTestCA(t *testing.T, name string) *devca.CA {
	t.Helper()
	ca, err := devca.New(name)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// proc is a running fixedgate binary.
type proc struct {
	*child
	t          *testing.T
	plain      string // host:port of the plain listener
	tlsAddr    string // host:port of the TLS listener
	admin      string
	caFile     string // the proxy's self-signed CA
	stdoutFile string
	readyOnce  sync.Once
	ready      chan struct{}
}

// fixture is the usual world: origin, DNS, and a proxy config template.
type fixture struct {
	origin *origin
	dns    *dnstest.Server
	echo   int
	greet  int
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{origin: startOrigin(t), dns: startDNS(t), echo: startEcho(t), greet: startGreeter(t)}
	f.dns.Set("api.test", 60, netip.MustParseAddr(originIP))
	f.dns.Set("slow.test", 60, netip.MustParseAddr(originIP))
	f.dns.Set("echo.test", 60, netip.MustParseAddr(originIP))
	f.dns.Set("greet.test", 60, netip.MustParseAddr(originIP))
	f.dns.Set("internal.test", 60, netip.MustParseAddr("10.20.30.40"))
	f.dns.Set("mixed.test", 60, netip.MustParseAddr(originIP), netip.MustParseAddr("169.254.169.254"))
	return f
}

// config returns a YAML config for the proxy; extra is appended verbatim (top-level keys).
func (f *fixture) config(plainPort, tlsPort, adminPort int, caDir, extra string) string {
	return fmt.Sprintf(`listen:
  - {address: "%[1]s:%[2]d", tls: false}
  - {address: "%[1]s:%[3]d", tls: true}
tls:
  self_signed: {dir: %[4]q}
egress:
  addresses: [%[5]s]
resolver:
  servers: [%[6]q]
forward:
  users:
    - {name: %[7]s, key_sha256: %[8]s}
  allow:
    - {host: api.test, ports: [%[9]d], upgrade_tls: true}
    - {host: "*.test", ports: [%[9]d, %[10]d, %[15]d]}
    - {host: "*", ports: [%[2]d, %[11]d]}
  allow_networks: [%[12]s/32]
upstream_tls:
  ca_file: %[13]q
admin:
  listen: "%[1]s:%[11]d"
log: {level: info, format: json}
%[14]s`, ingressIP, plainPort, tlsPort, caDir, egressIP, f.dns.Addr, testUser, keySHA(testKey),
		f.origin.port, f.echo, adminPort, originIP, f.origin.caFile, extra, f.greet)
}

// startProxy writes the config from f and starts the binary, waiting for its "ready" log line.
func (f *fixture) startProxy(t *testing.T, extra string) *proc {
	t.Helper()
	return f.startProxyWith(t, extra, nil)
}

// startProxyWith is startProxy with edit, if set, applied to the config text first.
func (f *fixture) startProxyWith(t *testing.T, extra string, edit func(cfg string) string) *proc {
	t.Helper()
	plain, tlsPort, admin := freePort(t, ingressIP), freePort(t, ingressIP), freePort(t, ingressIP)
	caDir := filepath.Join(t.TempDir(), "ca")
	cfg := f.config(plain, tlsPort, admin, caDir, extra)
	if edit != nil {
		cfg = edit(cfg)
	}
	p := startBinary(t, cfg)
	p.caFile = filepath.Join(caDir, "ca.crt")
	p.plain = fmt.Sprintf("%s:%d", ingressIP, plain)
	p.tlsAddr = fmt.Sprintf("%s:%d", ingressIP, tlsPort)
	p.admin = fmt.Sprintf("%s:%d", ingressIP, admin)
	p.waitReady()
	return p
}

func startBinary(t *testing.T, config string) *proc {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fixedgate.yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return startBinaryArgs(t, "serve", "--config", path)
}

// startBinaryArgs starts fixedgate with args, collecting its stdout and its log (stderr).
func startBinaryArgs(t *testing.T, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	// The proxy must never use a proxy from its own environment for outbound traffic.
	cmd.Env = append(os.Environ(), "HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9", "NO_PROXY=")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, ready: make(chan struct{})}
	// stdout goes to a file the child writes directly (no copying goroutine), so whatever it
	// printed before its "ready" log line is there once that line has been seen.
	out, err := os.CreateTemp(t.TempDir(), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	p.stdoutFile = out.Name()
	cmd.Stdout = out
	// Under go test -race the binary is built with -race: a race it reports fails the test.
	// Registered before the child's own cleanup, this runs after it, when the log is complete.
	t.Cleanup(func() {
		if p.child == nil {
			return
		}
		if l := p.log(); strings.Contains(l, "WARNING: DATA RACE") {
			i := strings.Index(l, "WARNING: DATA RACE")
			t.Errorf("fixedgate reported a data race:\n%s", l[i:min(len(l), i+8000)])
		}
	})
	p.child = startChild(t, "fixedgate", cmd, stderr, func(line string) {
		if strings.Contains(line, `"msg":"ready"`) || strings.Contains(line, "\tready\t") {
			p.readyOnce.Do(func() { close(p.ready) })
		}
	})
	return p
}

func (p *proc) out() string {
	b, err := os.ReadFile(p.stdoutFile)
	if err != nil {
		p.t.Fatalf("read fixedgate stdout: %v", err)
	}
	return string(b)
}

func (p *proc) waitReady() {
	p.t.Helper()
	select {
	case <-p.ready:
	case <-p.exited:
		p.t.Fatalf("fixedgate exited before ready: %v\n%s", p.exitErr, p.log())
	case <-time.After(60 * time.Second):
		p.t.Fatalf("fixedgate not ready after 60s\n%s", p.log())
	}
}

// wait returns the process's exit error once it exits (bounded).
func (p *proc) wait(d time.Duration) error {
	p.t.Helper()
	select {
	case <-p.exited:
		return p.exitErr
	case <-time.After(d):
		p.t.Fatalf("fixedgate still running after %s", d)
		return nil
	}
}

func (p *proc) signal(s syscall.Signal) {
	if err := p.cmd.Process.Signal(s); err != nil {
		p.t.Fatal(err)
	}
}

// rawConnect sends a CONNECT with the given target and headers over a fresh plain connection
// and returns the response and the connection (for tunnelling further).
func rawConnect(t *testing.T, proxyAddr, target string, headers ...string) (*http.Response, net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", proxyAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n"
	for _, h := range headers {
		req += h + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s: %v", target, err)
	}
	return resp, c, br
}

func authHeader() string { return "Proxy-Authorization: Basic " + basicAuth(testUser, testKey) }

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	r.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
