package status

import (
	"encoding/json"
	"encoding/xml"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/html"
)

// Internal values of the fixture: none may appear in a public response.
const (
	secretIP1   = "10.20.30.40"
	secretIP2   = "10.20.30.41"
	secretIP6   = "2001:db8::99"
	secretError = "dial tcp 10.9.8.7:443: connect: connection refused"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// fixtureHours is a day of an hourly probe: the first hour without data, one hour below 99%,
// one at 99% or more, the rest at 100%.
func fixtureHours(now time.Time) []Hour {
	start := now.Truncate(time.Hour).Add(-23 * time.Hour)
	hours := make([]Hour, 24)
	for i := range hours {
		hours[i] = Hour{Start: start.Add(time.Duration(i) * time.Hour), Total: 60, P50: 40 * time.Millisecond, P99: time.Duration(100+i) * time.Millisecond}
	}
	hours[0] = Hour{Start: start}
	hours[5].Failures = 1                        // 98.3%
	hours[10].Total, hours[10].Failures = 200, 1 // 99.5%
	return hours
}

// fixture is a proxy with three probes (one up, one just failed, one not run yet), one route of
// three backends, a contract with changes coming, one resolved incident and one open.
type fixture struct {
	clock *fakeClock
	dir   string
	store *Store
	src   Source
	cfg   Config
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{clock: &fakeClock{t: t0}, dir: t.TempDir(), cfg: Config{Public: true, UpdateInterval: 30 * time.Minute}}
	mustPost(t, f.dir, "investigating", "Earlier: slow DNS.", "", t0.Add(-48*time.Hour))
	mustPost(t, f.dir, "resolved", "Earlier: fixed.", "", t0.Add(-47*time.Hour))
	mustPost(t, f.dir, "investigating", "Gateway requests fail <script>alert(1)</script> & more.\nSecond line.", "", t0.Add(-20*time.Minute))
	mustPost(t, f.dir, "identified", "A fleet lost its DNS name.", "", t0.Add(-10*time.Minute))
	f.store = OpenStore(f.dir, nil)
	t.Cleanup(f.store.Close)
	now := f.clock.Now()
	probes := []ProbeStatus{
		{
			Name: "fleet-connect", Up: true, Checked: now.Add(-20 * time.Second), LastFailure: now.Add(-2 * time.Hour),
			Windows: [3]Window{
				{Total: 60, P50: 41 * time.Millisecond, P99: 180 * time.Millisecond},
				{Total: 1440, Failures: 1, P50: 42 * time.Millisecond, P99: 190 * time.Millisecond},
				{Total: 10080, Failures: 2, P50: 43 * time.Millisecond, P99: 1500 * time.Microsecond},
			},
			Hours: fixtureHours(now),
		},
		{
			Name: "gateway-h2", Up: false, Checked: now.Add(-30 * time.Second), LastFailure: now.Add(-30 * time.Second),
			ConsecutiveFailures: 1, LastError: secretError,
			Windows: [3]Window{{Total: 60, Failures: 1, P50: 50 * time.Millisecond, P99: 2 * time.Second}},
			Hours:   fixtureHours(now)[20:],
		},
		{Name: "new-probe"},
	}
	routes := []RouteStatus{{
		Host: "gw.example.com", PathPrefix: "/api/", Upstream: "fleet.example.com", Backends: 3, Healthy: 2, Ejected: 1,
		Addresses: []BackendStatus{
			{Addr: netip.MustParseAddr(secretIP1)},
			{Addr: netip.MustParseAddr(secretIP2), Ejected: true},
			{Addr: netip.MustParseAddr(secretIP6)},
		},
	}}
	contract := []ContractChange{
		{CIDR: "203.0.113.7/32", Direction: "egress", Status: ContractAnnounced, At: now.Add(14 * 24 * time.Hour)},
		{CIDR: "192.0.2.1/32", Direction: "egress", Status: "active", At: now.Add(-24 * time.Hour)},
		{CIDR: "198.51.100.0/24", Direction: "ingress", Status: ContractDraining, At: now.Add(3 * 24 * time.Hour)},
	}
	f.src = Source{
		Probes:   func() []ProbeStatus { return probes },
		Routes:   func() []RouteStatus { return routes },
		Contract: func() []ContractChange { return contract },
		Now:      f.clock.Now,
	}
	return f
}

func (f *fixture) handler(public bool) *Handler {
	return NewHandler(f.src, f.store, func() Config { return f.cfg }, public)
}

func get(t *testing.T, h http.Handler, method, target string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, target, nil))
	return w
}

func getOK(t *testing.T, h http.Handler, target string) string {
	t.Helper()
	w := get(t, h, http.MethodGet, target)
	if w.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", target, w.Code, w.Body)
	}
	return w.Body.String()
}

func decodeJSON(t *testing.T, body string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("/status.json does not decode: %v\n%s", err, body)
	}
	return m
}

func keysOf(v any) []string {
	m, _ := v.(map[string]any)
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func sorted(ks ...string) []string {
	slices.Sort(ks)
	return ks
}

func TestJSONFields(t *testing.T) {
	f := newFixture(t)
	publicProbe := []string{"name", "up", "availability", "latency_ms", "latency_ms_windows", "last_24h"}
	publicRoute := []string{"host", "path_prefix", "backends", "healthy", "ejected"}
	tests := []struct {
		name       string
		public     bool
		probeKeys  []string
		routeKeys  []string
		wantTopKey []string
	}{
		{"public", true, sorted(publicProbe...), sorted(publicRoute...), nil},
		{"admin", false, sorted(append(publicProbe, "last_error", "checked", "last_failure", "consecutive_failures")...), sorted(append(publicRoute, "upstream", "addresses")...), nil},
	}
	top := sorted("state", "probes", "routes", "contract", "incident", "update_overdue", "generated_at", "update_interval_s")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := decodeJSON(t, getOK(t, f.handler(tt.public), "/status.json"))
			check := func(what string, got any, want []string) {
				t.Helper()
				if ks := keysOf(got); !slices.Equal(ks, want) {
					t.Errorf("%s keys %v; want %v", what, ks, want)
				}
			}
			check("top-level", m, top)
			probes := m["probes"].([]any)
			if len(probes) != 3 {
				t.Fatalf("%d probes", len(probes))
			}
			for _, p := range probes {
				check("probe", p, tt.probeKeys)
				pm := p.(map[string]any)
				check("availability", pm["availability"], sorted("1h", "24h", "7d"))
				check("latency_ms", pm["latency_ms"], sorted("p50", "p99"))
				check("latency_ms_windows", pm["latency_ms_windows"], sorted("1h", "24h", "7d"))
				for _, w := range pm["latency_ms_windows"].(map[string]any) {
					check("latency window", w, sorted("p50", "p99"))
				}
				for _, h := range pm["last_24h"].([]any) {
					check("last_24h", h, sorted("hour", "availability", "p50_ms", "p99_ms"))
				}
			}
			routes := m["routes"].([]any)
			check("route", routes[0], tt.routeKeys)
			if !tt.public {
				for _, a := range routes[0].(map[string]any)["addresses"].([]any) {
					check("address", a, sorted("ip", "ejected"))
				}
			}
			check("contract", m["contract"], sorted("ip_ranges", "upcoming"))
			for _, c := range m["contract"].(map[string]any)["upcoming"].([]any) {
				check("contract change", c, sorted("cidr", "direction", "status", "at"))
			}
			check("incident", m["incident"], sorted("id", "state", "impact", "opened_at", "updated_at", "updates"))
			for _, u := range m["incident"].(map[string]any)["updates"].([]any) {
				check("incident update", u, sorted("at", "state", "impact", "message"))
			}
		})
	}
}

func TestJSONValues(t *testing.T) {
	f := newFixture(t)
	body := getOK(t, f.handler(false), "/status.json")
	var doc struct {
		State  string `json:"state"`
		Probes []struct {
			Name         string              `json:"name"`
			Up           bool                `json:"up"`
			Availability map[string]*float64 `json:"availability"`
			LatencyMS    map[string]*float64 `json:"latency_ms"`
			Windows      map[string]map[string]*float64
			Last24h      []struct {
				Hour         string   `json:"hour"`
				Availability *float64 `json:"availability"`
				P99MS        *float64 `json:"p99_ms"`
			} `json:"last_24h"`
			Checked   *string `json:"checked"`
			LastError string  `json:"last_error"`
		} `json:"probes"`
		Routes []struct {
			Addresses []struct {
				IP      string `json:"ip"`
				Ejected bool   `json:"ejected"`
			} `json:"addresses"`
		} `json:"routes"`
		Contract struct {
			IPRanges string `json:"ip_ranges"`
			Upcoming []struct {
				CIDR, Status, At string
			} `json:"upcoming"`
		} `json:"contract"`
		Incident struct {
			State, Impact, UpdatedAt string
			OpenedAt                 string `json:"opened_at"`
			Updated                  string `json:"updated_at"`
			Updates                  []struct{ At, State, Message string }
		} `json:"incident"`
		UpdateOverdue   bool   `json:"update_overdue"`
		GeneratedAt     string `json:"generated_at"`
		UpdateIntervalS int    `json:"update_interval_s"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	num := func(p *float64) any {
		if p == nil {
			return nil
		}
		return *p
	}
	type check struct {
		what      string
		got, want any
	}
	p0, p1, p2 := doc.Probes[0], doc.Probes[1], doc.Probes[2]
	for _, c := range []check{
		{"state (a probe failed 30 s ago)", doc.State, "degraded"},
		{"generated_at", doc.GeneratedAt, "2026-03-14T12:00:00Z"},
		{"update_interval_s", doc.UpdateIntervalS, 1800},
		{"update_overdue", doc.UpdateOverdue, false},
		{"probe 0 name", p0.Name, "fleet-connect"},
		{"probe 0 up", p0.Up, true},
		{"1h availability", num(p0.Availability["1h"]), 1.0},
		{"24h availability, rounded down", num(p0.Availability["24h"]), 0.999305},
		{"p50", num(p0.LatencyMS["p50"]), 41.0},
		{"p99", num(p0.LatencyMS["p99"]), 180.0},
		{"last_24h length", len(p0.Last24h), 24},
		{"hour without data", num(p0.Last24h[0].Availability), nil},
		{"its p99", num(p0.Last24h[0].P99MS), nil},
		{"first hour", p0.Last24h[0].Hour, "2026-03-13T13:00:00Z"},
		{"checked", *p0.Checked, "2026-03-14T11:59:40Z"},
		{"probe 1 up", p1.Up, false},
		{"probe 1 last_error", p1.LastError, secretError},
		{"7d without data", num(p1.Availability["7d"]), nil},
		{"probe not run: availability", num(p2.Availability["1h"]), nil},
		{"probe not run: latency", num(p2.LatencyMS["p99"]), nil},
		{"probe not run: checked", p2.Checked == nil, true},
		{"probe not run: last_24h", len(p2.Last24h), 0},
		{"addresses", len(doc.Routes[0].Addresses), 3},
		{"ejected address", doc.Routes[0].Addresses[1].IP + " " + map[bool]string{true: "ejected"}[doc.Routes[0].Addresses[1].Ejected], secretIP2 + " ejected"},
		{"ip_ranges", doc.Contract.IPRanges, "/ip-ranges.json"},
		{"upcoming (active dropped)", len(doc.Contract.Upcoming), 2},
		{"soonest first", doc.Contract.Upcoming[0].Status + " " + doc.Contract.Upcoming[0].At, "draining 2026-03-17T12:00:00Z"},
		{"incident state", doc.Incident.State, "identified"},
		{"incident impact", doc.Incident.Impact, "degraded"},
		{"opened_at", doc.Incident.OpenedAt, "2026-03-14T11:40:00Z"},
		{"updated_at", doc.Incident.Updated, "2026-03-14T11:50:00Z"},
		{"newest update first", doc.Incident.Updates[0].Message, "A fleet lost its DNS name."},
		{"updates", len(doc.Incident.Updates), 2},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v; want %v", c.what, c.got, c.want)
		}
	}
	if strings.Contains(body, "<script>") {
		t.Error("the JSON carries a raw <script> (encoding/json escapes it)")
	}
}

func TestJSONEmpty(t *testing.T) {
	h := NewHandler(Source{}, nil, nil, false)
	m := decodeJSON(t, getOK(t, h, "/status.json"))
	for _, c := range []struct {
		key  string
		want string
	}{{"state", `"operational"`}, {"probes", `[]`}, {"routes", `[]`}, {"contract", `null`}, {"incident", `null`}, {"update_overdue", `false`}} {
		got, _ := json.Marshal(m[c.key])
		if string(got) != c.want {
			t.Errorf("%s: %s; want %s", c.key, got, c.want)
		}
	}
}

// TestPublicViewRedacted: no backend address, probe error, or path on the host in any public
// response; the admin view has them (so the test looks for strings that would be there).
func TestPublicViewRedacted(t *testing.T) {
	f := newFixture(t)
	// A broken incidents file: the admin view names it, the public one must not.
	if err := os.WriteFile(filepath.Join(f.dir, FileName), []byte("{broken"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.store.reload()
	if f.store.Err() == nil || f.store.Open() == nil {
		t.Fatal("fixture: the store should keep the last good incidents and report the error")
	}
	internal := []string{secretIP1, secretIP2, secretIP6, secretError, "10.9.8.7", "connection refused", f.dir, FileName,
		"last_error", "addresses", "consecutive_failures", "incidents_error", "fleet.example.com"}
	for _, path := range Paths {
		pub := getOK(t, f.handler(true), path)
		for _, s := range internal {
			if strings.Contains(pub, s) {
				t.Errorf("public %s contains %q", path, s)
			}
		}
	}
	for _, path := range []string{PathHTML, PathJSON} {
		admin := getOK(t, f.handler(false), path)
		for _, s := range []string{secretIP1, secretIP2, secretIP6, "connection refused", f.dir, "fleet.example.com"} {
			if !strings.Contains(admin, s) {
				t.Errorf("admin %s lacks %q", path, s)
			}
		}
	}
}

func TestOverdue(t *testing.T) {
	f := newFixture(t) // the open incident was last updated at t0-10m
	last := t0.Add(-10 * time.Minute)
	tests := []struct {
		name     string
		now      time.Time
		interval time.Duration
		want     bool
	}{
		{"just updated", last, 30 * time.Minute, false},
		{"29 minutes", last.Add(29 * time.Minute), 30 * time.Minute, false},
		{"exactly the interval", last.Add(30 * time.Minute), 30 * time.Minute, false},
		{"a second past", last.Add(30*time.Minute + time.Second), 30 * time.Minute, true},
		{"45 minutes", last.Add(45 * time.Minute), 30 * time.Minute, true},
		{"45 minutes, hourly updates", last.Add(45 * time.Minute), time.Hour, false},
		{"unset interval means 30m", last.Add(45 * time.Minute), 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.clock.Set(tt.now)
			f.cfg.UpdateInterval = tt.interval
			h := f.handler(true)
			if got := h.Overdue(); got != tt.want {
				t.Errorf("Overdue() = %v; want %v", got, tt.want)
			}
			m := decodeJSON(t, getOK(t, h, "/status.json"))
			if m["update_overdue"] != tt.want {
				t.Errorf("update_overdue %v; want %v", m["update_overdue"], tt.want)
			}
			page := getOK(t, h, "/status")
			if has := strings.Contains(page, "Update overdue: last update "); has != tt.want {
				t.Errorf("page says overdue: %v; want %v", has, tt.want)
			}
			if tt.name == "45 minutes" && !strings.Contains(page, "Update overdue: last update 45 min ago") {
				t.Error("the page does not say how long ago the last update was")
			}
		})
	}
	t.Run("resolved", func(t *testing.T) {
		f.clock.Set(t0.Add(5 * time.Hour))
		f.cfg.UpdateInterval = 30 * time.Minute
		mustPost(t, f.dir, "resolved", "Fixed.", "", t0)
		f.store.reload()
		if f.handler(false).Overdue() {
			t.Error("overdue with no incident open")
		}
	})
	t.Run("no store", func(t *testing.T) {
		if NewHandler(f.src, nil, nil, false).Overdue() {
			t.Error("overdue without a store")
		}
	})
}

func TestHTML(t *testing.T) {
	for _, public := range []bool{true, false} {
		t.Run(map[bool]string{true: "public", false: "admin"}[public], func(t *testing.T) {
			f := newFixture(t)
			w := get(t, f.handler(public), http.MethodGet, "/status")
			body := w.Body.String()
			for _, c := range []struct{ header, want string }{
				{"Content-Type", "text/html; charset=utf-8"},
				{"Cache-Control", "no-store"},
				{"X-Content-Type-Options", "nosniff"},
			} {
				if got := w.Header().Get(c.header); got != c.want {
					t.Errorf("%s: %q; want %q", c.header, got, c.want)
				}
			}
			if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script") {
				t.Errorf("Content-Security-Policy %q", csp)
			}
			if strings.Contains(strings.ToLower(body), "<script") {
				t.Error("the page has a <script>")
			}
			checkBalanced(t, body)
			doc, err := html.Parse(strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			var text strings.Builder
			var svgs, bars int
			classes := map[string]int{}
			var metas []string
			var hrefs []string
			var walk func(n *html.Node, inSVG bool)
			walk = func(n *html.Node, inSVG bool) {
				switch {
				case n.Type == html.TextNode:
					text.WriteString(n.Data)
				case n.Type == html.ElementNode && n.Data == "svg":
					svgs++
					inSVG = true
				case n.Type == html.ElementNode && n.Data == "rect" && inSVG:
					if n.FirstChild == nil || n.FirstChild.Data != "title" {
						t.Error("a bar without a <title> tooltip")
					}
					bars++
					classes[attr(n, "class")]++
				case n.Type == html.ElementNode && n.Data == "meta":
					metas = append(metas, attr(n, "name")+attr(n, "http-equiv")+"="+attr(n, "content"))
				case n.Type == html.ElementNode && n.Data == "a":
					hrefs = append(hrefs, attr(n, "href"))
				case n.Type == html.ElementNode && n.Data == "script":
					t.Error("a script element")
				}
				for c := range n.ChildNodes() {
					walk(c, inSVG)
				}
			}
			walk(doc, false)
			txt := strings.Join(strings.Fields(text.String()), " ")
			for _, want := range []string{
				"Degraded: some requests fail or are slow", // the state as text, not only colour
				"identified (impact: degraded)",
				"Gateway requests fail <script>alert(1)</script> & more.", // escaped, shown as text
				"fleet-connect", "✓ Up", "✕ Down", "Not run yet", "99.93%", "100%", "no data",
				"gw.example.com/api/",
				"203.0.113.7/32", "goes live 2026-03-28 12:00 UTC", "198.51.100.0/24", "retired 2026-03-17 12:00 UTC",
				"Earlier: slow DNS.", "Resolved", "A fleet lost its DNS name.",
			} {
				if !strings.Contains(txt, want) {
					t.Errorf("the page does not say %q", want)
				}
			}
			if svgs != 3 || bars != 3*24 {
				t.Errorf("%d charts with %d bars; want 3 with 24 each", svgs, bars)
			}
			if classes["nodata"] != 1+20+24 {
				t.Errorf("%d bars without data; want 45 (1 + 20 before the second probe's 4 hours + 24 of a probe not run)", classes["nodata"])
			}
			for _, class := range []string{"full", "high", "low", "nodata"} {
				if classes[class] == 0 {
					t.Errorf("no bar of class %s; classes %v", class, classes)
				}
			}
			for _, want := range []string{"viewport=width=device-width, initial-scale=1", "refresh=60"} {
				if !slices.Contains(metas, want) {
					t.Errorf("no meta %s in %v", want, metas)
				}
			}
			for _, want := range []string{"/ip-ranges.json", PathJSON, PathAtom} {
				if !slices.Contains(hrefs, want) {
					t.Errorf("no link to %s in %v", want, hrefs)
				}
			}
			if admin := strings.Contains(txt, secretIP1); admin == public {
				t.Errorf("backend addresses shown: %v; public %v", admin, public)
			}
		})
	}
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// checkBalanced fails the test unless every element the page opens it also closes, in order
// (void elements aside): stricter than the HTML parser, which repairs anything.
func checkBalanced(t *testing.T, body string) {
	t.Helper()
	void := map[string]bool{"meta": true, "link": true, "br": true, "img": true, "input": true, "hr": true}
	z := html.NewTokenizer(strings.NewReader(body))
	var stack []string
	for {
		switch z.Next() {
		case html.ErrorToken:
			if len(stack) != 0 {
				t.Errorf("unclosed elements at the end: %v", stack)
			}
			return
		case html.StartTagToken:
			name, _ := z.TagName()
			if !void[string(name)] {
				stack = append(stack, string(name))
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			if len(stack) == 0 || stack[len(stack)-1] != string(name) {
				t.Fatalf("</%s> closes %v", name, stack)
			}
			stack = stack[:len(stack)-1]
		}
	}
}

type testFeed struct {
	XMLName xml.Name `xml:"http://www.w3.org/2005/Atom feed"`
	ID      string   `xml:"id"`
	Updated string   `xml:"updated"`
	Links   []struct {
		Rel  string `xml:"rel,attr"`
		Href string `xml:"href,attr"`
	} `xml:"link"`
	Entries []struct {
		ID      string `xml:"id"`
		Title   string `xml:"title"`
		Updated string `xml:"updated"`
		Link    struct {
			Href string `xml:"href,attr"`
		} `xml:"link"`
		Content string `xml:"content"`
	} `xml:"entry"`
}

func TestAtom(t *testing.T) {
	f := newFixture(t)
	w := get(t, f.handler(true), http.MethodGet, "/status.atom")
	if ct, cc := w.Header().Get("Content-Type"), w.Header().Get("Cache-Control"); ct != "application/atom+xml" || cc != "no-store" {
		t.Errorf("Content-Type %q, Cache-Control %q", ct, cc)
	}
	var feed testFeed
	if err := xml.Unmarshal(w.Body.Bytes(), &feed); err != nil {
		t.Fatalf("the feed does not parse: %v\n%s", err, w.Body)
	}
	open := f.store.Open().ID
	old := f.store.All()[1].ID
	type entry struct{ id, title, updated string }
	want := []entry{
		{FeedID + ":" + open + ":2", "identified: A fleet lost its DNS name.", "2026-03-14T11:50:00Z"},
		{FeedID + ":" + open + ":1", "investigating: Gateway requests fail <script>alert(1)</script> & more.", "2026-03-14T11:40:00Z"},
		{FeedID + ":" + old + ":2", "resolved: Earlier: fixed.", "2026-03-12T13:00:00Z"},
		{FeedID + ":" + old + ":1", "investigating: Earlier: slow DNS.", "2026-03-12T12:00:00Z"},
	}
	if len(feed.Entries) != len(want) {
		t.Fatalf("%d entries; want %d", len(feed.Entries), len(want))
	}
	for i, e := range feed.Entries {
		if got := (entry{e.ID, e.Title, e.Updated}); got != want[i] {
			t.Errorf("entry %d: %+v; want %+v", i, got, want[i])
		}
		if e.Link.Href != PathHTML {
			t.Errorf("entry %d links to %q", i, e.Link.Href)
		}
	}
	if feed.Entries[1].Content != "Gateway requests fail <script>alert(1)</script> & more.\nSecond line." {
		t.Errorf("content %q; want the whole message", feed.Entries[1].Content)
	}
	if feed.ID != FeedID || feed.Updated != "2026-03-14T11:50:00Z" {
		t.Errorf("feed id %q, updated %q", feed.ID, feed.Updated)
	}

	// Entry ids stay as updates are added.
	mustPost(t, f.dir, "monitoring", "Watching.", "", t0)
	f.store.reload()
	feed = testFeed{}
	if err := xml.Unmarshal([]byte(getOK(t, f.handler(true), "/status.atom")), &feed); err != nil {
		t.Fatal(err)
	}
	if len(feed.Entries) != 5 || feed.Entries[0].ID != FeedID+":"+open+":3" || feed.Entries[1].ID != want[0].id {
		t.Errorf("after one more update: %d entries, first ids %s, %s", len(feed.Entries), feed.Entries[0].ID, feed.Entries[1].ID)
	}
}

func TestRouting(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name, method, target string
		public, enabled      bool
		wantCode             int
		wantBody             bool
	}{
		{"HTML", http.MethodGet, "/status", true, true, 200, true},
		{"JSON", http.MethodGet, "/status.json", false, false, 200, true},
		{"Atom", http.MethodGet, "/status.atom", true, true, 200, true},
		{"HEAD", http.MethodHead, "/status.json", true, true, 200, false},
		{"query ignored", http.MethodGet, "/status.json?nocache=123", true, true, 200, true},
		{"POST", http.MethodPost, "/status", true, true, 405, true},
		{"DELETE", http.MethodDelete, "/status.atom", false, false, 405, true},
		{"trailing slash", http.MethodGet, "/status/", true, true, 404, true},
		{"other path", http.MethodGet, "/statusx", false, false, 404, true},
		{"root", http.MethodGet, "/", false, false, 404, true},
		{"public view switched off", http.MethodGet, "/status", true, false, 404, true},
		{"admin view while public is off", http.MethodGet, "/status", false, false, 200, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Public: tt.enabled, UpdateInterval: time.Hour}
			h := NewHandler(f.src, f.store, func() Config { return cfg }, tt.public)
			w := get(t, h, tt.method, tt.target)
			if w.Code != tt.wantCode {
				t.Fatalf("%s %s: %d; want %d", tt.method, tt.target, w.Code, tt.wantCode)
			}
			if (w.Body.Len() > 0) != tt.wantBody {
				t.Errorf("body of %d bytes", w.Body.Len())
			}
			if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q", cc)
			}
			if tt.wantCode == 405 && w.Header().Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow %q", w.Header().Get("Allow"))
			}
			if tt.method == http.MethodHead && w.Header().Get("Content-Length") == "0" {
				t.Error("HEAD without the GET's Content-Length")
			}
		})
	}
}

// TestPageState: the state reaches the JSON and the page, as text and as a colour class.
func TestPageState(t *testing.T) {
	up := ProbeStatus{Name: "p", Up: true, Checked: t0}
	failing := ProbeStatus{Name: "p", Checked: t0, LastFailure: t0, ConsecutiveFailures: 1}
	down := ProbeStatus{Name: "p", Checked: t0, LastFailure: t0, ConsecutiveFailures: 3}
	tests := []struct {
		name      string
		probe     ProbeStatus
		impact    string // "": no incident
		want      State
		wantTexts []string
		notTexts  []string
	}{
		{"all well", up, "", Operational, []string{"All systems operational"}, []string{"no incident has been posted"}},
		{"probe failing, nothing posted", failing, "", Degraded, []string{"Degraded: some requests fail or are slow", "Our own checks see failures; no incident has been posted yet."}, nil},
		{"probe down, nothing posted", down, "", Outage, []string{"Outage: requests are failing", "no incident has been posted yet"}, nil},
		{"incident posted, probes fine", up, "outage", Outage, []string{"Outage: requests are failing", "investigating</strong> (impact: outage)"}, []string{"no incident has been posted"}},
		{"incident posted, probe failing", failing, "degraded", Degraded, []string{"Degraded", "investigating</strong> (impact: degraded)"}, []string{"no incident has been posted"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.impact != "" {
				mustPost(t, dir, "investigating", "We are looking into it.", tt.impact, t0)
			}
			store := OpenStore(dir, nil)
			defer store.Close()
			src := Source{Probes: func() []ProbeStatus { return []ProbeStatus{tt.probe} }, Now: func() time.Time { return t0.Add(time.Minute) }}
			h := NewHandler(src, store, nil, false)
			if got := h.State(); got != tt.want {
				t.Errorf("State() = %s; want %s", got, tt.want)
			}
			if got := decodeJSON(t, getOK(t, h, "/status.json"))["state"]; got != string(tt.want) {
				t.Errorf("JSON state %v; want %s", got, tt.want)
			}
			page := getOK(t, h, "/status")
			if !strings.Contains(page, `class="banner s-`+string(tt.want)+`"`) {
				t.Errorf("the banner is not coloured as %s", tt.want)
			}
			for _, s := range tt.wantTexts {
				if !strings.Contains(page, s) {
					t.Errorf("the page does not say %q", s)
				}
			}
			for _, s := range tt.notTexts {
				if strings.Contains(page, s) {
					t.Errorf("the page says %q", s)
				}
			}
		})
	}
}
