package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fixedgate/fixedgate/ipranges"
)

// contractEntry is one prefix of a hand-written contract: in service since long ago, or
// announced 14 days before a given enabled time, optionally retiring at a given time.
type contractEntry struct {
	cidr    string
	dir     ipranges.Direction
	enabled time.Time // zero: part of the initial set
	retired time.Time // zero: not retiring
}

// writeContract writes a valid contract (as `ipranges init` + `announce` + `retire` would have,
// but with dates the test chooses, so that an announcement's 14 days end seconds from now).
func writeContract(t *testing.T, path string, entries ...contractEntry) []byte {
	t.Helper()
	created := time.Now().UTC().Add(-60 * 24 * time.Hour).Truncate(time.Second)
	doc := &ipranges.Document{SchemaVersion: 1, CreatedAt: created, NoticeDays: 14}
	last := created
	token := func(at time.Time) string { return strconv.FormatInt(at.UnixMilli(), 10) }
	var changes []ipranges.Change
	for _, e := range entries {
		p := ipranges.Prefix{CIDR: netip.MustParsePrefix(e.cidr), Class: "ipv4", Direction: e.dir, Service: "proxy", Facility: "loopback",
			Published: created, Enabled: created}
		if p.CIDR.Addr().Is6() {
			p.Class = "ipv6"
		}
		action := "init"
		if !e.enabled.IsZero() {
			p.Enabled = e.enabled.UTC().Truncate(time.Second)
			p.Published = p.Enabled.Add(-ipranges.MinNotice)
			action = "announce"
		}
		changes = append(changes, ipranges.Change{At: p.Published, Action: action, CIDR: e.cidr, Direction: e.dir})
		if !e.retired.IsZero() {
			r := e.retired.UTC().Truncate(time.Second)
			p.Retired = &r
			at := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
			changes = append(changes, ipranges.Change{At: at, Action: "retire", CIDR: e.cidr, Direction: e.dir})
		}
		doc.Prefixes = append(doc.Prefixes, p)
	}
	// changelog in time order with strictly growing tokens
	for i := range changes {
		for j := i + 1; j < len(changes); j++ {
			if changes[j].At.Before(changes[i].At) {
				changes[i], changes[j] = changes[j], changes[i]
			}
		}
	}
	for i := range changes {
		at := changes[i].At
		if !at.After(last) && i > 0 {
			at = last.Add(time.Millisecond)
		}
		changes[i].SyncToken = token(at)
		last = at
	}
	doc.Changelog = changes
	doc.SyncToken = token(last)
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ipranges.Parse(b); err != nil {
		t.Fatalf("the test's contract does not parse: %v", err)
	}
	return b
}

// contractConfig is the fixture's config listening on the given plain addresses (TLS listener
// and admin on ingressIP) with the contract at state and the given egress addresses.
func contractConfig(t *testing.T, f *fixture, state string, egress []string, plain ...string) (cfg, mainPlain, admin string) {
	t.Helper()
	plainPort, tlsPort, adminPort := freePort(t, ingressIP), freePort(t, ingressIP), freePort(t, ingressIP)
	mainPlain = fmt.Sprintf("%s:%d", ingressIP, plainPort)
	cfg = f.config(plainPort, tlsPort, adminPort, filepath.Join(t.TempDir(), "ca"), fmt.Sprintf("ipranges: {state: %q}\n", state))
	cfg = strings.Replace(cfg, "egress:\n  addresses: ["+egressIP+"]", "egress:\n  addresses: ["+strings.Join(egress, ", ")+"]", 1)
	for _, p := range plain {
		cfg = strings.Replace(cfg, "listen:\n", "listen:\n  - {address: \""+p+"\", tls: false}\n", 1)
	}
	return cfg, mainPlain, fmt.Sprintf("%s:%d", ingressIP, adminPort)
}

func TestContractRefusesUnlistedAddresses(t *testing.T) {
	f := newFixture(t)
	state := filepath.Join(t.TempDir(), "ip-ranges.json")
	writeContract(t, state, contractEntry{cidr: ingressIP + "/32", dir: ipranges.Ingress}, contractEntry{cidr: egressIP + "/32", dir: ipranges.Egress})
	for _, tc := range []struct {
		name, listen string
		egress       []string
		want         string
	}{
		{"listen address not in the contract", "127.0.0.11:" + strconv.Itoa(freePort(t, "127.0.0.11")), []string{egressIP}, "127.0.0.11 is not in the contract as ingress"},
		{"egress address not in the contract", "", []string{egressIP, "127.0.0.21"}, "127.0.0.21 is not in the contract as egress"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var extra []string
			if tc.listen != "" {
				extra = append(extra, tc.listen)
			}
			cfg, _, _ := contractConfig(t, f, state, tc.egress, extra...)
			p := startBinary(t, cfg)
			if err := p.wait(60 * time.Second); err == nil {
				t.Fatal("serve started with an address the contract does not list")
			}
			if !strings.Contains(p.log(), tc.want) {
				t.Fatalf("log lacks %q:\n%s", tc.want, p.log())
			}
		})
	}
}

func TestContractCorruptStateRefusedAndKept(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "ip-ranges.json")
	good := writeContract(t, state, contractEntry{cidr: ingressIP + "/32", dir: ipranges.Ingress}, contractEntry{cidr: egressIP + "/32", dir: ipranges.Egress})
	handEdited := bytes.Replace(good, []byte(`"published": "`), []byte(`"publishedX": "`), 1)
	for name, content := range map[string][]byte{
		"truncated":   good[:len(good)/2],
		"empty":       {},
		"not json":    []byte("ingress: 127.0.0.10\n"),
		"unknown key": handEdited,
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(state, content, 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, _, _ := contractConfig(t, f, state, []string{egressIP})
			p := startBinary(t, cfg)
			if err := p.wait(60 * time.Second); err == nil {
				t.Fatal("serve started with a broken contract")
			}
			if !strings.Contains(p.log(), state) {
				t.Errorf("the error does not name the file:\n%s", p.log())
			}
			if after, _ := os.ReadFile(state); !bytes.Equal(after, content) {
				t.Errorf("the broken state file was changed")
			}
		})
	}
}

// TestContractActivatesOnTime: an announced ingress address is bound, and an announced egress
// address first used, at its enabled time and not before; a retiring egress address takes no
// new connections after its retired time. All without a restart.
func TestContractActivatesOnTime(t *testing.T) {
	f := newFixture(t)
	state := filepath.Join(t.TempDir(), "ip-ranges.json")
	switchAt := time.Now().Add(4 * time.Second).Truncate(time.Second).Add(time.Second)
	const laterIngress, newEgress = "127.0.0.12", "127.0.0.21"
	writeContract(t, state,
		contractEntry{cidr: ingressIP + "/32", dir: ipranges.Ingress},
		contractEntry{cidr: laterIngress + "/32", dir: ipranges.Ingress, enabled: switchAt},
		contractEntry{cidr: egressIP + "/32", dir: ipranges.Egress, retired: switchAt},
		contractEntry{cidr: newEgress + "/32", dir: ipranges.Egress, enabled: switchAt},
	)
	later := net.JoinHostPort(laterIngress, strconv.Itoa(freePort(t, laterIngress)))
	cfg, plain, admin := contractConfig(t, f, state, []string{egressIP, newEgress}, later)
	p := startBinary(t, cfg)
	p.waitReady()
	p.admin = admin

	// A tunnel opened from the old egress address before the switch is closed at its
	// retirement: nothing leaves from a retired address afterwards.
	early, _ := net.DialTimeout("tcp", plain, 5*time.Second)
	t.Cleanup(func() { early.Close() })
	early.SetDeadline(time.Now().Add(60 * time.Second))
	fmt.Fprintf(early, "CONNECT echo.test:%d HTTP/1.1\r\nHost: x\r\n%s\r\n\r\n", f.echo, authHeader())
	earlyBR := bufio.NewReader(early)
	if resp, err := http.ReadResponse(earlyBR, &http.Request{Method: "CONNECT"}); err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT before the switch: %v %v", resp, err)
	}

	// Until the switch the origin sees only the old egress address, and the announced listener
	// refuses connections; after it, the new egress address and the new listener are in service.
	var sawNew, laterBound bool
	deadline := switchAt.Add(20 * time.Second)
	for time.Now().Before(deadline) && !(sawNew && laterBound) {
		start := time.Now()
		switch src := echoSource(t, plain, f.echo); {
		case src == newEgress && time.Now().Before(switchAt):
			t.Fatalf("the origin saw %s before its enabled time %s", newEgress, switchAt)
		case src == newEgress:
			sawNew = true
		case src == egressIP && start.After(switchAt.Add(time.Second)):
			t.Fatalf("the origin saw %s, retired at %s, at %s", egressIP, switchAt, start)
		case src != egressIP && src != newEgress:
			t.Fatalf("the origin saw source %s", src)
		}
		if c, err := net.DialTimeout("tcp", later, time.Second); err == nil {
			c.Close()
			if time.Now().Before(switchAt) {
				t.Fatalf("%s accepted a connection before its enabled time %s", later, switchAt)
			}
			laterBound = true
		}
		time.Sleep(100 * time.Millisecond) // the clock is what is being waited for; no signal exists
	}
	if !sawNew || !laterBound {
		t.Fatalf("after %s: new egress used %v, announced listener bound %v", switchAt, sawNew, laterBound)
	}
	if src := echoSource(t, later, f.echo); src != newEgress {
		t.Errorf("through the newly bound listener the origin saw %s", src)
	}
	if !strings.Contains(p.log(), "listener activated by the contract") {
		t.Errorf("no log line for the activated listener")
	}
	// The echo server answers only at EOF from our side, so bytes here would mean the tunnel
	// outlived its egress address; the proxy closing it gives EOF with nothing read.
	if b, err := io.ReadAll(earlyBR); err != nil || len(b) != 0 {
		t.Errorf("tunnel from the retired %s: read %q, %v; want it closed by the proxy", egressIP, b, err)
	}
	waitFor(t, 10*time.Second, "the summary line of the tunnel closed at the retirement", func() bool {
		return strings.Contains(p.log(), `"reason":"egress_retired"`)
	})
}

// echoSource tunnels through proxyAddr to the echo server and returns the source address the
// origin saw.
func echoSource(t *testing.T, proxyAddr string, echoPort int) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", proxyAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT echo.test:%d HTTP/1.1\r\nHost: x\r\n%s\r\n\r\n", echoPort, authHeader())
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	io.WriteString(c, "x")
	c.(*net.TCPConn).CloseWrite()
	reply, _ := io.ReadAll(br)
	i := strings.LastIndex(string(reply), " from ")
	if i < 0 {
		t.Fatalf("echo reply %q", reply)
	}
	return string(reply[i+6:])
}

func TestContractServedAndReloaded(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "ip-ranges.json")
	writeContract(t, state, contractEntry{cidr: ingressIP + "/32", dir: ipranges.Ingress}, contractEntry{cidr: egressIP + "/32", dir: ipranges.Egress})
	cfg, plain, admin := contractConfig(t, f, state, []string{egressIP})
	p := startBinary(t, cfg)
	p.waitReady()
	p.admin = admin
	get := func(url, etag string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		if etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body(t, resp)
	}
	// On the admin listener and on a proxy listener alike.
	var etag string
	for _, base := range []string{"http://" + admin, "http://" + plain} {
		resp, b := get(base+"/ip-ranges.json", "")
		if resp.StatusCode != 200 || !strings.Contains(b, `"status": "active"`) || resp.Header.Get("ETag") == "" {
			t.Fatalf("%s/ip-ranges.json: %d %s %q", base, resp.StatusCode, resp.Header, b)
		}
		etag = resp.Header.Get("ETag")
		if resp, _ := get(base+"/ip-ranges.json", etag); resp.StatusCode != 304 {
			t.Errorf("%s: conditional GET with the current ETag: %d, want 304", base, resp.StatusCode)
		}
	}

	// A valid new version (announce through the CLI) is picked up without a signal.
	var out, errb bytes.Buffer
	if code := run([]string{"ipranges", "announce", "--state", state, "--egress", "127.0.0.22"}, &out, &errb); code != 0 {
		t.Fatalf("announce: %d %s", code, errb.String())
	}
	waitFor(t, 20*time.Second, "the new version served", func() bool {
		_, b := get("http://"+admin+"/ip-ranges.json", "")
		return strings.Contains(b, "127.0.0.22/32")
	})
	resp, _ := get("http://"+admin+"/ip-ranges.json", etag)
	if resp.StatusCode != 200 {
		t.Errorf("old ETag after a change: %d, want 200", resp.StatusCode)
	}

	// A broken version is refused; the last good one stays in force and is still served.
	good, _ := os.ReadFile(state)
	if err := os.WriteFile(state, good[:len(good)/3], 0o644); err != nil {
		t.Fatal(err)
	}
	p.signal(syscall.SIGHUP)
	waitFor(t, 20*time.Second, "the reload error counted", func() bool {
		return metric(t, p, "fixedgate_contract_reloads_total", `result="error"`) >= 1
	})
	if _, b := get("http://"+admin+"/ip-ranges.json", ""); !strings.Contains(b, "127.0.0.22/32") {
		t.Errorf("after a broken reload the served contract changed:\n%s", b)
	}
}

// waitFor polls cond (an outside process's state; no signal exists) until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s never happened", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
