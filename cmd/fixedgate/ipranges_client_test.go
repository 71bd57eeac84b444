package main

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fixedgate/fixedgate/ipranges"
	"github.com/fixedgate/fixedgate/ipranges/handler"
)

// The documents of these tests are built around the real clock, because the commands run in
// process and use it.

func ipcPrefix(cidr string, dir ipranges.Direction, published, enabled time.Time, retired *time.Time) ipranges.Prefix {
	p := netip.MustParsePrefix(cidr)
	class := "ipv4"
	if p.Addr().Is6() {
		class = "ipv6"
	}
	return ipranges.Prefix{CIDR: p, Class: class, Direction: dir, Service: "proxy", Facility: "test",
		Published: published, Enabled: enabled, Retired: retired}
}

// ipcDoc: created 30 days ago with an ingress and an egress address (IPv4 and IPv6), plus
// whatever extra prefixes the test adds.
func ipcDoc(now time.Time, extra ...ipranges.Prefix) *ipranges.Document {
	created := now.Add(-30 * 24 * time.Hour).Truncate(time.Second)
	ps := []ipranges.Prefix{
		ipcPrefix("203.0.113.10/32", ipranges.Ingress, created, created, nil),
		ipcPrefix("2001:db8::10/128", ipranges.Ingress, created, created, nil),
		ipcPrefix("198.51.100.20/32", ipranges.Egress, created, created, nil),
	}
	return &ipranges.Document{SchemaVersion: 1, SyncToken: fmt.Sprint(now.UnixMilli()), CreatedAt: created, NoticeDays: 14,
		Prefixes: append(ps, extra...), Changelog: []ipranges.Change{}}
}

func ipcServe(t *testing.T, doc *ipranges.Document, key ed25519.PrivateKey) (*httptest.Server, *handler.Handler) {
	t.Helper()
	h := handler.New(handler.Options{SigningKey: key})
	t.Cleanup(h.Close)
	if err := h.Set(doc); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, h
}

func ipcRun(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(append([]string{"ipranges"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func ipcWriteDoc(t *testing.T, path string, doc *ipranges.Document, at time.Time) {
	t.Helper()
	b, err := ipranges.Render(doc, at, ipranges.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestIPRangesExportCommand(t *testing.T) {
	now := time.Now().UTC()
	announced := ipcPrefix("203.0.113.11/32", ipranges.Ingress, now, now.Add(ipranges.MinNotice), nil)
	srv, _ := ipcServe(t, ipcDoc(now, announced), nil)
	url := srv.URL + handler.PathJSON

	code, out, errs := ipcRun("export", "--url", url, "--format", "cidr")
	if code != 0 || out != "198.51.100.20/32\n203.0.113.10/32\n2001:db8::10/128\n" {
		t.Errorf("cidr: %d %q %s", code, out, errs)
	}
	code, out, _ = ipcRun("export", "--url", url, "--format", "cidr", "--include-announced", "--direction", "ingress")
	if code != 0 || out != "203.0.113.10/32\n203.0.113.11/32\n2001:db8::10/128\n" {
		t.Errorf("cidr ingress+announced: %d %q", code, out)
	}
	code, out, _ = ipcRun("export", "--url", url, "--format", "nftables", "--table", "filter")
	if code != 0 || !strings.Contains(out, "table inet filter {") || !strings.Contains(out, "add element inet filter fixedgate_egress_v4 {\n\t198.51.100.20/32,\n}") {
		t.Errorf("nftables: %d\n%s", code, out)
	}
	code, out, _ = ipcRun("export", "--url", url, "--format", "iptables")
	if code != 0 || !strings.Contains(out, "-A FIXEDGATE-INGRESS -d 203.0.113.10/32 -j ACCEPT\n") || !strings.HasSuffix(out, "COMMIT\n") {
		t.Errorf("iptables: %d\n%s", code, out)
	}
	code, out, _ = ipcRun("export", "--url", url, "--format", "ip6tables")
	if code != 0 || !strings.Contains(out, "-A FIXEDGATE-INGRESS -d 2001:db8::10/128 -j ACCEPT\n") {
		t.Errorf("ip6tables: %d\n%s", code, out)
	}
	code, out, _ = ipcRun("export", "--url", url, "--format", "json", "--direction", "egress")
	if d, err := ipranges.Parse([]byte(out)); code != 0 || err != nil || len(d.Prefixes) != 1 {
		t.Errorf("json: %d %v\n%s", code, err, out)
	}
	// From a file, at a given time: the announced address is in use after its enabled time.
	state := filepath.Join(t.TempDir(), "ip-ranges.json")
	ipcWriteDoc(t, state, ipcDoc(now, announced), now)
	code, out, _ = ipcRun("export", "--state", state, "--format", "cidr", "--direction", "ingress",
		"--at", now.Add(ipranges.MinNotice+time.Hour).Format(time.RFC3339))
	if code != 0 || out != "203.0.113.10/32\n203.0.113.11/32\n2001:db8::10/128\n" {
		t.Errorf("--state --at: %d %q", code, out)
	}
	// A contract that breaks its own rules (an address enabled an hour after it was announced) is
	// never turned into firewall rules.
	rushed := filepath.Join(t.TempDir(), "rushed.json")
	ipcWriteDoc(t, rushed, ipcDoc(now, ipcPrefix("203.0.113.12/32", ipranges.Ingress, now, now.Add(time.Hour), nil)), now)
	if code, out, errs := ipcRun("export", "--state", rushed, "--format", "cidr"); code != 1 || out != "" || !strings.Contains(errs, "not a valid contract") {
		t.Errorf("export of a contract without notice: %d %q %s", code, out, errs)
	}
	for _, args := range [][]string{
		{"export", "--format", "cidr"},
		{"export", "--url", url, "--state", state, "--format", "cidr"},
		{"export", "--url", url},
		{"export", "--url", url, "--format", "cidr", "--direction", "up"},
		{"export", "--url", "ftp://x/y", "--format", "cidr"},
		{"export", "--url", url, "--format", "cidr", "extra"},
	} {
		if code, _, _ := ipcRun(args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if code, _, errs := ipcRun("export", "--url", url, "--format", "pf"); code != 1 || !strings.Contains(errs, `format "pf"`) {
		t.Errorf("bad format: %d %s", code, errs)
	}
	if code, _, errs := ipcRun("export", "--state", state+".missing", "--format", "cidr"); code != 1 || !strings.Contains(errs, "missing") {
		t.Errorf("missing file: %d %s", code, errs)
	}
}

func TestIPRangesDiffCommand(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	dir := t.TempDir()
	oldPath, newPath := filepath.Join(dir, "old.json"), filepath.Join(dir, "new.json")
	old := ipcDoc(now)
	ipcWriteDoc(t, oldPath, old, now)
	nw := ipcDoc(now,
		ipcPrefix("203.0.113.11/32", ipranges.Ingress, now, now.Add(ipranges.MinNotice), nil))
	retire := now.Add(ipranges.MinNotice)
	nw.Prefixes[2].Retired = &retire
	ipcWriteDoc(t, newPath, nw, now)

	code, out, errs := ipcRun("diff", oldPath, newPath)
	want := fmt.Sprintf("retire-scheduled egress 198.51.100.20/32: draining until %s (retired then); retired set to %s\n"+
		"added ingress 203.0.113.11/32: announced: published %s, enabled %s\n",
		retire.Format(time.RFC3339), retire.Format(time.RFC3339), now.Format(time.RFC3339), retire.Format(time.RFC3339))
	if code != 0 || out != want {
		t.Errorf("diff: %d %s\n%s\nwant:\n%s", code, errs, out, want)
	}
	// Identical: no output, exit 0.
	if code, out, _ := ipcRun("diff", oldPath, oldPath); code != 0 || out != "" {
		t.Errorf("identical: %d %q", code, out)
	}
	// Later, the announced address has gone live: diff of the same new file, judged later.
	later := retire.Add(time.Hour).Format(time.RFC3339)
	code, out, _ = ipcRun("diff", "--at", later, newPath, newPath, "--old-at", now.Format(time.RFC3339))
	if code != 0 || !strings.Contains(out, "enabled ingress 203.0.113.11/32: active since") || !strings.Contains(out, "retired egress 198.51.100.20/32") {
		t.Errorf("by time: %d\n%s", code, out)
	}
	// A URL works as well as a file.
	srv, _ := ipcServe(t, nw, nil)
	if code, out, errs := ipcRun("diff", oldPath, srv.URL+handler.PathJSON); code != 0 || out != want {
		t.Errorf("url: %d %s\n%s", code, errs, out)
	}
	if code, _, _ := ipcRun("diff", oldPath); code != 2 {
		t.Errorf("one document: %d", code)
	}
	if code, _, errs := ipcRun("diff", oldPath, filepath.Join(dir, "nope.json")); code != 1 || !strings.Contains(errs, "nope.json") {
		t.Errorf("missing: %d %s", code, errs)
	}
}

// TestIPRangesWatchFlagsHandEdit: a hand-edited document enables an address half an hour after
// publishing it. watch names the address and the notice it had, and exits non-zero.
func TestIPRangesWatchFlagsHandEdit(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	bad := ipcPrefix("203.0.113.99/32", ipranges.Ingress, now.Add(-time.Hour), now.Add(-30*time.Minute), nil)
	srv, _ := ipcServe(t, ipcDoc(now, bad), nil)
	code, out, errs := ipcRun("watch", "--url", srv.URL+handler.PathJSON, "--once")
	if code == 0 || code == 2 {
		t.Fatalf("exit %d, want a failure status\n%s%s", code, out, errs)
	}
	if !strings.Contains(out, "VIOLATION ingress 203.0.113.99/32 is active") || !strings.Contains(out, "with 30m0s of notice") ||
		!strings.Contains(out, "the contract promises 14d") || !strings.Contains(errs, "promise is broken") {
		t.Errorf("output:\n%s\nstderr:\n%s", out, errs)
	}
	// Exit status 3 once run() honours ExitCode (see exitCodeError).
	if code != 1 && code != exitViolation {
		t.Errorf("exit %d", code)
	}
	// An honest contract passes.
	ok, _ := ipcServe(t, ipcDoc(now, ipcPrefix("203.0.113.11/32", ipranges.Ingress, now, now.Add(ipranges.MinNotice), nil)), nil)
	if code, out, errs := ipcRun("watch", "--url", ok.URL+handler.PathJSON, "--once"); code != 0 || !strings.Contains(out, "baseline: sync_token") ||
		!strings.Contains(out, "4 prefixes (3 active, 1 announced, 0 draining, 0 retired)") {
		t.Errorf("honest: %d\n%s%s", code, out, errs)
	}
}

// flipServer serves docs[0] to the first request and docs[1] to every later one.
func flipServer(t *testing.T, a, b *ipranges.Document) *httptest.Server {
	t.Helper()
	_, ha := ipcServe(t, a, nil)
	_, hb := ipcServe(t, b, nil)
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			ha.ServeHTTP(w, r)
			return
		}
		hb.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func fastWatch(t *testing.T) {
	old := minWatchInterval
	minWatchInterval = 0
	t.Cleanup(func() { minWatchInterval = old })
}

// TestIPRangesWatchObserves: between two polls an address appears already active, with dates
// copied from the initial set so the document looks fine; the watcher saw it was not listed.
func TestIPRangesWatchObserves(t *testing.T) {
	fastWatch(t)
	now := time.Now().UTC()
	a := ipcDoc(now)
	b := ipcDoc(now, ipcPrefix("198.51.100.77/32", ipranges.Egress, a.CreatedAt, a.CreatedAt, nil))
	srv := flipServer(t, a, b)
	code, out, errs := ipcRun("watch", "--url", srv.URL+handler.PathJSON, "--interval", "1ms", "--max-polls", "5")
	if code == 0 || !strings.Contains(out, "added egress 198.51.100.77/32: already active") ||
		!strings.Contains(out, "VIOLATION egress 198.51.100.77/32 is active") || !strings.Contains(out, "but was not in the contract at") {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	if n := strings.Count(out, "\n"); n != 3 {
		t.Errorf("%d lines: it should stop at the violation:\n%s", n, out)
	}
}

// TestIPRangesWatchOnChange: with --on-change the command runs with the change and the
// violation in its environment, and watch keeps going.
func TestIPRangesWatchOnChange(t *testing.T) {
	fastWatch(t)
	now := time.Now().UTC()
	a := ipcDoc(now)
	b := ipcDoc(now, ipcPrefix("198.51.100.77/32", ipranges.Egress, a.CreatedAt, a.CreatedAt, nil),
		ipcPrefix("203.0.113.11/32", ipranges.Ingress, now, now.Add(ipranges.MinNotice), nil))
	srv := flipServer(t, a, b)
	dir := t.TempDir()
	envOut, docOut := filepath.Join(dir, "env"), filepath.Join(dir, "doc.json")
	cmd := fmt.Sprintf(`printf 'CHANGE=%%s\nVIOLATION=%%s\nTOKEN=%%s\n' "$FIXEDGATE_CHANGE" "$FIXEDGATE_VIOLATION" "$FIXEDGATE_SYNC_TOKEN" >> %s; cp "$FIXEDGATE_DOCUMENT" %s`, envOut, docOut)
	code, out, errs := ipcRun("watch", "--url", srv.URL+handler.PathJSON, "--interval", "1ms", "--max-polls", "4", "--on-change", cmd)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	env, err := os.ReadFile(envOut)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(env), "TOKEN=") != 1 || !strings.Contains(string(env), "added ingress 203.0.113.11/32: announced") ||
		!strings.Contains(string(env), "VIOLATION=egress 198.51.100.77/32 is active") {
		t.Errorf("command saw:\n%s", env)
	}
	if d, err := os.ReadFile(docOut); err != nil || !bytes.Contains(d, []byte("198.51.100.77/32")) {
		t.Errorf("document for the command: %v", err)
	}
	if !strings.Contains(out, "VIOLATION") {
		t.Errorf("watch output:\n%s", out)
	}
}

func TestIPRangesWatchUsage(t *testing.T) {
	for _, args := range [][]string{
		{"watch"}, {"watch", "--url", "example.com"}, {"watch", "--url", "http://127.0.0.1:1/x", "--interval", "1s"},
	} {
		if code, _, _ := ipcRun(args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	_, _, errs := ipcRun("watch", "--help")
	if strings.Contains(errs, "max-polls") || !strings.Contains(errs, "--on-change") {
		t.Errorf("help:\n%s", errs)
	}
	// A server that is down: --once fails with the reason.
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	if code, _, errs := ipcRun("watch", "--url", srv.URL+"/ip-ranges.json", "--once"); code != 1 || !strings.Contains(errs, "connect") {
		t.Errorf("down: %d %s", code, errs)
	}
}

func TestIPRangesVerifyCommand(t *testing.T) {
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "signing.pem"), filepath.Join(dir, "signing.pub")
	code, out, errs := ipcKeygen("--private", priv, "--public", pub)
	if code != 0 || !strings.Contains(out, "SHA256:") {
		t.Fatalf("keygen: %d %s %s", code, out, errs)
	}
	if code, _, errs := ipcKeygen("--private", priv, "--public", pub); code != 1 || !strings.Contains(errs, "not overwriting") {
		t.Errorf("keygen again: %d %s", code, errs)
	}
	key, err := ipranges.LoadSigningKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	doc := ipcDoc(time.Now().UTC())
	srv, _ := ipcServe(t, doc, key)
	for _, u := range []string{srv.URL + handler.PathJSON, srv.URL, srv.URL + "/"} {
		code, out, errs := ipcRun("verify", "--url", u, "--pubkey", pub)
		if code != 0 || out != fmt.Sprintf("signature OK (sync_token %s, %d bytes, key %s)\n", doc.SyncToken, len(mustRender(t, srv)), keyFP(t, pub)) {
			t.Errorf("%s: %d %q %s", u, code, out, errs)
		}
	}
	// One byte changed on the way: exit 1 with the reason.
	tampered := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		srv.Config.Handler.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		if r.URL.Path == handler.PathJSON {
			body = bytes.Replace(body, []byte("203.0.113.10"), []byte("203.0.113.66"), 1)
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(body)
	}))
	defer tampered.Close()
	code, out, errs = ipcRun("verify", "--url", tampered.URL, "--pubkey", pub)
	if code != 1 || out != "" || !strings.Contains(errs, "signature does not match") {
		t.Errorf("tampered: %d %q %s", code, out, errs)
	}
	// Another key: exit 1.
	other1, other2 := filepath.Join(dir, "o.pem"), filepath.Join(dir, "o.pub")
	ipcKeygen("--private", other1, "--public", other2)
	if code, _, errs := ipcRun("verify", "--url", srv.URL, "--pubkey", other2); code != 1 || !strings.Contains(errs, "does not match") {
		t.Errorf("other key: %d %s", code, errs)
	}
	// An unsigned server: exit 1, saying so.
	unsigned, _ := ipcServe(t, doc, nil)
	if code, _, errs := ipcRun("verify", "--url", unsigned.URL, "--pubkey", pub); code != 1 || !strings.Contains(errs, "no signing key") {
		t.Errorf("unsigned: %d %s", code, errs)
	}
	for _, args := range [][]string{
		{"verify", "--url", srv.URL}, {"verify", "--pubkey", pub}, {"verify", "--url", srv.URL + "/ip-ranges.json?direction=ingress", "--pubkey", pub},
	} {
		if code, _, _ := ipcRun(args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if code, _, _ := ipcKeygen("--private", filepath.Join(dir, "x")); code != 2 {
		t.Errorf("keygen without --public: exit %d, want 2", code)
	}
}

// ipcKeygen runs `ipranges keygen` the way run() would, calling it directly until the
// dispatcher in ipranges_cmd.go lists it.
func ipcKeygen(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	err := cmdIPRangesKeygen(args, &out, &errb)
	switch {
	case err == nil:
	case errors.Is(err, errUsage), errors.Is(err, flag.ErrHelp):
		code = 2
	default:
		fmt.Fprintln(&errb, "fixedgate:", err)
		code = 1
	}
	return code, out.String(), errb.String()
}

func mustRender(t *testing.T, srv *httptest.Server) []byte {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + handler.PathJSON)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return b.Bytes()
}

func keyFP(t *testing.T, path string) string {
	t.Helper()
	k, err := ipranges.LoadPublicKey(path)
	if err != nil {
		t.Fatal(err)
	}
	return ipranges.KeyFingerprint(k)
}
