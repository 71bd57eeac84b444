package main

// Live config reload (SIGHUP) end to end: the real binary, its config file rewritten in place
// and SIGHUP sent, with real clients on both doors and real tunnels open while it happens. A
// reload is known to be applied when fixedgate_config_reloads_total counts it (the process
// increments it after the new settings are in force and the tunnels they refuse are closed),
// and its log line is then read from the child's log.

import (
	"bufio"
	"context"
	gotls "crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// The names the reload tests use besides the fixture's. The forward door's destinations resolve
// to the line echo server's address (originIP) and are reached on its port, which no rule of the
// fixture allows; the gateway's hosts are what clients ask the TLS listener for.
const (
	hupKeep   = "keep.test"    // destination allowed in every config
	hupRevoke = "revoke.test"  // destination allowed in some configs: the one a reload revokes
	hupSpare  = "spare.test"   // destination allowed only where a test adds a rule for it
	hupExtra  = "extra.test"   // gateway host a reload routes (tls.self_signed.names has it from the start)
	hupOld    = "old.test"     // gateway host routed at start, which a reload removes and adds back
	hupNew    = "new.test"     // gateway host neither routed nor named at start
	hupRecord = "smuggle.test" // the second upstream (the recorder, 127.0.1.1; its certificate names this)
)

// startLineEcho runs a TCP server on originIP that echoes every line it reads, until the
// client closes (or 2 minutes pass without a line). Connections still open at cleanup are closed.
func startLineEcho(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", originIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	closed := false
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		closed = true
		for c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				c.Close()
				return
			}
			conns[c] = struct{}{}
			mu.Unlock()
			go func() {
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				br := bufio.NewReader(c)
				for {
					c.SetDeadline(time.Now().Add(2 * time.Minute))
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := io.WriteString(c, line); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// hupUser is a forward.users entry.
type hupUser struct{ name, key string }

func (u hupUser) auth() string { return "Proxy-Authorization: Basic " + basicAuth(u.name, u.key) }

var hupAcme = hupUser{testUser, testKey} // the fixture's user, in every config

// hupSpec is one config: the environment's base config plus these.
type hupSpec struct {
	users  []hupUser               // forward.users besides acme-corp
	allow  []string                // forward.allow rules (YAML flow mappings), first in the list
	routes []string                // routes (YAML flow mappings), first in the list
	level  string                  // log.level; "" keeps info
	edit   func(cfg string) string // applied last (broken or restart-only changes)
}

func (s hupSpec) logsInfo() bool { return s.level == "" || s.level == "info" || s.level == "debug" }

// hupEnv is a running proxy whose config file the test rewrites, with the world around it:
// the fixture (origin, DNS), a fleet behind gw.test, a second backend (the smuggling tests'
// recorder, as smuggle.test) and a line echo server.
type hupEnv struct {
	t    *testing.T
	f    *fixture
	fl   *fleet
	rec  *recorder
	echo int // the line echo server's port
	p    *proc
	path string // the config file the proxy was started with
	base string // the config text before a spec is applied
	sum  string // SHA-256 of the file running now

	admin *http.Client

	// what the log showed so far (scanLog reads it on)
	logOff   int
	reloaded []map[string]any            // SIGHUP: config reloaded
	refused  []map[string]any            // SIGHUP: config not reloaded
	revoked  map[string][]map[string]any // request lines with reason policy_reload, by client address
	revokedN int                         // ... in all

	seenReloaded int // reloaded lines matched to a reload so far
	oks, errs    int // reloads applied and refused so far
}

// on makes t (a subtest) the test e reports to, until the returned func restores the previous.
func (e *hupEnv) on(t *testing.T) func() {
	prev := e.t
	e.t = t
	return func() { e.t = prev }
}

// startHupEnv starts the world and the proxy with the config spec returns (nil: the base config).
func startHupEnv(t *testing.T, fleetSize int, spec func(e *hupEnv) hupSpec) *hupEnv {
	t.Helper()
	f := newFixture(t)
	fl := startFleet(t, fleetSize)
	f.dns.Set(fleetName, 60, fl.addrs(0, fleetSize)...)
	rec := startRecorder(t, false)
	f.dns.Set(hupRecord, 60, netip.MustParseAddr("127.0.1.1"))
	for _, n := range []string{hupKeep, hupRevoke, hupSpare} {
		f.dns.Set(n, 60, netip.MustParseAddr(originIP))
	}
	e := &hupEnv{t: t, f: f, fl: fl, rec: rec, echo: startLineEcho(t), revoked: map[string][]map[string]any{},
		admin: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}}
	t.Cleanup(e.admin.CloseIdleConnections)
	// One CA file for the three upstreams: the fleet, the recorder and the origin (api.test for
	// the forward door's absolute-form requests, sent upstream as https).
	bundle := filepath.Join(t.TempDir(), "upstream-cas.pem")
	var pems []byte
	for _, file := range []string{fl.caFile, rec.caFile, f.origin.caFile} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		pems = append(pems, b...)
	}
	if err := os.WriteFile(bundle, pems, 0o644); err != nil {
		t.Fatal(err)
	}
	e.p = startGatewayEdit(t, f, fl, "5s", "", func(cfg string) string {
		cfg = mustReplace(t, cfg, "  self_signed: {dir: ", "  self_signed: {names: ["+hupExtra+"], dir: ")
		cfg = mustReplace(t, cfg, "ca_file: "+strconv.Quote(fl.caFile), "ca_file: "+strconv.Quote(bundle))
		cfg = mustReplace(t, cfg, "  allow:\n", fmt.Sprintf("  allow:\n    - {host: %s, ports: [%d]}\n", hupKeep, e.echo))
		e.base = cfg
		if spec == nil {
			return e.render(hupSpec{})
		}
		return e.render(spec(e))
	})
	// startBinary wrote the file into a directory of its own: its path is the last argument.
	e.path = e.p.cmd.Args[len(e.p.cmd.Args)-1]
	b, err := os.ReadFile(e.path)
	if err != nil {
		t.Fatal(err)
	}
	e.sum = sha256Hex(b)
	if got := e.scrape().series("fixedgate_config_info"); len(got) != 1 || got[0] != `{sha256="`+e.sum+`"}` {
		t.Fatalf("at start fixedgate_config_info is %q, want exactly the file's sha256 %s", got, e.sum)
	}
	return e
}

func mustReplace(t *testing.T, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("config has no %q to edit:\n%s", old, s)
	}
	return strings.Replace(s, old, new, 1)
}

// render returns the config text of spec.
func (e *hupEnv) render(spec hupSpec) string {
	cfg := e.base
	var users, allow, routes string
	for _, u := range spec.users {
		users += fmt.Sprintf("    - {name: %s, key_sha256: %s}\n", u.name, keySHA(u.key))
	}
	for _, r := range spec.allow {
		allow += "    - " + r + "\n"
	}
	for _, r := range spec.routes {
		routes += "  - " + r + "\n"
	}
	cfg = mustReplace(e.t, cfg, "  users:\n", "  users:\n"+users)
	cfg = mustReplace(e.t, cfg, "  allow:\n", "  allow:\n"+allow)
	cfg = mustReplace(e.t, cfg, "routes:\n", "routes:\n"+routes)
	if spec.level != "" {
		cfg = mustReplace(e.t, cfg, "log: {level: info,", "log: {level: "+spec.level+",")
	}
	if spec.edit != nil {
		cfg = spec.edit(cfg)
	}
	return cfg
}

// Rules and routes the tests add and remove.
func (e *hupEnv) ruleFor(host string) string {
	return fmt.Sprintf("{host: %s, ports: [%d]}", host, e.echo)
}
func (e *hupEnv) routeToFleet(host, prefix string) string {
	return fmt.Sprintf("{host: %s, path_prefix: %q, upstream: \"https://%s:%d\"}", host, prefix, fleetName, e.fl.port)
}
func (e *hupEnv) routeToRecorder(host, prefix string) string {
	return fmt.Sprintf("{host: %s, path_prefix: %q, upstream: \"https://%s:%d\"}", host, prefix, hupRecord, e.rec.port)
}

// hupScrape is one reading of /metrics: value by series ("name{labels}").
type hupScrape map[string]float64

var hupSeriesLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$`)

func (e *hupEnv) scrape() hupScrape {
	e.t.Helper()
	resp, err := e.admin.Get("http://" + e.p.admin + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	m := hupScrape{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if g := hupSeriesLine.FindStringSubmatch(sc.Text()); g != nil {
			if v, err := strconv.ParseFloat(g[3], 64); err == nil {
				m[g[1]+g[2]] = v
			}
		}
	}
	if err := sc.Err(); err != nil {
		e.t.Fatal(err)
	}
	return m
}

// sum adds the series of name whose labels contain every one of labels.
func (m hupScrape) sum(name string, labels ...string) float64 {
	var s float64
	for k, v := range m {
		if n, l, _ := strings.Cut(k, "{"); n == name && hupAll(labels, func(x string) bool { return strings.Contains(l, x) }) {
			s += v
		}
	}
	return s
}

// series returns the label sets of name's series, sorted.
func (m hupScrape) series(name string) []string {
	var out []string
	for k := range m {
		if n, l, ok := strings.Cut(k, "{"); n == name {
			if ok {
				l = "{" + l
			}
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

// userSeries returns every per-user series that names user.
func (m hupScrape) userSeries(user string) []string {
	var out []string
	for k := range m {
		if strings.HasPrefix(k, "fixedgate_user_") && strings.Contains(k, `user="`+user+`"`) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func hupAll[T any](xs []T, f func(T) bool) bool {
	for _, x := range xs {
		if !f(x) {
			return false
		}
	}
	return true
}

// scanLog reads the log lines the child wrote since the last call.
func (e *hupEnv) scanLog() {
	text := e.p.log()
	chunk := text[e.logOff:]
	e.logOff = len(text)
	for _, line := range strings.Split(chunk, "\n") {
		var into func(map[string]any)
		switch {
		case strings.Contains(line, `"msg":"SIGHUP: config reloaded"`):
			into = func(m map[string]any) { e.reloaded = append(e.reloaded, m) }
		case strings.Contains(line, `"msg":"SIGHUP: config not reloaded`):
			into = func(m map[string]any) { e.refused = append(e.refused, m) }
		case strings.Contains(line, `"msg":"request"`) && strings.Contains(line, `"policy_reload"`):
			into = func(m map[string]any) {
				if c, _ := m["client"].(string); c != "" {
					e.revoked[c] = append(e.revoked[c], m)
					e.revokedN++
				}
			}
		default:
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			e.t.Fatalf("log line is not JSON: %v\n%s", err, line)
		}
		into(m)
	}
}

// hupResult is what a reload did.
type hupResult struct {
	ok      bool
	sum     string   // sha256 the reloaded line names
	changed []string // the sections it names
	err     string   // the refusal's error field
}

// reload writes spec's config over the running file, sends SIGHUP and waits until the reload is
// counted; then it reads the reload's log line and checks fixedgate_config_info.
func (e *hupEnv) reload(spec hupSpec) hupResult {
	t := e.t
	t.Helper()
	cfg := e.render(spec)
	// The proxy reads the file only on SIGHUP, so a plain write is safe.
	if err := os.WriteFile(e.path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	m := e.scrape()
	ok0, bad0 := m.sum("fixedgate_config_reloads_total", `result="success"`), m.sum("fixedgate_config_reloads_total", `result="error"`)
	refused0 := len(e.refused)
	e.p.signal(syscall.SIGHUP)
	var ok1, bad1 float64
	waitFor(t, 30*time.Second, "the reload counted in fixedgate_config_reloads_total", func() bool {
		m := e.scrape()
		ok1, bad1 = m.sum("fixedgate_config_reloads_total", `result="success"`), m.sum("fixedgate_config_reloads_total", `result="error"`)
		return ok1+bad1 > ok0+bad0
	})
	if ok1+bad1 != ok0+bad0+1 {
		t.Fatalf("one SIGHUP counted %v successes and %v errors", ok1-ok0, bad1-bad0)
	}
	res := hupResult{ok: ok1 > ok0}
	if res.ok {
		e.oks++
		e.sum = sha256Hex([]byte(cfg))
		// At warn or error the success line (info) need not be written; else it is, naming the
		// file's sha256.
		if spec.logsInfo() {
			var line map[string]any
			waitFor(t, 10*time.Second, "the SIGHUP: config reloaded log line naming sha256 "+e.sum, func() bool {
				e.scanLog()
				for ; e.seenReloaded < len(e.reloaded); e.seenReloaded++ {
					if e.reloaded[e.seenReloaded]["sha256"] == e.sum {
						line = e.reloaded[e.seenReloaded]
						e.seenReloaded++
						return true
					}
				}
				return false
			})
			res.sum, _ = line["sha256"].(string)
			ch, ok := line["changed"].([]any)
			if !ok && line["changed"] != nil {
				t.Errorf("changed is %T, want a list: %v", line["changed"], line)
			}
			for _, c := range ch {
				res.changed = append(res.changed, fmt.Sprint(c))
			}
			if line["level"] != "info" {
				t.Errorf("reloaded line has level %v, want info", line["level"])
			}
		}
	} else {
		e.errs++
		waitFor(t, 10*time.Second, "the SIGHUP: config not reloaded log line", func() bool { e.scanLog(); return len(e.refused) > refused0 })
		line := e.refused[len(e.refused)-1]
		res.err, _ = line["error"].(string)
		if line["level"] != "error" {
			t.Errorf("refusal line has level %v, want error", line["level"])
		}
	}
	if got := e.scrape().series("fixedgate_config_info"); len(got) != 1 || got[0] != `{sha256="`+e.sum+`"}` {
		t.Errorf("fixedgate_config_info series %q, want exactly one, the running file's sha256 %s", got, e.sum)
	}
	return res
}

func (e *hupEnv) mustReload(spec hupSpec) hupResult {
	e.t.Helper()
	r := e.reload(spec)
	if !r.ok {
		e.t.Fatalf("reload refused: %s", r.err)
	}
	return r
}

// hupTunnel is a CONNECT tunnel to the line echo server (or anything that echoes lines).
type hupTunnel struct {
	user, target string
	client       string // the address the proxy sees the client at (its summary line's client)
	w            io.Writer
	r            *bufio.Reader
	closeFn      func()
	seq          int
	prior        int // policy_reload lines for its client address before it opened (ports are reused)
}

// hupConnect opens a tunnel over HTTP/1.1 on the plain listener. A refusal is returned as its
// status with an error.
func hupConnect(proxyAddr string, u hupUser, target string) (*hupTunnel, int, error) {
	c, err := net.DialTimeout("tcp", proxyAddr, 5*time.Second)
	if err != nil {
		return nil, 0, err
	}
	c.SetDeadline(time.Now().Add(15 * time.Second))
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n"
	if u.name != "" {
		req += u.auth() + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		c.Close()
		return nil, 0, err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		return nil, 0, fmt.Errorf("CONNECT %s: %w", target, err)
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		c.Close()
		return nil, resp.StatusCode, fmt.Errorf("CONNECT %s as %q: %s: %s", target, u.name, resp.Status, strings.TrimSpace(string(b)))
	}
	c.SetDeadline(time.Time{})
	return &hupTunnel{user: u.name, target: target, client: c.LocalAddr().String(), w: c, r: br, closeFn: func() { c.Close() }}, 200, nil
}

// hupConnectH2 opens a tunnel as an HTTP/2 CONNECT stream on the TLS listener, on a connection of
// its own (so that its client address names it).
func hupConnectH2(tlsAddr string, roots *x509.CertPool, u hupUser, target string) (*hupTunnel, int, error) {
	var mu sync.Mutex
	var local string
	tr := &http2.Transport{
		TLSClientConfig: &gotls.Config{RootCAs: roots},
		DialTLSContext: func(ctx context.Context, network, addr string, cfg *gotls.Config) (net.Conn, error) {
			d := &gotls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
			c, err := d.DialContext(ctx, network, addr)
			if err == nil {
				mu.Lock()
				local = c.LocalAddr().String()
				mu.Unlock()
			}
			return c, err
		},
	}
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodConnect, "https://"+tlsAddr, pr)
	req.Host = target
	req.Header.Set("Proxy-Authorization", "Basic "+basicAuth(u.name, u.key))
	bound := time.AfterFunc(15*time.Second, cancel)
	resp, err := tr.RoundTrip(req)
	bound.Stop()
	if err != nil {
		cancel()
		pw.Close()
		tr.CloseIdleConnections()
		return nil, 0, fmt.Errorf("h2 CONNECT %s: %w", target, err)
	}
	closeFn := func() { pw.Close(); resp.Body.Close(); cancel(); tr.CloseIdleConnections() }
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		closeFn()
		return nil, resp.StatusCode, fmt.Errorf("h2 CONNECT %s as %q: %s: %s", target, u.name, resp.Status, strings.TrimSpace(string(b)))
	}
	mu.Lock()
	defer mu.Unlock()
	return &hupTunnel{user: u.name, target: target, client: local, w: pw, r: bufio.NewReader(resp.Body), closeFn: closeFn}, 200, nil
}

// echo sends one line through the tunnel and reads it back, within 10s (else the tunnel is
// closed and the exchange fails). Not for concurrent use.
func (tu *hupTunnel) echo() error {
	tu.seq++
	msg := fmt.Sprintf("%s via %s #%d", tu.user, tu.client, tu.seq)
	bound := time.AfterFunc(10*time.Second, tu.closeFn)
	_, err := io.WriteString(tu.w, msg+"\n")
	var line string
	if err == nil {
		line, err = tu.r.ReadString('\n')
	}
	if !bound.Stop() {
		return fmt.Errorf("no echo within 10s (%v)", err)
	}
	if err == nil && line != msg+"\n" {
		err = fmt.Errorf("echoed %q, want %q", line, msg)
	}
	return err
}

func (tu *hupTunnel) close() { tu.closeFn() }

func (tu *hupTunnel) String() string {
	return fmt.Sprintf("%s→%s (client %s)", tu.user, tu.target, tu.client)
}

// track notes the policy_reload lines of tu's client address so far: a line for an earlier
// tunnel from the same port is not tu's.
func (e *hupEnv) track(tu *hupTunnel) *hupTunnel {
	e.scanLog()
	tu.prior = len(e.revoked[tu.client])
	return tu
}

// revokedLine returns tu's policy_reload line, if the log showed it so far.
func (e *hupEnv) revokedLine(tu *hupTunnel) map[string]any {
	if ls := e.revoked[tu.client]; len(ls) > tu.prior {
		return ls[tu.prior]
	}
	return nil
}

// waitRevokedLines waits until the log has a policy_reload summary line for each tunnel and
// checks what the lines say.
func (e *hupEnv) waitRevokedLines(tuns ...*hupTunnel) {
	e.t.Helper()
	waitFor(e.t, 10*time.Second, "policy_reload summary lines for the revoked tunnels", func() bool {
		e.scanLog()
		return hupAll(tuns, func(tu *hupTunnel) bool { return e.revokedLine(tu) != nil })
	})
	for _, tu := range tuns {
		line := e.revokedLine(tu)
		if line["door"] != "connect" || line["reason"] != "policy_reload" || line["user"] != tu.user {
			e.t.Errorf("summary line of revoked tunnel %s: door %v reason %v user %v, want connect, policy_reload, %s: %v",
				tu, line["door"], line["reason"], line["user"], tu.user, line)
		}
		if msg, _ := line["error"].(string); msg == "" {
			e.t.Errorf("summary line of revoked tunnel %s has no error saying why: %v", tu, line)
		}
	}
}

// hupGet sends GET url and returns its status and body.
func hupGet(c *http.Client, url string) (int, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, string(b), err
}

// localProbe sends an origin-form GET for path to the plain listener, which answers 404 (no
// route) from the local door, and reads the whole answer. The proxy writes a request's summary
// line before the answer leaves (a response is one flush after the handler), so once this
// returns the line is written, or it never will be.
func (e *hupEnv) localProbe(path string) {
	e.t.Helper()
	c, err := net.DialTimeout("tcp", e.p.plain, 5*time.Second)
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: probe.test\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 404 {
		e.t.Fatalf("probe %s: %s, want 404 from the local door", path, resp.Status)
	}
}

func TestReloadAppliesLive(t *testing.T) {
	// Each subtest has a proxy of its own, started with a route for old.test besides gw.test's.
	var startRoutes []string
	start := func(t *testing.T) (*hupEnv, hupSpec) {
		e := startHupEnv(t, 3, func(e *hupEnv) hupSpec {
			startRoutes = []string{e.routeToFleet(hupOld, "")}
			return hupSpec{routes: startRoutes}
		})
		return e, hupSpec{routes: startRoutes}
	}

	t.Run("allow rule added", func(t *testing.T) {
		e, spec := start(t)
		target := fmt.Sprintf("%s:%d", hupSpare, e.echo)
		if _, code, err := hupConnect(e.p.plain, hupAcme, target); code != 403 {
			t.Fatalf("before the rule: %d %v, want 403", code, err)
		}
		spec.allow = append(spec.allow, e.ruleFor(hupSpare))
		if r := e.mustReload(spec); !slices.Equal(r.changed, []string{"forward"}) {
			t.Errorf("changed %q, want [forward]", r.changed)
		}
		tu, code, err := hupConnect(e.p.plain, hupAcme, target)
		if code != 200 {
			t.Fatalf("after the rule was added: %d %v, want 200", code, err)
		}
		defer tu.close()
		if err := tu.echo(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("user added", func(t *testing.T) {
		e, spec := start(t)
		newbie := hupUser{"newbie", "newbie-key"}
		target := fmt.Sprintf("%s:%d", hupKeep, e.echo)
		if _, code, err := hupConnect(e.p.plain, newbie, target); code != 407 {
			t.Fatalf("before the user exists: %d %v, want 407", code, err)
		}
		spec.users = append(spec.users, newbie)
		if r := e.mustReload(spec); !slices.Equal(r.changed, []string{"forward"}) {
			t.Errorf("changed %q, want [forward]", r.changed)
		}
		tu, code, err := hupConnect(e.p.plain, newbie, target)
		if code != 200 {
			t.Fatalf("after the user was added: %d %v, want 200", code, err)
		}
		defer tu.close()
		if err := tu.echo(); err != nil {
			t.Fatal(err)
		}
		// and the forward door's absolute-form requests take the new user too
		c := goClient(t, "http://newbie:newbie-key@"+e.p.plain, nil)
		if code, b, err := hupGet(c, fmt.Sprintf("http://api.test:%d/headers", e.f.origin.port)); code != 200 {
			t.Errorf("absolute-form GET as the new user: %d %q %v", code, b, err)
		}
	})

	t.Run("route added, upstream changed, removed", func(t *testing.T) {
		e, spec := start(t)
		// One keep-alive client throughout: each request takes the routes in force when it starts.
		c := gatewayClient(t, e.p, false)
		url := "https://" + hupExtra + "/"
		if code, b, err := hupGet(c, url); code != 404 || !strings.Contains(b, "no route for "+hupExtra) {
			t.Fatalf("before the route: %d %q %v, want 404 no route", code, b, err)
		}
		// extra.test is in tls.self_signed.names: the certificate of the start names it.
		spec.routes = append(slices.Clone(startRoutes), e.routeToFleet(hupExtra, ""))
		if r := e.mustReload(spec); !slices.Equal(r.changed, []string{"routes"}) {
			t.Errorf("changed %q, want [routes]", r.changed)
		}
		reply, code, err := getReply(c, url)
		if code != 200 || reply.SNI != fleetName {
			t.Fatalf("after the route was added: %d %v %+v, want 200 from the fleet", code, err, reply)
		}
		spec.routes = append(slices.Clone(startRoutes), e.routeToRecorder(hupExtra, ""))
		e.mustReload(spec)
		if code, b, err := hupGet(c, url); code != 200 || !strings.HasPrefix(b, "backend saw GET /") {
			t.Fatalf("after the route's upstream changed: %d %q %v, want 200 from the second upstream", code, b, err)
		}
		spec.routes = startRoutes
		e.mustReload(spec)
		if code, b, err := hupGet(c, url); code != 404 || !strings.Contains(b, "no route for "+hupExtra) {
			t.Fatalf("after the route was removed: %d %q %v, want 404 no route", code, b, err)
		}
		// gw.test, in every config, answered throughout
		if _, code, err := getReply(c, "https://"+gwHost+"/"); code != 200 {
			t.Errorf("gw.test: %d %v", code, err)
		}
	})

	t.Run("route for a host the certificate does not name yet", func(t *testing.T) {
		e, spec := start(t)
		url := "https://" + hupNew + "/"
		// Before: no certificate names the host, so the handshake fails (the proxy refuses it, or
		// the client the certificate).
		if _, _, err := hupGet(gatewayClient(t, e.p, false), url); err == nil || !strings.Contains(err.Error(), "tls") {
			t.Fatalf("before the route: %v, want the TLS handshake to fail", err)
		}
		spec.routes = append(slices.Clone(startRoutes), e.routeToFleet(hupNew, ""))
		if r := e.mustReload(spec); !slices.Equal(r.changed, []string{"routes"}) {
			t.Errorf("changed %q, want [routes]", r.changed)
		}
		// A new handshake gets a certificate from the local CA that names it, for both protocols.
		for _, h2 := range []bool{false, true} {
			if reply, code, err := getReply(gatewayClient(t, e.p, h2), url); code != 200 || reply.SNI != fleetName {
				t.Errorf("after the route was added (h2 %v): %d %v %+v, want 200 from the fleet", h2, code, err, reply)
			}
		}
		// and the names of before are still covered
		for _, host := range []string{gwHost, hupOld} {
			if _, code, err := getReply(gatewayClient(t, e.p, false), "https://"+host+"/"); code != 200 {
				t.Errorf("%s after the certificate was reissued: %d %v", host, code, err)
			}
		}
	})

	t.Run("route of the start removed and added back", func(t *testing.T) {
		e, spec := start(t)
		c := gatewayClient(t, e.p, true)
		url := "https://" + hupOld + "/"
		if _, code, err := getReply(c, url); code != 200 {
			t.Fatalf("route of the start config: %d %v", code, err)
		}
		spec.routes = nil
		e.mustReload(spec)
		if code, b, err := hupGet(c, url); code != 404 || !strings.Contains(b, "no route for "+hupOld) {
			t.Fatalf("after the route was removed: %d %q %v, want 404 no route", code, b, err)
		}
		// The certificate issued at start names the host: adding the route back needs no restart.
		spec.routes = startRoutes
		e.mustReload(spec)
		if _, code, err := getReply(c, url); code != 200 {
			t.Fatalf("after the route was added back: %d %v", code, err)
		}
	})

	t.Run("log level", func(t *testing.T) {
		e, spec := start(t)
		e.localProbe("/hup-probe-info-1")
		waitFor(t, 10*time.Second, "the request line of a probe at level info", func() bool { return strings.Contains(e.p.log(), "/hup-probe-info-1") })
		spec.level = "warn"
		if r := e.reload(spec); !r.ok {
			t.Fatalf("reload to warn refused: %s", r.err)
		}
		e.localProbe("/hup-probe-warn")
		spec.level = ""
		// Back to info: its reloaded line is written after the probe's line would have been.
		if r := e.mustReload(spec); !slices.Equal(r.changed, []string{"log"}) {
			t.Errorf("changed %q, want [log]", r.changed)
		}
		if strings.Contains(e.p.log(), "/hup-probe-warn") {
			t.Errorf("a request line was written at log.level warn")
		}
		e.localProbe("/hup-probe-info-2")
		waitFor(t, 10*time.Second, "the request line of a probe at level info again", func() bool { return strings.Contains(e.p.log(), "/hup-probe-info-2") })
	})

	t.Run("config_info follows the file", func(t *testing.T) {
		e, spec := start(t)
		// The same config in other bytes: a new sha256, no section changed.
		prev := e.sum
		spec.edit = func(cfg string) string { return "# edited by hand\n" + cfg }
		r := e.mustReload(spec)
		if r.sum == prev || r.sum != e.sum {
			t.Errorf("sha256 %s after a comment was added (before %s)", r.sum, prev)
		}
		if len(r.changed) != 0 {
			t.Errorf("changed %q for a comment, want none", r.changed)
		}
		m := e.scrape()
		if got := m.series("fixedgate_config_info"); len(got) != 1 || got[0] != `{sha256="`+e.sum+`"}` || m.sum("fixedgate_config_info") != 1 {
			t.Errorf("fixedgate_config_info %q = %v, want one series, %s, value 1", got, m.sum("fixedgate_config_info"), e.sum)
		}
		if n := m.sum("fixedgate_config_reloads_total", `result="success"`); n != float64(e.oks) {
			t.Errorf("reloads_total{success} = %v, want %d", n, e.oks)
		}
		if n := m.sum("fixedgate_config_reloads_total", `result="error"`); n != 0 {
			t.Errorf("reloads_total{error} = %v, want 0", n)
		}
	})
}

func TestReloadRefusesBadConfig(t *testing.T) {
	e := startHupEnv(t, 3, nil)
	keep := fmt.Sprintf("%s:%d", hupKeep, e.echo)
	spare := fmt.Sprintf("%s:%d", hupSpare, e.echo)
	held, code, err := hupConnect(e.p.plain, hupAcme, keep)
	if code != 200 {
		t.Fatalf("tunnel before the reloads: %d %v", code, err)
	}
	defer held.close()
	startSum := e.sum
	noAcme := func(cfg string) string { // the refused files also drop the user of the open tunnel
		return mustReplace(e.t, cfg, fmt.Sprintf("    - {name: %s, key_sha256: %s}\n", testUser, keySHA(testKey)), "")
	}
	newPlain := net.JoinHostPort(ingressIP, strconv.Itoa(freePort(t, ingressIP)))
	newAdmin := net.JoinHostPort(ingressIP, strconv.Itoa(freePort(t, ingressIP)))
	for _, tc := range []struct {
		name string
		spec hupSpec
		want []string // in the error field
	}{
		{"port out of range", hupSpec{allow: []string{fmt.Sprintf("{host: %s, ports: [70000]}", hupSpare)}, edit: noAcme},
			[]string{"forward.allow[0].ports[0]", "70000"}},
		{"unknown key", hupSpec{allow: []string{fmt.Sprintf("{host: %s, ports: [%d], upgrade: true}", hupSpare, e.echo)}, edit: noAcme},
			[]string{"forward.allow[0].upgrade", "unknown key"}},
		{"listen changed", hupSpec{allow: []string{e.ruleFor(hupSpare)}, edit: func(cfg string) string {
			return noAcme(mustReplace(e.t, cfg, `"`+e.p.plain+`", tls: false`, `"`+newPlain+`", tls: false`))
		}}, []string{"listen changed", "restart"}},
		{"admin.listen changed", hupSpec{allow: []string{e.ruleFor(hupSpare)}, edit: func(cfg string) string {
			return noAcme(mustReplace(e.t, cfg, `listen: "`+e.p.admin+`"`, `listen: "`+newAdmin+`"`))
		}}, []string{"admin", "restart"}},
		{"log.format changed", hupSpec{allow: []string{e.ruleFor(hupSpare)}, edit: func(cfg string) string {
			return noAcme(mustReplace(e.t, cfg, "format: json}", "format: console}"))
		}}, []string{"log.format", "restart"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer e.on(t)()
			r := e.reload(tc.spec)
			if r.ok {
				t.Fatalf("reload accepted")
			}
			t.Logf("refused: %s", r.err)
			for _, w := range tc.want {
				if !strings.Contains(r.err, w) {
					t.Errorf("error does not contain %q: %s", w, r.err)
				}
			}
			m := e.scrape()
			if ok, bad := m.sum("fixedgate_config_reloads_total", `result="success"`), m.sum("fixedgate_config_reloads_total", `result="error"`); ok != 0 || bad != float64(e.errs) {
				t.Errorf("reloads_total success %v error %v, want 0 and %d", ok, bad, e.errs)
			}
			if e.sum != startSum {
				t.Errorf("running sha256 moved to %s", e.sum) // reload checked config_info against e.sum
			}
			// Nothing changed: the rule the file added does not apply, the user it dropped still
			// works, its open tunnel too, and the listeners are the old ones.
			if _, code, err := hupConnect(e.p.plain, hupAcme, spare); code != 403 {
				t.Errorf("CONNECT to the host only the refused file allows: %d %v, want 403", code, err)
			}
			tu, code, err := hupConnect(e.p.plain, hupAcme, keep)
			if code != 200 {
				t.Errorf("CONNECT allowed before the refused reload: %d %v, want 200", code, err)
			} else {
				tu.close()
			}
			if err := held.echo(); err != nil {
				t.Errorf("tunnel open across the refused reload: %v", err)
			}
			for _, addr := range []string{newPlain, newAdmin} {
				if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
					c.Close()
					t.Errorf("something listens on %s, which only the refused files name", addr)
				}
			}
		})
	}
	// And a good file afterwards is applied as usual.
	if r := e.mustReload(hupSpec{allow: []string{e.ruleFor(hupSpare)}}); !slices.Equal(r.changed, []string{"forward"}) {
		t.Errorf("changed %q, want [forward]", r.changed)
	}
	tu, code, err := hupConnect(e.p.plain, hupAcme, spare)
	if code != 200 {
		t.Fatalf("after a good reload: %d %v", code, err)
	}
	tu.close()
	if err := held.echo(); err != nil {
		t.Errorf("tunnel open across the reloads: %v", err)
	}
}

func TestReloadRevokesTunnels(t *testing.T) {
	a, b, c := hupUser{"tenant-a", "key-a"}, hupUser{"tenant-b", "key-b"}, hupUser{"tenant-c", "key-c"}
	spec := hupSpec{users: []hupUser{a, b, c}, allow: nil}
	e := startHupEnv(t, 3, nil)
	spec.allow = []string{e.ruleFor(hupRevoke)}
	e.mustReload(spec)
	roots := rootsWith(t, e.p.caFile)
	keep := fmt.Sprintf("%s:%d", hupKeep, e.echo)
	revoke := fmt.Sprintf("%s:%d", hupRevoke, e.echo)

	open := func(u hupUser, target string, h2 bool) *hupTunnel {
		t.Helper()
		var tu *hupTunnel
		var err error
		if h2 {
			tu, _, err = hupConnectH2(e.p.tlsAddr, roots, u, target)
		} else {
			tu, _, err = hupConnect(e.p.plain, u, target)
		}
		if err != nil {
			t.Fatal(err)
		}
		e.track(tu)
		t.Cleanup(tu.close)
		if err := tu.echo(); err != nil {
			t.Fatalf("%s: %v", tu, err)
		}
		return tu
	}
	openN := func(n int, u hupUser, target string) []*hupTunnel {
		var out []*hupTunnel
		for i := range n {
			out = append(out, open(u, target, i == n-1)) // the last over HTTP/2
		}
		return out
	}
	mustWork := func(what string, tuns []*hupTunnel) {
		t.Helper()
		for _, tu := range tuns {
			if err := tu.echo(); err != nil {
				t.Errorf("%s: tunnel %s dropped: %v", what, tu, err)
			}
		}
	}
	mustBeClosed := func(what string, tuns []*hupTunnel) {
		t.Helper()
		for _, tu := range tuns {
			if err := tu.echo(); err == nil {
				t.Errorf("%s: tunnel %s still carries bytes", what, tu)
			}
		}
		e.waitRevokedLines(tuns...)
	}
	tunnelsOpen := func(u hupUser) float64 {
		return e.scrape().sum("fixedgate_user_tunnels_open", `user="`+u.name+`"`)
	}
	waitTunnelsOpen := func(u hupUser, n int) {
		t.Helper()
		waitFor(t, 10*time.Second, fmt.Sprintf("fixedgate_user_tunnels_open{user=%q} = %d", u.name, n), func() bool { return tunnelsOpen(u) == float64(n) })
	}

	// 1. A user removed.
	aTuns, bKeep, cKeep := openN(4, a, keep), openN(3, b, keep), openN(2, c, keep)
	waitTunnelsOpen(a, 4)
	waitTunnelsOpen(b, 3)
	spec.users = []hupUser{b, c}
	e.mustReload(spec)
	mustBeClosed("user removed", aTuns)
	mustWork("other users' tunnels after a user was removed", append(slices.Clone(bKeep), cKeep...))
	for _, l := range aTuns {
		t.Logf("revoked %s: %v", l, e.revokedLine(l)["error"])
	}
	if s := e.scrape().userSeries(a.name); len(s) != 0 {
		t.Errorf("series of the removed user are still exported: %q", s)
	}
	waitTunnelsOpen(b, 3)
	waitTunnelsOpen(c, 2)
	if _, code, err := hupConnect(e.p.plain, a, keep); code != 407 {
		t.Errorf("removed user: %d %v, want 407", code, err)
	}

	// 2. A destination no longer allowed.
	bRev, cRev := openN(3, b, revoke), openN(1, c, revoke)
	waitTunnelsOpen(b, 6)
	spec.allow = nil
	e.mustReload(spec)
	mustBeClosed("destination no longer allowed", append(slices.Clone(bRev), cRev...))
	mustWork("tunnels to a destination still allowed", append(slices.Clone(bKeep), cKeep...))
	for _, l := range append(slices.Clone(bRev), cRev...) {
		t.Logf("revoked %s: %v", l, e.revokedLine(l)["error"])
	}
	waitTunnelsOpen(b, 3)
	waitTunnelsOpen(c, 2)
	if _, code, err := hupConnect(e.p.plain, b, revoke); code != 403 {
		t.Errorf("destination no longer allowed: %d %v, want 403", code, err)
	}

	// 3. A user's key rotated: tunnels opened with the old key close, the new key works.
	b2 := hupUser{b.name, "key-b-rotated"}
	spec.users = []hupUser{b2, c}
	e.mustReload(spec)
	mustBeClosed("key rotated", bKeep)
	mustWork("other users' tunnels after a key rotation", cKeep)
	for _, l := range bKeep {
		t.Logf("revoked %s: %v", l, e.revokedLine(l)["error"])
	}
	if _, code, err := hupConnect(e.p.plain, b, keep); code != 407 {
		t.Errorf("old key after rotation: %d %v, want 407", code, err)
	}
	b2Tuns := openN(2, b2, keep)
	waitTunnelsOpen(b2, 2)
	waitTunnelsOpen(c, 2)
	mustWork("new key's tunnels", b2Tuns)

	// Every tunnel the reloads closed has its line, and no other tunnel has one.
	e.scanLog()
	if n := len(aTuns) + len(bRev) + len(cRev) + len(bKeep); e.revokedN != n {
		t.Errorf("%d policy_reload lines, want %d (one per revoked tunnel)", e.revokedN, n)
	}
}

// hupLive is a long-lived tunnel of the load test, exchanging a line every 100ms.
type hupLive struct {
	*hupTunnel
	class    string
	expect   atomic.Bool // a reload that revokes it has been (or is being) sent
	done     chan struct{}
	stop     chan struct{}
	rounds   atomic.Int64
	err      error // why it ended (valid once done is closed)
	expected bool  // expect, as it was when it ended
}

// start runs its exchanges until halt.
func (l *hupLive) start() {
	l.stop, l.done = make(chan struct{}), make(chan struct{})
	go l.run()
}

// halt stops the exchanges and returns once the last one is over (each is bounded).
func (l *hupLive) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
}

func (l *hupLive) run() {
	defer close(l.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
		}
		if err := l.echo(); err != nil {
			l.err, l.expected = err, l.expect.Load()
			// As a client does: a stream reset leaves its HTTP/2 connection open, idle; close it.
			l.close()
			return
		}
		l.rounds.Add(1)
	}
}

// hupLoadKind is one kind of steady request.
type hupLoadKind struct {
	name         string
	do           func() error
	sent, failed atomic.Int64
	mu           sync.Mutex
	errs         []string
}

func (k *hupLoadKind) run(stop <-chan struct{}, reload *atomic.Int32, wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		select {
		case <-stop:
			return
		default:
		}
		err := k.do()
		k.sent.Add(1)
		if err != nil {
			k.failed.Add(1)
			k.mu.Lock()
			if len(k.errs) < 5 {
				k.errs = append(k.errs, fmt.Sprintf("under reload %d: %v", reload.Load(), err))
			}
			k.mu.Unlock()
		}
		time.Sleep(5 * time.Millisecond) // pacing, so that 2 cores under -race also run the proxy
	}
}

// TestReloadUnderLoad: 20 reloads that change users, allow rules and routes while both doors
// carry steady traffic and long-lived tunnels exchange lines. Nothing the rules in force allow
// may fail, only the tunnels a reload revokes may close, and the proxy's goroutines and
// descriptors come back to where they were.
func TestReloadUnderLoad(t *testing.T) {
	const (
		steadyTunnels = 50
		batch         = 3 // tunnels per revocable batch: two over HTTP/1.1, one as an HTTP/2 stream
		reloads       = 20
	)
	tenantA := hupUser{"tenant-a", "tenant-a-key"}
	rotorKeys := [2]string{"rotor-key-one", "rotor-key-two"}
	rotor := func(i int) hupUser { return hupUser{"rotor", rotorKeys[(i/2)%2]} }
	var e *hupEnv
	// spec(i) is the config of reload i (0: the start). Consecutive configs always differ (the
	// spare rule flips); tenant-a is removed at i ≡ 1 (mod 4), the revoke.test rule at i ≡ 3
	// (mod 4), rotor's key rotates at every even i, and the route gw.test/extra goes to the
	// second upstream, to the fleet, then away, in turn.
	spec := func(i int) hupSpec {
		s := hupSpec{users: []hupUser{rotor(i)}}
		if i%4 != 1 {
			s.users = append(s.users, tenantA)
		}
		if i%4 != 3 {
			s.allow = append(s.allow, e.ruleFor(hupRevoke))
		}
		if i%2 == 1 {
			s.allow = append(s.allow, e.ruleFor(hupSpare))
		}
		switch i % 3 {
		case 0:
			s.routes = []string{e.routeToRecorder(gwHost, "/extra")}
		case 1:
			s.routes = []string{e.routeToFleet(gwHost, "/extra")}
		}
		return s
	}
	startHupEnv(t, 40, func(env *hupEnv) hupSpec { e = env; return spec(0) })

	keep := fmt.Sprintf("%s:%d", hupKeep, e.echo)
	revoke := fmt.Sprintf("%s:%d", hupRevoke, e.echo)
	roots := rootsWith(t, e.p.caFile)
	var current atomic.Int32 // the reload in force, for error messages

	// Steady load: gateway (HTTP/1.1 and HTTP/2, on the route in every config and on the
	// toggled /extra route, which falls back to gw.test's own route when absent), forward door
	// absolute-form and CONNECT (one tunnel per request), all as acme-corp to destinations
	// every config allows.
	gw1, gw2 := gatewayClient(t, e.p, false), gatewayClient(t, e.p, true)
	fwd := goClient(t, "http://"+testUser+":"+testKey+"@"+e.p.plain, nil)
	con := goClient(t, "http://"+testUser+":"+testKey+"@"+e.p.plain, rootsWith(t, e.fl.caFile))
	con.Transport.(*http.Transport).DisableKeepAlives = true
	clients := []*http.Client{gw1, gw2, fwd, con}
	status200 := func(c *http.Client, url string) func() error {
		return func() error {
			code, b, err := hupGet(c, url)
			if err == nil && code != 200 {
				err = fmt.Errorf("%d %s", code, strings.TrimSpace(b))
			}
			return err
		}
	}
	backend := func(c *http.Client, url string) func() error {
		return func() error { _, _, err := getReply(c, url); return err }
	}
	kinds := []*hupLoadKind{
		{name: "gateway HTTP/1.1 gw.test/", do: backend(gw1, "https://"+gwHost+"/")},
		{name: "gateway HTTP/2 gw.test/", do: backend(gw2, "https://"+gwHost+"/")},
		{name: "gateway HTTP/1.1 gw.test/extra (route toggled)", do: status200(gw1, "https://"+gwHost+"/extra/a")},
		{name: "gateway HTTP/2 gw.test/extra (route toggled)", do: status200(gw2, "https://"+gwHost+"/extra/b")},
		{name: "forward absolute-form", do: status200(fwd, fmt.Sprintf("http://api.test:%d/headers", e.f.origin.port))},
		{name: "forward CONNECT, one tunnel per request", do: backend(con, fmt.Sprintf("https://%s:%d/", fleetName, e.fl.port))},
	}
	startLoad := func() func() {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for _, k := range kinds {
			wg.Add(1)
			go k.run(stop, &current, &wg)
		}
		return func() { close(stop); wg.Wait() }
	}
	// progress waits until every kind has sent n more requests (the load has run under the
	// config in force).
	progress := func(n int64, what string) {
		t.Helper()
		marks := make([]int64, len(kinds))
		for i, k := range kinds {
			marks[i] = k.sent.Load()
		}
		deadline := time.Now().Add(60 * time.Second)
		for i, k := range kinds {
			for k.sent.Load() < marks[i]+n {
				if time.Now().After(deadline) {
					t.Fatalf("%s: %q sent %d requests in 60s, want %d", what, k.name, k.sent.Load()-marks[i], n)
				}
				time.Sleep(10 * time.Millisecond) // the workers' counters have no signal to wait on
			}
		}
	}

	var lives []*hupLive
	openLive := func(class string, u hupUser, target string, h2 bool) *hupLive {
		t.Helper()
		var tu *hupTunnel
		var err error
		if h2 {
			tu, _, err = hupConnectH2(e.p.tlsAddr, roots, u, target)
		} else {
			tu, _, err = hupConnect(e.p.plain, u, target)
		}
		if err != nil {
			t.Fatalf("open %s tunnel: %v", class, err)
		}
		l := &hupLive{hupTunnel: e.track(tu), class: class}
		lives = append(lives, l)
		t.Cleanup(func() { l.close() })
		l.start()
		return l
	}
	stopLive := func(l *hupLive) { l.halt() }
	t.Cleanup(func() {
		for _, l := range lives {
			l.close()
			stopLive(l)
		}
	})

	// Warm-up: steady tunnels, and enough traffic that the proxy's pools to the fleet are warm.
	for i := range steadyTunnels {
		openLive("steady", hupAcme, keep, i%5 == 4) // one in five as an HTTP/2 stream
	}
	stopLoad := startLoad()
	progress(60, "warm-up")
	stopLoad()
	for _, c := range clients {
		c.CloseIdleConnections()
	}
	fleetConns := func() (n int64) {
		for _, b := range e.fl.backends {
			n += b.open.Load()
		}
		return n
	}
	// The baseline: the steady tunnels open and quiet (as they will be at the end), no request
	// in flight, no client connection but theirs and /metrics'.
	for _, l := range lives {
		l.halt()
	}
	gBase, fdBase := e.settle()
	poolBase := fleetConns()
	for _, l := range lives {
		if l.err != nil {
			t.Fatalf("steady tunnel %s failed during the warm-up: %v", l, l.err)
		}
		l.start()
	}

	// Revocable batches: which class a reload revokes, and which classes may open tunnels under
	// the config in force.
	type class struct {
		name    string
		user    func(i int) hupUser
		target  string
		open    func(i int) bool // its user and destination are allowed under spec(i)
		revokes func(i int) bool // reload i closes its tunnels
		batch   []*hupLive
		revoked int // batches revoked
	}
	classes := []*class{
		{name: "user tenant-a (removed at some reloads)", user: func(int) hupUser { return tenantA }, target: keep,
			open: func(i int) bool { return i%4 != 1 }, revokes: func(i int) bool { return i%4 == 1 }},
		{name: "destination revoke.test (its rule removed at some reloads)", user: func(int) hupUser { return hupAcme }, target: revoke,
			open: func(i int) bool { return i%4 != 3 }, revokes: func(i int) bool { return i%4 == 3 }},
		{name: "user rotor (key rotated at some reloads)", user: rotor, target: keep,
			open: func(int) bool { return true }, revokes: func(i int) bool { return i > 0 && rotor(i) != rotor(i-1) }},
	}
	openBatches := func(i int) {
		for _, c := range classes {
			if c.open(i) && c.batch == nil {
				for j := range batch {
					c.batch = append(c.batch, openLive(c.name, c.user(i), c.target, j == batch-1))
				}
			}
		}
	}
	openBatches(0)

	var revokedTuns []*hupLive
	stopLoad = startLoad()
	reloadSums := []string{}
	for i := 1; i <= reloads; i++ {
		progress(10, fmt.Sprintf("before reload %d", i))
		var closing []*hupLive
		for _, c := range classes {
			if c.revokes(i) {
				for _, l := range c.batch {
					l.expect.Store(true)
				}
				closing = append(closing, c.batch...)
				c.batch = nil
				c.revoked++
			}
		}
		r := e.reload(spec(i))
		if !r.ok {
			t.Fatalf("reload %d refused: %s", i, r.err)
		}
		current.Store(int32(i))
		reloadSums = append(reloadSums, r.sum)
		// The revoked tunnels end at this reload: each one's next exchange fails.
		deadline := time.After(15 * time.Second)
		for _, l := range closing {
			select {
			case <-l.done:
			case <-deadline:
				t.Fatalf("reload %d: tunnel %s of %s still open 15s after the reload revoked it (%d rounds)", i, l, l.class, l.rounds.Load())
			}
		}
		revokedTuns = append(revokedTuns, closing...)
		var closed []*hupTunnel
		for _, l := range closing {
			closed = append(closed, l.hupTunnel)
		}
		e.waitRevokedLines(closed...) // written once the tunnels' ends are counted in /metrics
		if !slices.Contains(spec(i).users, tenantA) {
			// tenant-a was just removed: its series go with it
			if s := e.scrape().userSeries(tenantA.name); len(s) != 0 {
				t.Errorf("reload %d removed tenant-a, whose series are still exported: %q", i, s)
			}
		}
		openBatches(i)
	}
	progress(3, "after the last reload")

	// Every tunnel not revoked still echoes (stop its loop, then one more exchange).
	var unrevoked, dropped []*hupLive
	for _, l := range lives {
		if l.expect.Load() {
			continue
		}
		unrevoked = append(unrevoked, l)
		stopLive(l)
		if l.err == nil {
			l.err = l.echo()
		}
		if l.err != nil {
			dropped = append(dropped, l)
		}
	}
	stopLoad()
	for _, c := range clients {
		c.CloseIdleConnections()
	}

	// The per-user gauges count exactly the tunnels open now.
	open := map[string]int{}
	for _, l := range unrevoked {
		open[l.user]++
	}
	for _, u := range []string{testUser, tenantA.name, "rotor"} {
		waitFor(t, 10*time.Second, fmt.Sprintf("fixedgate_user_tunnels_open{user=%q} = %d", u, open[u]), func() bool {
			return e.scrape().sum("fixedgate_user_tunnels_open", `user="`+u+`"`) == float64(open[u])
		})
	}

	// The log: one reloaded line per reload with the file's sha256, and a policy_reload line
	// for each revoked tunnel and for no other.
	waitFor(t, 10*time.Second, "policy_reload lines for every revoked tunnel", func() bool {
		e.scanLog()
		return hupAll(revokedTuns, func(l *hupLive) bool { return e.revokedLine(l.hupTunnel) != nil })
	})
	var unexpectedEnd []string
	for _, l := range revokedTuns {
		if l.err == nil || !l.expected {
			unexpectedEnd = append(unexpectedEnd, fmt.Sprintf("%s ended with %v, before its reload was sent", l, l.err))
		}
		line := e.revokedLine(l.hupTunnel)
		if line["door"] != "connect" || line["user"] != l.user {
			t.Errorf("policy_reload line of %s: %v", l, line)
		}
		if msg, _ := line["error"].(string); msg == "" {
			t.Errorf("policy_reload line of %s says no error: %v", l, line)
		}
	}
	if e.revokedN != len(revokedTuns) {
		for _, l := range unrevoked {
			if line := e.revokedLine(l.hupTunnel); line != nil {
				t.Errorf("tunnel %s (%s) was not to be revoked, and has a policy_reload line: %v", l, l.class, line)
			}
		}
		t.Errorf("%d policy_reload lines, want %d", e.revokedN, len(revokedTuns))
	}
	if len(e.reloaded) != reloads {
		t.Errorf("%d SIGHUP: config reloaded lines, want %d", len(e.reloaded), reloads)
	}
	m := e.scrape()
	if n := m.sum("fixedgate_config_reloads_total", `result="success"`); n != reloads {
		t.Errorf("reloads_total{success} = %v, want %d", n, reloads)
	}
	if n := m.sum("fixedgate_config_reloads_total", `result="error"`); n != 0 {
		t.Errorf("reloads_total{error} = %v, want 0", n)
	}

	// Close what the test opened besides the steady tunnels (the batches still open), then the
	// proxy's goroutines and descriptors come back to the baseline: same steady tunnels, no
	// request in flight, no client connection but the tunnels and /metrics'. The slack is what
	// pools may hold beyond the baseline: each connection to a backend that the proxy keeps for
	// reuse costs one descriptor and, with its reader and writer, up to 3 goroutines. The
	// fleet's backends count those connections themselves; the second upstream (smuggle.test,
	// HTTP/2) needs at most 2. Beyond that, 4 goroutines and 3 descriptors for what comes and
	// goes by itself (a DNS refresh in flight, the runtime's timers). One goroutine or descriptor
	// leaked per reload (20) or per revoked tunnel (60) is more than that.
	for _, c := range classes {
		for _, l := range c.batch {
			l.close()
		}
	}
	var slackG float64
	var slackF int
	gAfter, fdAfter := e.settle()
	deadline := time.Now().Add(30 * time.Second)
	for {
		extraPool := int(max(0, fleetConns()-poolBase)) + 2
		slackG, slackF = float64(3*extraPool+4), extraPool+3
		if gAfter <= gBase+slackG && fdAfter.steady() <= fdBase.steady()+slackF {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("after the reloads the proxy holds %v goroutines and %d descriptors (pipes aside); before them %v and %d (slack %v and %d)",
				gAfter, fdAfter.steady(), gBase, fdBase.steady(), slackG, slackF)
			break
		}
		time.Sleep(250 * time.Millisecond) // an outside process's counters: polled
		gAfter, fdAfter = e.scrape().sum("go_goroutines"), e.fds()
	}

	// The figures.
	var sent, failed int64
	for _, k := range kinds {
		sent += k.sent.Load()
		failed += k.failed.Load()
		t.Logf("%-50s sent %6d failed %d", k.name, k.sent.Load(), k.failed.Load())
		for _, err := range k.errs {
			t.Logf("    %s", err)
		}
	}
	var rounds int64
	for _, l := range lives {
		rounds += l.rounds.Load()
	}
	t.Logf("requests: %d sent, %d failed", sent, failed)
	t.Logf("tunnels: %d opened (%d steady), %d revoked by %d reloads (%s), %d not revoked, %d dropped; %d lines echoed",
		len(lives), steadyTunnels, len(revokedTuns), reloads, func() string {
			var s []string
			for _, c := range classes {
				s = append(s, fmt.Sprintf("%s: %d batches", c.name, c.revoked))
			}
			return strings.Join(s, "; ")
		}(), len(unrevoked), len(dropped), rounds)
	t.Logf("reloads: %d applied; reloads_total{success}=%v, {error}=%v",
		len(reloadSums), m.sum("fixedgate_config_reloads_total", `result="success"`), m.sum("fixedgate_config_reloads_total", `result="error"`))
	t.Logf("proxy goroutines %v before, %v after; descriptors %s before, %s after; fleet connections pooled %d before, %d after (slack %v goroutines, %d descriptors)",
		gBase, gAfter, fdBase, fdAfter, poolBase, fleetConns(), slackG, slackF)

	if failed > 0 {
		t.Errorf("%d of %d steady requests failed; every one was allowed by every config", failed, sent)
	}
	for _, l := range dropped {
		t.Errorf("tunnel %s (%s) dropped though no reload revoked it: %v", l, l.class, l.err)
	}
	for _, s := range unexpectedEnd {
		t.Error(s)
	}
}

// hupFDs counts a process's open descriptors by kind (from /proc/PID/fd).
type hupFDs struct{ total, sockets, pipes, metric int }

// steady is the descriptors that do not depend on the garbage collector's timing: all but the
// pipes. (Splicing tunnels borrow pipe pairs from a sync.Pool; under -race the pool drops
// entries at random, and a dropped pair is closed only by a finalizer after a later GC.)
func (f hupFDs) steady() int { return f.total - f.pipes }

func (f hupFDs) String() string {
	return fmt.Sprintf("%d (%d sockets, %d pipes; process_open_fds %d)", f.total, f.sockets, f.pipes, f.metric)
}

func (e *hupEnv) fds() hupFDs {
	e.t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", e.p.cmd.Process.Pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		e.t.Fatal(err)
	}
	f := hupFDs{total: len(ents), metric: int(e.scrape().sum("process_open_fds"))}
	for _, ent := range ents {
		l, _ := os.Readlink(filepath.Join(dir, ent.Name()))
		switch {
		case strings.HasPrefix(l, "socket:"):
			f.sockets++
		case strings.HasPrefix(l, "pipe:"):
			f.pipes++
		}
	}
	return f
}

// settle reads the proxy's goroutines and descriptors (pipes aside) once they have stopped
// moving (four readings alike, 250ms apart), or after 15s, whatever they are then.
func (e *hupEnv) settle() (float64, hupFDs) {
	e.t.Helper()
	var g float64
	var f hupFDs
	same := 0
	deadline := time.Now().Add(15 * time.Second)
	for same < 3 && time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond) // an outside process's counters: polled
		g2, f2 := e.scrape().sum("go_goroutines"), e.fds()
		if g2 == g && f2.steady() == f.steady() {
			same++
		} else {
			same = 0
		}
		g, f = g2, f2
	}
	return g, f
}
