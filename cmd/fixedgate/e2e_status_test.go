package main

// The status page end to end: the real binary with a gateway, two probes and an ip-ranges
// contract (whose directory holds the incidents), its admin and public views, incidents posted
// with the real `fixedgate status post`, and the page rendered by a real browser (Chromium).

import (
	"bytes"
	"context"
	gotls "crypto/tls"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// statusEnv is a running gateway with probes, a contract and status.public on.
type statusEnv struct {
	p        *proc
	fl       *fleet
	cfgPath  string // the config file the binary runs with (for `status post` and reloads)
	state    string // ipranges.state
	stateDir string // where status-incidents.json lives
	tlsHTTP  *http.Client
	plainURL string // http://plain listener
	tlsURL   string // https://listener IP, Host = the listener's IP (no route claims it)
	adminURL string
}

// announcedEgress is announced in the contract before the proxy starts: the page lists it as
// upcoming.
const announcedEgress = "127.0.0.22"

// startStatusEnv makes a contract (init with the listener and egress addresses, then one more
// egress address announced) with the real binary, and starts the probed gateway on it.
func startStatusEnv(t *testing.T) *statusEnv {
	t.Helper()
	f := newFixture(t)
	fl := startFleet(t, 2)
	f.dns.Set(fleetName, 60, fl.addrs(0, 2)...)
	e := &statusEnv{fl: fl, stateDir: t.TempDir()}
	e.state = filepath.Join(e.stateDir, "ip-ranges.json")
	if out, code := runBinary(t, "ipranges", "init", "--state", e.state, "--ingress", ingressIP, "--egress", egressIP); code != 0 {
		t.Fatalf("ipranges init: exit %d\n%s", code, out)
	}
	if out, code := runBinary(t, "ipranges", "announce", "--state", e.state, "--egress", announcedEgress); code != 0 {
		t.Fatalf("ipranges announce: exit %d\n%s", code, out)
	}
	e.p = startProbedGateway(t, f, fl, fmt.Sprintf("ipranges: {state: %q}\nstatus: {public: true, update_interval: 1m}\n", e.state))
	if len(e.p.cmd.Args) != 4 || e.p.cmd.Args[2] != "--config" {
		t.Fatalf("unexpected fixedgate command line %q", e.p.cmd.Args)
	}
	e.cfgPath = e.p.cmd.Args[3]
	_, tlsPort, _ := strings.Cut(e.p.tlsAddr, ":")
	e.plainURL = "http://" + e.p.plain
	e.tlsURL = "https://" + ingressIP + ":" + tlsPort
	e.adminURL = "http://" + e.p.admin
	tr := &http.Transport{Proxy: nil, TLSClientConfig: &gotls.Config{RootCAs: rootsWith(t, e.p.caFile)}}
	t.Cleanup(tr.CloseIdleConnections)
	e.tlsHTTP = &http.Client{Transport: tr, Timeout: 20 * time.Second}

	// Both probes have run and succeeded at least twice (so every window has data).
	waitMetric(t, e.p, 30*time.Second, "both probes succeeded twice", func() bool {
		return metric(t, e.p, "fixedgate_probe_total", `probe="fleet-connect"`, `result="success"`) >= 2 &&
			metric(t, e.p, "fixedgate_probe_total", `probe="gw"`, `result="success"`) >= 2
	})
	return e
}

// runBinary runs the real fixedgate with args (bounded) and returns its output (stdout, then
// stderr) and exit code.
func runBinary(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String() + errb.String(), 0
	case errors.As(err, &ee) && ctx.Err() == nil:
		return out.String() + errb.String(), ee.ExitCode()
	}
	t.Fatalf("fixedgate %q: %v\n%s%s", args, err, out.String(), errb.String())
	return "", 0
}

// post runs `fixedgate status post` against the running proxy's config.
func (e *statusEnv) post(t *testing.T, state, impact, message string) (string, int) {
	t.Helper()
	args := []string{"status", "post", "--config", e.cfgPath, "--state", state, "--message", message}
	if impact != "" {
		args = append(args, "--impact", impact)
	}
	return runBinary(t, args...)
}

// statusGet fetches url with c and returns the status, the Content-Type and the body.
func statusGet(t *testing.T, c *http.Client, url string) (int, string, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	b := body(t, resp)
	return resp.StatusCode, resp.Header.Get("Content-Type"), b
}

var plainHTTP = &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 20 * time.Second}

// The /status.json document as the tests read it. Optional and admin-only fields are
// pointers, so that absent and null show.
type statusJSON struct {
	State    string            `json:"state"`
	Probes   []statusJSONProbe `json:"probes"`
	Routes   []statusJSONRoute `json:"routes"`
	Contract *struct {
		IPRanges string `json:"ip_ranges"`
		Upcoming []struct {
			CIDR, Direction, Status, At string
		} `json:"upcoming"`
	} `json:"contract"`
	Incident *struct {
		ID       string `json:"id"`
		State    string `json:"state"`
		Impact   string `json:"impact"`
		OpenedAt string `json:"opened_at"`
		Updates  []struct {
			At, State, Impact, Message string
		} `json:"updates"`
	} `json:"incident"`
	UpdateOverdue   bool    `json:"update_overdue"`
	GeneratedAt     string  `json:"generated_at"`
	UpdateIntervalS int64   `json:"update_interval_s"`
	IncidentsError  *string `json:"incidents_error"`
}

type statusJSONProbe struct {
	Name         string `json:"name"`
	Up           bool   `json:"up"`
	Availability struct {
		H1  *float64 `json:"1h"`
		H24 *float64 `json:"24h"`
		D7  *float64 `json:"7d"`
	} `json:"availability"`
	LatencyMS struct {
		P50 *float64 `json:"p50"`
		P99 *float64 `json:"p99"`
	} `json:"latency_ms"`
	Checked             *string `json:"checked"`
	ConsecutiveFailures *int    `json:"consecutive_failures"`
	LastError           *string `json:"last_error"`
}

type statusJSONRoute struct {
	Host      string `json:"host"`
	Upstream  string `json:"upstream"`
	Backends  int    `json:"backends"`
	Healthy   int    `json:"healthy"`
	Ejected   int    `json:"ejected"`
	Addresses *[]struct {
		IP      string `json:"ip"`
		Ejected bool   `json:"ejected"`
	} `json:"addresses"`
}

// statusDoc fetches and decodes url (a /status.json) and returns it with its raw text.
func statusDoc(t *testing.T, c *http.Client, url string) (*statusJSON, string) {
	t.Helper()
	code, ctype, b := statusGet(t, c, url)
	if code != 200 || ctype != "application/json" {
		t.Fatalf("GET %s: %d %s\n%s", url, code, ctype, b)
	}
	var doc statusJSON
	if err := json.Unmarshal([]byte(b), &doc); err != nil {
		t.Fatalf("GET %s: %v\n%s", url, err, b)
	}
	return &doc, b
}

// waitStatus polls the admin /status.json until cond holds (the proxy re-reads the incidents
// file every 2 s; no other signal reaches a test), for at most d.
func (e *statusEnv) waitStatus(t *testing.T, d time.Duration, what string, cond func(*statusJSON) bool) *statusJSON {
	t.Helper()
	var doc *statusJSON
	var raw string
	deadline := time.Now().Add(d)
	for {
		doc, raw = statusDoc(t, plainHTTP, e.adminURL+"/status.json")
		if cond(doc) {
			return doc
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s never happened; /status.json:\n%s", d, what, raw)
		}
		time.Sleep(100 * time.Millisecond) // polling an outside process; no signal exists
	}
}

// topKeys returns the keys of the JSON object raw.
func topKeys(t *testing.T, raw string) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// publicBodies fetches /status, /status.json and /status.atom from both public doors (the plain
// listener and the TLS listener with Host = its IP) and returns them by URL.
func (e *statusEnv) publicBodies(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	want := map[string]string{"/status": "text/html; charset=utf-8", "/status.json": "application/json", "/status.atom": "application/atom+xml"}
	for _, door := range []struct {
		base string
		c    *http.Client
	}{{e.plainURL, plainHTTP}, {e.tlsURL, e.tlsHTTP}} {
		for path, ctype := range want {
			code, ct, b := statusGet(t, door.c, door.base+path)
			if code != 200 || ct != ctype {
				t.Errorf("public %s%s: %d %q, want 200 %q\n%s", door.base, path, code, ct, ctype, b)
			}
			out[door.base+path] = b
		}
	}
	return out
}

var backendAddrRE = regexp.MustCompile(`127\.0\.1\.\d`)

// checkRedacted fails for every public body that shows something internal: a backend address,
// the state directory, or one of secrets (the probes' last errors, the incidents file's error).
func (e *statusEnv) checkRedacted(t *testing.T, bodies map[string]string, secrets ...string) {
	t.Helper()
	for url, b := range bodies {
		if m := backendAddrRE.FindString(b); m != "" {
			t.Errorf("public %s shows the backend address %s", url, m)
		}
		if strings.Contains(b, e.stateDir) {
			t.Errorf("public %s shows the state directory %s", url, e.stateDir)
		}
		for _, s := range secrets {
			for _, form := range escapedForms(s) {
				if s != "" && strings.Contains(b, form) {
					t.Errorf("public %s shows internal text %q (as %q)", url, s, form)
				}
			}
		}
		if strings.HasSuffix(url, "/status.json") {
			doc := topKeys(t, b)
			if _, ok := doc["incidents_error"]; ok {
				t.Errorf("public %s has incidents_error", url)
			}
		}
	}
}

// escapedForms is s as it would appear in the page's HTML, JSON or XML: quotes and angle
// brackets escaped.
func escapedForms(s string) []string {
	j, _ := json.Marshal(s)
	var x bytes.Buffer
	xml.EscapeText(&x, []byte(s))
	return []string{s, html.EscapeString(s), string(j[1 : len(j)-1]), x.String()}
}

// atomFeedDoc is the part of the Atom feed the tests read.
type atomFeedDoc struct {
	Entries []struct {
		ID       string `xml:"id"`
		Title    string `xml:"title"`
		Updated  string `xml:"updated"`
		Category []struct {
			Term string `xml:"term,attr"`
		} `xml:"category"`
		Content string `xml:"content"`
	} `xml:"entry"`
}

func parseAtom(t *testing.T, b string) *atomFeedDoc {
	t.Helper()
	var f atomFeedDoc
	if err := xml.Unmarshal([]byte(b), &f); err != nil {
		t.Fatalf("atom feed: %v\n%s", err, b)
	}
	return &f
}

// fleetDown stops every backend: no new connections, and the pooled ones go too.
func fleetDown(fl *fleet) {
	for i, b := range fl.backends {
		fl.setMode(i, modeDown)
		b.mu.Lock()
		for _, s := range b.srvs {
			s.Close()
		}
		b.mu.Unlock()
	}
}

// TestStatusPage: the admin /status.json has every documented field; the public listeners
// serve the redacted page and routes win over it; incidents posted with the real CLI show
// without a reload, resolve, and go overdue; internal details never reach the public view; and
// status.public off (by reload) takes the public page away.
func TestStatusPage(t *testing.T) {
	e := startStatusEnv(t)

	// The admin view: every field, probes that ran, the route's fleet, the announced address.
	doc, raw := statusDoc(t, plainHTTP, e.adminURL+"/status.json")
	keys := topKeys(t, raw)
	for _, k := range []string{"state", "probes", "routes", "contract", "incident", "update_overdue", "generated_at", "update_interval_s"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("admin /status.json has no %q:\n%s", k, raw)
		}
	}
	if string(keys["incident"]) != "null" {
		t.Errorf("incident = %s, want null", keys["incident"])
	}
	if doc.State != "operational" || doc.UpdateOverdue || doc.UpdateIntervalS != 60 {
		t.Errorf("state %q, update_overdue %v, update_interval_s %d; want operational, false, 60\n%s", doc.State, doc.UpdateOverdue, doc.UpdateIntervalS, raw)
	}
	if n := metric(t, e.p, "fixedgate_probe_total", `result="failure"`); n != 0 {
		t.Errorf("%v probe failures with a healthy fleet", n)
	}
	if len(doc.Probes) != 2 {
		t.Fatalf("%d probes, want 2:\n%s", len(doc.Probes), raw)
	}
	for i, want := range []string{"fleet-connect", "gw"} {
		pr := doc.Probes[i]
		switch {
		case pr.Name != want:
			t.Errorf("probes[%d].name %q, want %q", i, pr.Name, want)
		case !pr.Up:
			t.Errorf("probe %s is not up", pr.Name)
		case pr.Availability.H1 == nil || *pr.Availability.H1 != 1 || pr.Availability.H24 == nil || *pr.Availability.H24 != 1 || pr.Availability.D7 == nil || *pr.Availability.D7 != 1:
			t.Errorf("probe %s availability %s, want 1 in every window", pr.Name, jsonOf(pr.Availability))
		case pr.LatencyMS.P50 == nil || pr.LatencyMS.P99 == nil || *pr.LatencyMS.P50 <= 0 || *pr.LatencyMS.P99 < *pr.LatencyMS.P50:
			t.Errorf("probe %s latency_ms %s, want 0 < p50 <= p99", pr.Name, jsonOf(pr.LatencyMS))
		case pr.Checked == nil || pr.ConsecutiveFailures == nil || *pr.ConsecutiveFailures != 0 || pr.LastError == nil || *pr.LastError != "":
			t.Errorf("probe %s admin fields: checked %v, consecutive_failures %v, last_error %v", pr.Name, pr.Checked, pr.ConsecutiveFailures, pr.LastError)
		}
	}
	if len(doc.Routes) != 1 {
		t.Fatalf("%d routes, want 1:\n%s", len(doc.Routes), raw)
	}
	rt := doc.Routes[0]
	if rt.Host != gwHost || !strings.Contains(rt.Upstream, fleetName) || rt.Backends != 2 || rt.Healthy != 2 || rt.Ejected != 0 {
		t.Errorf("route %s, want host %s, upstream naming %s, 2 backends, 2 healthy, 0 ejected", jsonOf(rt), gwHost, fleetName)
	}
	if rt.Addresses == nil || len(*rt.Addresses) != 2 || (*rt.Addresses)[0].IP != "127.0.1.1" || (*rt.Addresses)[1].IP != "127.0.1.2" {
		t.Errorf("admin route addresses %s, want 127.0.1.1 and 127.0.1.2", jsonOf(rt.Addresses))
	}
	switch c := doc.Contract; {
	case c == nil:
		t.Errorf("contract is null with ipranges.state set")
	case c.IPRanges != "/ip-ranges.json" || len(c.Upcoming) != 1:
		t.Errorf("contract %s, want ip_ranges /ip-ranges.json and one upcoming change", jsonOf(c))
	default:
		u := c.Upcoming[0]
		at, err := time.Parse(time.RFC3339, u.At)
		if u.CIDR != announcedEgress+"/32" || u.Direction != "egress" || u.Status != "announced" || err != nil ||
			at.Before(time.Now().Add(13*24*time.Hour)) || at.After(time.Now().Add(15*24*time.Hour)) {
			t.Errorf("upcoming %s, want %s/32 egress announced about 14 days ahead", jsonOf(u), announcedEgress)
		}
	}
	if code, ct, b := statusGet(t, plainHTTP, e.adminURL+"/status"); code != 200 || ct != "text/html; charset=utf-8" ||
		!strings.Contains(b, "(operator view)") || !strings.Contains(b, "127.0.1.1") || !strings.Contains(b, announcedEgress+"/32") {
		t.Errorf("admin /status: %d %s; want the operator view with backend addresses and the announced address\n%s", code, ct, b)
	}

	// The public view: on both doors, nothing internal, and no admin-only keys.
	pub := e.publicBodies(t)
	e.checkRedacted(t, pub)
	pubDoc := pub[e.plainURL+"/status.json"]
	var pd struct {
		Probes []map[string]json.RawMessage `json:"probes"`
		Routes []map[string]json.RawMessage `json:"routes"`
	}
	if err := json.Unmarshal([]byte(pubDoc), &pd); err != nil {
		t.Fatal(err)
	}
	for _, pr := range pd.Probes {
		for _, k := range []string{"checked", "last_failure", "consecutive_failures", "last_error"} {
			if _, ok := pr[k]; ok {
				t.Errorf("public probe has %q", k)
			}
		}
		for _, k := range []string{"name", "up", "availability", "latency_ms"} {
			if _, ok := pr[k]; !ok {
				t.Errorf("public probe lacks %q", k)
			}
		}
	}
	if len(pd.Routes) != 1 {
		t.Errorf("public routes: %d, want 1", len(pd.Routes))
	}
	for _, r := range pd.Routes {
		if _, ok := r["addresses"]; ok {
			t.Errorf("public route has addresses")
		}
		if string(r["backends"]) != "2" || string(r["healthy"]) != "2" {
			t.Errorf("public route counts: backends %s healthy %s, want 2 and 2", r["backends"], r["healthy"])
		}
	}
	if h := pub[e.tlsURL+"/status"]; strings.Contains(h, "operator view") || !strings.Contains(h, "All systems operational") {
		t.Errorf("public /status over TLS: want the customers' view, operational:\n%s", h)
	}

	// Routes win: gw.test/status is the backend's own path.
	gc := gatewayClient(t, e.p, false)
	for _, path := range []string{"/status", "/status.json"} {
		r, code, err := getReply(gc, "https://"+gwHost+path)
		if err != nil || code != 200 || !strings.HasPrefix(r.Backend, "127.0.1.") {
			t.Errorf("https://%s%s: %d %v %+v; want the backend's answer", gwHost, path, code, err, r)
		}
	}

	// An incident posted with the CLI shows without a reload.
	const msg1 = "Requests through gw.test fail for some customers; we are looking into it."
	out, code := e.post(t, "investigating", "outage", msg1)
	if code != 0 || !strings.Contains(out, "posted to incident ") {
		t.Fatalf("status post: exit %d\n%s", code, out)
	}
	doc = e.waitStatus(t, 20*time.Second, "the posted incident shown", func(d *statusJSON) bool { return d.Incident != nil })
	if inc := doc.Incident; inc.State != "investigating" || inc.Impact != "outage" || len(inc.Updates) != 1 || inc.Updates[0].Message != msg1 || doc.State != "outage" {
		t.Errorf("after the post: state %q, incident %s; want outage, investigating/outage with the message", doc.State, jsonOf(inc))
	}
	incID := doc.Incident.ID
	pub = e.publicBodies(t)
	e.checkRedacted(t, pub)
	if h := pub[e.plainURL+"/status"]; !strings.Contains(h, "s-outage") || !strings.Contains(h, msg1) || !strings.Contains(h, "investigating") {
		t.Errorf("public /status during the incident lacks the outage, the message or its state:\n%s", h)
	}
	if d := pub[e.tlsURL+"/status.json"]; !strings.Contains(d, `"state": "outage"`) || !strings.Contains(d, msg1) {
		t.Errorf("public /status.json during the incident:\n%s", d)
	}
	feed := parseAtom(t, pub[e.plainURL+"/status.atom"])
	if len(feed.Entries) != 1 || feed.Entries[0].Content != msg1 || !strings.HasPrefix(feed.Entries[0].Title, "investigating: ") ||
		!strings.HasSuffix(feed.Entries[0].ID, ":"+incID+":1") || len(feed.Entries[0].Category) != 2 ||
		feed.Entries[0].Category[0].Term != "investigating" || feed.Entries[0].Category[1].Term != "outage" {
		t.Errorf("atom feed after the post: %s", jsonOf(feed))
	}

	// Resolved: the incident is closed, the page is operational again, the feed has both.
	const msg2 = "Fixed: a bad deploy was rolled back."
	if out, code := e.post(t, "resolved", "", msg2); code != 0 {
		t.Fatalf("status post resolved: exit %d\n%s", code, out)
	}
	doc = e.waitStatus(t, 20*time.Second, "the incident resolved", func(d *statusJSON) bool { return d.Incident == nil })
	if doc.State != "operational" {
		t.Errorf("after resolving: state %q, want operational", doc.State)
	}
	// Both updates are in the feed, newest first by time. (Both posts are often in the same
	// second; the order of such ties is checked deterministically with the overdue incident.)
	_, _, atom := statusGet(t, plainHTTP, e.plainURL+"/status.atom")
	feed = parseAtom(t, atom)
	if len(feed.Entries) != 2 || feed.Entries[0].Updated < feed.Entries[1].Updated {
		t.Errorf("atom feed after resolving: want 2 entries, newest first: %s", jsonOf(feed))
	}
	for _, en := range feed.Entries {
		switch {
		case strings.HasSuffix(en.ID, ":"+incID+":1") && en.Content == msg1 && strings.HasPrefix(en.Title, "investigating: "):
		case strings.HasSuffix(en.ID, ":"+incID+":2") && en.Content == msg2 && strings.HasPrefix(en.Title, "resolved: "):
		default:
			t.Errorf("atom feed after resolving: unexpected entry %s", jsonOf(en))
		}
	}

	// Resolving with none open is refused, saying why; the file is unchanged.
	incidents := filepath.Join(e.stateDir, "status-incidents.json")
	before, err := os.ReadFile(incidents)
	if err != nil {
		t.Fatal(err)
	}
	if out, code := e.post(t, "resolved", "", "Nothing to resolve."); code == 0 || !strings.Contains(out, "no open incident to resolve") {
		t.Errorf("resolving with no incident open: exit %d, want non-zero and a reason\n%s", code, out)
	}
	if after, _ := os.ReadFile(incidents); !bytes.Equal(after, before) {
		t.Errorf("a refused post changed %s", incidents)
	}

	// Overdue: an open incident whose last update is 2 hours old (update_interval is 1m).
	var file struct {
		SchemaVersion int               `json:"schema_version"`
		Incidents     []json.RawMessage `json:"incidents"`
	}
	if err := json.Unmarshal(before, &file); err != nil {
		t.Fatalf("%s: %v\n%s", incidents, err, before)
	}
	const msgOld = "Some requests are slow; we are investigating."
	old := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
	// Two updates in the same second (an operator correcting a post at once): the feed must
	// still list the later one first.
	const msgOld2 = "Some requests are slow in one region; we are investigating."
	stale, _ := json.Marshal(map[string]any{"id": "stale-1", "updates": []map[string]any{
		{"at": old.Format(time.RFC3339), "state": "investigating", "impact": "degraded", "message": msgOld},
		{"at": old.Format(time.RFC3339), "state": "investigating", "impact": "degraded", "message": msgOld2}}})
	file.Incidents = append(file.Incidents, stale)
	data, _ := json.MarshalIndent(file, "", "  ")
	writeFileAtomic(t, incidents, data)
	waitMetric(t, e.p, 20*time.Second, "fixedgate_status_update_overdue = 1", func() bool {
		return metric(t, e.p, "fixedgate_status_update_overdue") == 1
	})
	doc, _ = statusDoc(t, plainHTTP, e.adminURL+"/status.json")
	if !doc.UpdateOverdue || doc.Incident == nil || doc.Incident.ID != "stale-1" || doc.State != "degraded" {
		t.Errorf("overdue incident: update_overdue %v, state %q, incident %s; want true, degraded, stale-1", doc.UpdateOverdue, doc.State, jsonOf(doc.Incident))
	}
	_, _, h := statusGet(t, plainHTTP, e.plainURL+"/status")
	if !strings.Contains(h, "Update overdue") || !strings.Contains(h, msgOld2) {
		t.Errorf("public /status does not say the update is overdue:\n%s", h)
	}
	_, _, atom = statusGet(t, plainHTTP, e.plainURL+"/status.atom")
	var staleOrder []string
	for _, en := range parseAtom(t, atom).Entries {
		if strings.Contains(en.ID, ":stale-1:") {
			staleOrder = append(staleOrder, en.ID[strings.LastIndex(en.ID, ":")+1:]+"="+en.Content)
		}
	}
	if want := []string{"2=" + msgOld2, "1=" + msgOld}; !slices.Equal(staleOrder, want) {
		t.Errorf("atom feed: two updates of one incident in the same second are listed %q, want the later first %q "+
			"(the feed promises newest first; proxy/status/atom.go collects an incident's updates oldest first and the stable sort by time keeps that order for ties)",
			staleOrder, want)
	}
	// An update ends it.
	if out, code := e.post(t, "identified", "", "The slow requests come from one backend; it is being replaced."); code != 0 {
		t.Fatalf("status post identified: exit %d\n%s", code, out)
	}
	waitMetric(t, e.p, 20*time.Second, "fixedgate_status_update_overdue back to 0 after an update", func() bool {
		return metric(t, e.p, "fixedgate_status_update_overdue") == 0
	})
	if doc, _ = statusDoc(t, plainHTTP, e.adminURL+"/status.json"); doc.UpdateOverdue || doc.Incident == nil || doc.Incident.State != "identified" || doc.Incident.Impact != "degraded" {
		t.Errorf("after the update: update_overdue %v, incident %s", doc.UpdateOverdue, jsonOf(doc.Incident))
	}

	// Internal details: a broken incidents file (its error names the state directory) and
	// failing probes (their errors) are in the admin view only.
	if err := os.WriteFile(incidents, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	fleetDown(e.fl)
	doc = e.waitStatus(t, 30*time.Second, "the broken incidents file and both probes failing 3 times shown", func(d *statusJSON) bool {
		if d.IncidentsError == nil || len(d.Probes) != 2 {
			return false
		}
		for _, pr := range d.Probes {
			if pr.Up || pr.LastError == nil || *pr.LastError == "" || pr.ConsecutiveFailures == nil || *pr.ConsecutiveFailures < 3 {
				return false
			}
		}
		return true
	})
	if !strings.Contains(*doc.IncidentsError, e.stateDir) {
		t.Errorf("incidents_error %q does not name the file", *doc.IncidentsError)
	}
	if doc.State != "outage" || doc.Incident == nil || doc.Incident.State != "identified" {
		t.Errorf("with the fleet down and the file broken: state %q, incident %s; want outage and the last good incident", doc.State, jsonOf(doc.Incident))
	}
	secrets := []string{*doc.IncidentsError}
	for _, pr := range doc.Probes {
		secrets = append(secrets, *pr.LastError)
	}
	pub = e.publicBodies(t)
	e.checkRedacted(t, pub, secrets...)
	if h := pub[e.tlsURL+"/status"]; !strings.Contains(h, "s-outage") || !strings.Contains(h, "✕ Down") {
		t.Errorf("public /status with the fleet down: want the outage and probes down:\n%s", h)
	}

	// status.public off, by reload: the public doors answer 404; the admin view stays.
	cfg, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	off := strings.Replace(string(cfg), "status: {public: true,", "status: {public: false,", 1)
	if off == string(cfg) {
		t.Fatalf("config has no status section to edit:\n%s", cfg)
	}
	if err := os.WriteFile(e.cfgPath, []byte(off), 0o600); err != nil {
		t.Fatal(err)
	}
	reloads := metric(t, e.p, "fixedgate_config_reloads_total", `result="success"`)
	e.p.signal(syscall.SIGHUP)
	waitMetric(t, e.p, 30*time.Second, "the reload applied", func() bool {
		return metric(t, e.p, "fixedgate_config_reloads_total", `result="success"`) > reloads
	})
	for _, u := range []struct {
		url string
		c   *http.Client
	}{{e.plainURL + "/status", plainHTTP}, {e.tlsURL + "/status.json", e.tlsHTTP}, {e.plainURL + "/status.atom", plainHTTP}} {
		if code, _, b := statusGet(t, u.c, u.url); code != 404 {
			t.Errorf("%s with status.public off: %d, want 404\n%s", u.url, code, b)
		}
	}
	if code, _, _ := statusGet(t, plainHTTP, e.adminURL+"/status"); code != 200 {
		t.Errorf("admin /status with status.public off: %d, want 200", code)
	}
}

// writeFileAtomic replaces path with data as one rename, so the proxy's poll never reads half a
// file.
func writeFileAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".test-tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func jsonOf(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// chromiumPath finds Debian's chromium; without it the test is skipped, except in CI.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if fileExists("/usr/bin/chromium") {
		return "/usr/bin/chromium"
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	msg := "chromium is not installed (.ci/run installs Debian's chromium)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// runChromium runs headless Chromium once with extra arguments (--dump-dom URL, or
// --screenshot), bounded in time, in its own process group, which is killed if it overruns.
// It returns stdout.
func runChromium(t *testing.T, bin string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--no-proxy-server", // loopback only, whatever the environment says
		"--user-data-dir=" + t.TempDir()}, extra...)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		stderr := errb.String()
		t.Fatalf("chromium %q: %v (deadline exceeded: %v)\nstderr (last 4000 bytes):\n%s", extra, err, ctx.Err() != nil, stderr[max(0, len(stderr)-4000):])
	}
	return out.String()
}

// TestStatusPageInChromium loads the public status page in headless Chromium and checks the
// DOM it rendered: operational with a chart per probe, then an outage with an open incident.
// With FIXEDGATE_SCREENSHOT=PATH it also saves a screenshot of the outage page there.
func TestStatusPageInChromium(t *testing.T) {
	bin := chromiumPath(t)
	e := startStatusEnv(t)
	url := e.plainURL + "/status"

	dom := runChromium(t, bin, "--dump-dom", url)
	for _, want := range []string{
		`<section class="banner s-operational"`, "All systems operational",
		"<title>All systems operational · fixedgate status</title>",
		"<h3>fleet-connect ", "<h3>gw ", "✓ Up", `<rect class="full"`, // one hour of data: bars, no latency line yet
		announcedEgress + "/32", "No incidents reported.",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("operational DOM lacks %q", want)
		}
	}
	if n := strings.Count(dom, `<svg class="chart"`); n != 2 {
		t.Errorf("operational DOM has %d charts, want one per probe (2)", n)
	}
	if strings.Contains(strings.ToLower(dom), "<script") {
		t.Errorf("the page has a <script>")
	}
	if strings.Contains(dom, "operator view") || backendAddrRE.MatchString(dom) {
		t.Errorf("the public page shows the operator view or a backend address")
	}
	if t.Failed() {
		t.Fatalf("operational DOM:\n%s", dom)
	}

	// The outage: the fleet is down and an incident is open.
	fleetDown(e.fl)
	const msg = "Requests through gw.test are failing. We have identified a broken deploy and are rolling it back."
	if out, code := e.post(t, "identified", "outage", msg); code != 0 {
		t.Fatalf("status post: exit %d\n%s", code, out)
	}
	e.waitStatus(t, 30*time.Second, "the outage: incident open and both probes down 3 times", func(d *statusJSON) bool {
		if d.Incident == nil || d.State != "outage" {
			return false
		}
		for _, pr := range d.Probes {
			if pr.Up || pr.ConsecutiveFailures == nil || *pr.ConsecutiveFailures < 3 {
				return false
			}
		}
		return true
	})
	dom = runChromium(t, bin, "--dump-dom", url)
	for _, want := range []string{
		`<section class="banner s-outage"`, "Outage: requests are failing", msg,
		"<strong>identified</strong> (impact: outage)", "Ongoing (outage)", "✕ Down", `<rect class="low"`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("outage DOM lacks %q", want)
		}
	}
	if n := strings.Count(dom, `<svg class="chart"`); n != 2 {
		t.Errorf("outage DOM has %d charts, want 2", n)
	}
	if strings.Contains(strings.ToLower(dom), "<script") {
		t.Errorf("the page has a <script>")
	}
	if t.Failed() {
		t.Logf("outage DOM:\n%s", dom)
	}

	if shot := os.Getenv("FIXEDGATE_SCREENSHOT"); shot != "" {
		abs, err := filepath.Abs(shot)
		if err != nil {
			t.Fatal(err)
		}
		os.Remove(abs)
		runChromium(t, bin, "--screenshot="+abs, "--window-size=1000,1650", "--hide-scrollbars", url)
		f, err := os.Open(abs)
		if err != nil {
			t.Fatalf("no screenshot at %s: %v", abs, err)
		}
		defer f.Close()
		magic := make([]byte, 8)
		if _, err := io.ReadFull(f, magic); err != nil || string(magic) != "\x89PNG\r\n\x1a\n" {
			t.Fatalf("%s is not a PNG: %v %q", abs, err, magic)
		}
		t.Logf("screenshot of the outage page: %s", abs)
	}
}
