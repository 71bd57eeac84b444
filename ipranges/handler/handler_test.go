package handler

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fixedgate/fixedgate/ipranges"
)

var (
	t0      = time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC) // init
	tAnn    = time.Date(2026, 11, 23, 18, 40, 0, 0, time.UTC)
	tEnable = tAnn.Add(ipranges.MinNotice)
	tRetire = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC) // retire command
	tGone   = tRetire.Add(60 * 24 * time.Hour)             // its retired date
)

func tp(t time.Time) *time.Time { return &t }

func pfx(cidr string, dir ipranges.Direction, published, enabled time.Time, retired *time.Time) ipranges.Prefix {
	p := netip.MustParsePrefix(cidr)
	class := "ipv4"
	if p.Addr().Is6() {
		class = "ipv6"
	}
	return ipranges.Prefix{CIDR: p, Class: class, Direction: dir, Service: "proxy", Facility: "us-east-1",
		Published: published, Enabled: enabled, Retired: retired}
}

// testDoc is DESIGN.md's sample: an active, an announced, a draining and an IPv6 prefix.
func testDoc() *ipranges.Document {
	return &ipranges.Document{
		SchemaVersion: 1,
		SyncToken:     fmt.Sprint(tAnn.UnixMilli()),
		CreatedAt:     t0,
		NoticeDays:    14,
		Prefixes: []ipranges.Prefix{
			pfx("203.0.113.10/32", ipranges.Ingress, t0, t0, nil),
			pfx("203.0.113.11/32", ipranges.Ingress, tAnn, tEnable, nil),
			pfx("198.51.100.20/32", ipranges.Egress, t0, t0, tp(tGone)),
			pfx("2001:db8::10/128", ipranges.Ingress, t0, t0, nil),
		},
		Changelog: []ipranges.Change{
			{SyncToken: fmt.Sprint(t0.UnixMilli()), At: t0, Action: "init", CIDR: "203.0.113.10/32", Direction: ipranges.Ingress},
			{SyncToken: fmt.Sprint(t0.UnixMilli()), At: t0, Action: "init", CIDR: "198.51.100.20/32", Direction: ipranges.Egress},
			{SyncToken: fmt.Sprint(t0.UnixMilli()), At: t0, Action: "init", CIDR: "2001:db8::10/128", Direction: ipranges.Ingress},
			{SyncToken: fmt.Sprint(tRetire.UnixMilli()), At: tRetire, Action: "retire", CIDR: "198.51.100.20/32", Direction: ipranges.Egress},
			{SyncToken: fmt.Sprint(tAnn.UnixMilli()), At: tAnn, Action: "announce", CIDR: "203.0.113.11/32", Direction: ipranges.Ingress,
				Note: `ticket <OPS-1> & "quotes"`},
		},
	}
}

// clock is a settable clock for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time   { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time)  { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func newClock(t time.Time) *clock { return &clock{t: t} }

func newHandler(t testing.TB, now time.Time, key ed25519.PrivateKey) (*Handler, *clock) {
	t.Helper()
	c := newClock(now)
	h := New(Options{Now: c.Now, SigningKey: key, MaxAge: 300 * time.Second})
	t.Cleanup(h.Close)
	if err := h.Set(testDoc()); err != nil {
		t.Fatal(err)
	}
	return h, c
}

func do(h http.Handler, method, target string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestServeJSON(t *testing.T) {
	now := tAnn.Add(time.Hour)
	h, _ := newHandler(t, now, nil)
	w := do(h, "GET", "/ip-ranges.json")
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	want, _ := ipranges.Render(testDoc(), now, ipranges.Filter{})
	if !bytes.Equal(w.Body.Bytes(), want) {
		t.Fatalf("body differs from ipranges.Render:\n%s", w.Body)
	}
	for k, v := range map[string]string{
		"Content-Type":           "application/json",
		"Cache-Control":          "public, max-age=300",
		"X-Content-Type-Options": "nosniff",
		"Content-Length":         fmt.Sprint(len(want)),
		"Last-Modified":          tAnn.Format(http.TimeFormat), // the announce, the latest change
	} {
		if got := w.Header().Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if et := w.Header().Get("ETag"); len(et) != 34 || et[0] != '"' || strings.HasPrefix(et, "W/") {
		t.Errorf("ETag %q is not a strong quoted 32-hex tag", et)
	}
	var got struct {
		Prefixes []struct {
			CIDR   string `json:"cidr"`
			Status string `json:"status"`
		} `json:"prefixes"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	st := map[string]string{}
	for _, p := range got.Prefixes {
		st[p.CIDR] = p.Status
	}
	if st["203.0.113.11/32"] != "announced" || st["198.51.100.20/32"] != "draining" || st["203.0.113.10/32"] != "active" {
		t.Errorf("statuses %v", st)
	}
}

func TestHeadMethodsAndPaths(t *testing.T) {
	h, _ := newHandler(t, tAnn, nil)
	get := do(h, "GET", "/ip-ranges.json")
	head := do(h, "HEAD", "/ip-ranges.json")
	if head.Code != 200 || head.Body.Len() != 0 {
		t.Errorf("HEAD: %d with %d body bytes", head.Code, head.Body.Len())
	}
	for _, k := range []string{"ETag", "Content-Length", "Last-Modified", "Content-Type"} {
		if head.Header().Get(k) != get.Header().Get(k) {
			t.Errorf("HEAD %s %q, GET %q", k, head.Header().Get(k), get.Header().Get(k))
		}
	}
	for _, m := range []string{"POST", "PUT", "DELETE", "OPTIONS"} {
		w := do(h, m, "/ip-ranges.json")
		if w.Code != 405 || w.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: %d Allow=%q", m, w.Code, w.Header().Get("Allow"))
		}
	}
	if w := do(h, "GET", "/ip-ranges.yaml"); w.Code != 404 {
		t.Errorf("unknown path: %d", w.Code)
	}
	if w := do(h, "GET", "/ip-ranges.json.sig"); w.Code != 404 || !strings.Contains(w.Body.String(), "signing_key") {
		t.Errorf(".sig without a key: %d %q", w.Code, w.Body)
	}
	empty := New(Options{})
	defer empty.Close()
	if w := do(empty, "GET", "/ip-ranges.json"); w.Code != 503 {
		t.Errorf("nothing set: %d", w.Code)
	}
	if len(Paths) != 4 {
		t.Errorf("Paths %v", Paths)
	}
	for _, p := range Paths {
		if w := do(h, "GET", p); w.Code == 404 && p != PathSig {
			t.Errorf("%s: 404", p)
		}
	}
}

func TestConditionalRequests(t *testing.T) {
	h, _ := newHandler(t, tAnn.Add(time.Minute), nil)
	first := do(h, "GET", "/ip-ranges.json")
	etag, lm := first.Header().Get("ETag"), first.Header().Get("Last-Modified")
	weak := "W/" + etag
	cases := []struct {
		name string
		hdr  []string
		want int
	}{
		{"exact", []string{"If-None-Match", etag}, 304},
		{"weak", []string{"If-None-Match", weak}, 304},
		{"list", []string{"If-None-Match", `"abc", ` + weak + `, "def"`}, 304},
		{"two lines", []string{"If-None-Match", `"abc"`, "If-None-Match", etag}, 304},
		{"star", []string{"If-None-Match", "*"}, 304},
		{"other", []string{"If-None-Match", `"0123"`}, 200},
		{"garbage", []string{"If-None-Match", `abc, W/, "unterminated`}, 200},
		{"ims equal", []string{"If-Modified-Since", lm}, 304},
		{"ims later", []string{"If-Modified-Since", tAnn.Add(time.Hour).Format(http.TimeFormat)}, 304},
		{"ims earlier", []string{"If-Modified-Since", tAnn.Add(-time.Second).Format(http.TimeFormat)}, 200},
		{"ims bad", []string{"If-Modified-Since", "yesterday"}, 200},
		// If-None-Match takes precedence over If-Modified-Since (RFC 9110 §13.2.2).
		{"inm wins", []string{"If-None-Match", `"0123"`, "If-Modified-Since", lm}, 200},
	}
	for _, c := range cases {
		for _, m := range []string{"GET", "HEAD"} {
			w := do(h, m, "/ip-ranges.json", c.hdr...)
			if w.Code != c.want {
				t.Errorf("%s %s: %d, want %d", c.name, m, w.Code, c.want)
				continue
			}
			if c.want == 304 {
				if w.Body.Len() != 0 || w.Header().Get("Content-Type") != "" || w.Header().Get("Content-Length") != "" {
					t.Errorf("%s: 304 with body %q / type %q / length %q", c.name, w.Body, w.Header().Get("Content-Type"), w.Header().Get("Content-Length"))
				}
				if w.Header().Get("ETag") != etag || w.Header().Get("Last-Modified") != lm || w.Header().Get("Cache-Control") == "" {
					t.Errorf("%s: 304 headers %v", c.name, w.Header())
				}
			}
		}
	}
}

// TestOverHTTP checks the same over a real loopback connection, where net/http applies its own
// rules about 304 and HEAD.
func TestOverHTTP(t *testing.T) {
	h, _ := newHandler(t, tAnn, nil)
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/ip-ranges.json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != int64(len(body)) {
		t.Fatalf("%d, length %d for %d bytes", resp.StatusCode, resp.ContentLength, len(body))
	}
	req, _ := http.NewRequest("GET", srv.URL+"/ip-ranges.json", nil)
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	if resp2.StatusCode != 304 || len(b2) != 0 || resp2.Header.Get("ETag") != resp.Header.Get("ETag") {
		t.Fatalf("conditional: %d, %d bytes, ETag %q", resp2.StatusCode, len(b2), resp2.Header.Get("ETag"))
	}
}

func TestFilteredViews(t *testing.T) {
	now := tAnn.Add(time.Hour)
	h, _ := newHandler(t, now, nil)
	for _, q := range []string{"direction=ingress", "direction=egress", "status=announced", "status=draining",
		"status=retired", "direction=ingress&status=active", "status=active&direction=egress"} {
		w := do(h, "GET", "/ip-ranges.json?"+q)
		if w.Code != 200 {
			t.Errorf("%s: %d %s", q, w.Code, w.Body)
			continue
		}
		vals, _ := urlValues(q)
		want, _ := ipranges.Render(testDoc(), now, ipranges.Filter{Direction: ipranges.Direction(vals["direction"]), Status: ipranges.Status(vals["status"])})
		if !bytes.Equal(w.Body.Bytes(), want) {
			t.Errorf("%s: body differs from Render with that filter", q)
		}
		again := do(h, "GET", "/ip-ranges.json?"+q, "If-None-Match", w.Header().Get("ETag"))
		if again.Code != 304 {
			t.Errorf("%s: conditional %d", q, again.Code)
		}
	}
	for q, msg := range map[string]string{
		"direction=sideways":                 "bad direction",
		"status=live":                        "bad status",
		"direction=":                         "bad direction",
		"foo=1":                              "unknown query parameter",
		"direction=ingress&direction=egress": "more than once",
		"status=%zz":                         "bad query",
	} {
		w := do(h, "GET", "/ip-ranges.json?"+q)
		if w.Code != 400 || !strings.Contains(w.Body.String(), msg) || strings.Count(w.Body.String(), "\n") != 1 {
			t.Errorf("%s: %d %q, want 400 with %q", q, w.Code, w.Body, msg)
		}
	}
	for _, p := range []string{"/ip-ranges.atom?x=1", "/ip-ranges.txt?status=active"} {
		if w := do(h, "GET", p); w.Code != 400 {
			t.Errorf("%s: %d", p, w.Code)
		}
	}
	// Views are rendered once per version.
	v := h.cur.Load()
	r1, _ := v.jsonView("direction=ingress")
	r2, _ := v.jsonView("direction=ingress")
	if r1 != r2 {
		t.Error("a view was rendered twice")
	}
}

func urlValues(q string) (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range strings.Split(q, "&") {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m, nil
}

func TestTXT(t *testing.T) {
	doc := testDoc()
	// A retired prefix is left out; duplicates across directions appear once.
	doc.Prefixes = append(doc.Prefixes,
		pfx("192.0.2.0/24", ipranges.Egress, t0, t0, tp(t0.Add(24*time.Hour))),
		pfx("203.0.113.10/32", ipranges.Egress, tAnn, tEnable, nil),
		pfx("10.0.0.0/8", ipranges.Egress, tAnn, tEnable, nil))
	c := newClock(tAnn.Add(time.Hour))
	h := New(Options{Now: c.Now})
	defer h.Close()
	if err := h.Set(doc); err != nil {
		t.Fatal(err)
	}
	w := do(h, "GET", "/ip-ranges.txt")
	want := "# fixedgate ip-ranges sync_token=" + doc.SyncToken + ": active, announced and draining ingress and egress prefixes, one CIDR a line\n" +
		"10.0.0.0/8\n198.51.100.20/32\n203.0.113.10/32\n203.0.113.11/32\n2001:db8::10/128\n"
	if w.Code != 200 || w.Body.String() != want || w.Header().Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("%d %q:\n%s\nwant:\n%s", w.Code, w.Header().Get("Content-Type"), w.Body, want)
	}
	w = do(h, "GET", "/ip-ranges.txt?direction=egress")
	if !strings.HasSuffix(w.Body.String(), "egress prefixes, one CIDR a line\n10.0.0.0/8\n198.51.100.20/32\n203.0.113.10/32\n") {
		t.Errorf("egress view:\n%s", w.Body)
	}
	// Parseable: every line but the first is a CIDR.
	sc := bufio.NewScanner(strings.NewReader(do(h, "GET", "/ip-ranges.txt").Body.String()))
	for i := 0; sc.Scan(); i++ {
		if i == 0 {
			if !strings.HasPrefix(sc.Text(), "# ") {
				t.Errorf("first line %q", sc.Text())
			}
			continue
		}
		if _, err := netip.ParsePrefix(sc.Text()); err != nil {
			t.Errorf("line %d: %v", i+1, err)
		}
	}
}

func TestAtom(t *testing.T) {
	h, _ := newHandler(t, tAnn, nil)
	w := do(h, "GET", "/ip-ranges.atom")
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/atom+xml" {
		t.Fatalf("%d %q", w.Code, w.Header().Get("Content-Type"))
	}
	var feed struct {
		XMLName xml.Name `xml:"http://www.w3.org/2005/Atom feed"`
		ID      string   `xml:"id"`
		Updated string   `xml:"updated"`
		Author  string   `xml:"author>name"`
		Entries []struct {
			ID      string `xml:"id"`
			Title   string `xml:"title"`
			Updated string `xml:"updated"`
			Content string `xml:"content"`
		} `xml:"entry"`
	}
	dec := xml.NewDecoder(bytes.NewReader(w.Body.Bytes()))
	dec.Strict = true
	if err := dec.Decode(&feed); err != nil {
		t.Fatalf("not valid XML: %v\n%s", err, w.Body)
	}
	if feed.ID != FeedID || feed.Updated != "2026-11-23T18:40:00Z" || feed.Author == "" || len(feed.Entries) != 5 {
		t.Fatalf("feed %+v", feed)
	}
	e := feed.Entries[0] // newest first: the announce
	if e.Title != "announce ingress 203.0.113.11/32" || e.Updated != "2026-11-23T18:40:00Z" ||
		!strings.Contains(e.Content, "takes effect (enabled) at 2026-12-07T18:40:00Z") ||
		!strings.Contains(e.Content, `ticket <OPS-1> & "quotes"`) {
		t.Errorf("first entry %+v", e)
	}
	if !strings.Contains(w.Body.String(), "&lt;OPS-1&gt; &amp;") {
		t.Error("note not escaped in the raw XML")
	}
	if feed.Entries[1].Title != "retire egress 198.51.100.20/32" {
		t.Errorf("second entry %q", feed.Entries[1].Title)
	}
	ids := map[string]bool{}
	for _, e := range feed.Entries {
		if !strings.HasPrefix(e.ID, FeedID+"/") || ids[e.ID] {
			t.Errorf("entry id %q not unique or not a tag: URI", e.ID)
		}
		ids[e.ID] = true
	}
	// Ids are stable when the changelog grows.
	doc := testDoc()
	doc.Changelog = append(doc.Changelog, ipranges.Change{SyncToken: "1799999999999", At: tAnn.Add(time.Hour), Action: "announce", CIDR: "203.0.113.12/32"})
	body, err := renderAtom(doc)
	if err != nil {
		t.Fatal(err)
	}
	for id := range ids {
		if !bytes.Contains(body, []byte("<id>"+id+"</id>")) {
			t.Errorf("id %s changed when the changelog grew", id)
		}
	}
}

func TestSignature(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	h, c := newHandler(t, tAnn, priv)
	check := func() {
		j := do(h, "GET", "/ip-ranges.json")
		s := do(h, "GET", "/ip-ranges.json.sig")
		if s.Code != 200 || s.Body.Len() != ipranges.SignatureSize {
			t.Fatalf(".sig: %d %q", s.Code, s.Body)
		}
		if err := ipranges.Verify(pub, j.Body.Bytes(), s.Body.Bytes()); err != nil {
			t.Fatal(err)
		}
		if s.Header().Get(signedETagHeader) != j.Header().Get("ETag") {
			t.Errorf("signed ETag %q, JSON ETag %q", s.Header().Get(signedETagHeader), j.Header().Get("ETag"))
		}
		tampered := bytes.Clone(j.Body.Bytes())
		tampered[len(tampered)/2] ^= 1
		if err := ipranges.Verify(pub, tampered, s.Body.Bytes()); err == nil {
			t.Fatal("a tampered document verified")
		}
	}
	check()
	c.Set(tEnable) // the announced prefix goes active: re-rendered and re-signed
	check()
}

// TestSignatureNeverDisagrees installs versions while readers check that the version they see
// carries a signature over its own JSON.
func TestSignatureNeverDisagrees(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	h, c := newHandler(t, tAnn, priv)
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				v := h.current(c.Now())
				if err := ipranges.Verify(pub, v.json.body, v.sig.body); err != nil {
					errs <- err
					return
				}
				for _, target := range []string{"/ip-ranges.json?direction=ingress", "/ip-ranges.txt?direction=egress", "/ip-ranges.atom"} {
					if w := do(h, "GET", target); w.Code != 200 {
						errs <- fmt.Errorf("%s: %d", target, w.Code)
						return
					}
				}
			}
		}()
	}
	for i := range 200 {
		doc := testDoc()
		doc.Prefixes[0].Facility = fmt.Sprint("f", i)
		if err := h.Set(doc); err != nil {
			t.Fatal(err)
		}
		c.Set(tAnn.Add(time.Duration(i) * time.Hour)) // crosses tEnable: re-rendered on request
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestTransitionByClock(t *testing.T) {
	h, c := newHandler(t, tEnable.Add(-time.Minute), nil)
	before := do(h, "GET", "/ip-ranges.json")
	if !strings.Contains(before.Body.String(), `"status": "announced"`) {
		t.Fatal("no announced prefix before the transition")
	}
	c.Set(tEnable.Add(10 * time.Second)) // the timer has not fired (it runs on real time); the request re-renders
	after := do(h, "GET", "/ip-ranges.json", "If-None-Match", before.Header().Get("ETag"))
	if after.Code != 200 || strings.Contains(after.Body.String(), `"status": "announced"`) {
		t.Fatalf("after the transition: %d\n%s", after.Code, after.Body)
	}
	if after.Header().Get("ETag") == before.Header().Get("ETag") {
		t.Error("ETag unchanged across a status change")
	}
	if got := after.Header().Get("Last-Modified"); got != tEnable.Format(http.TimeFormat) {
		t.Errorf("Last-Modified %q, want the transition time %q", got, tEnable.Format(http.TimeFormat))
	}
	// A client holding the old copy and asking by date gets the new one.
	ims := do(h, "GET", "/ip-ranges.json", "If-Modified-Since", before.Header().Get("Last-Modified"))
	if ims.Code != 200 {
		t.Errorf("If-Modified-Since the old Last-Modified: %d", ims.Code)
	}
	// The draining prefix retires later: the .txt drops it then.
	c.Set(tGone)
	if txt := do(h, "GET", "/ip-ranges.txt").Body.String(); strings.Contains(txt, "198.51.100.20/32") {
		t.Errorf("retired prefix still in .txt:\n%s", txt)
	}
}

// TestTimerRerenders uses the real clock: the version is replaced at the transition without any
// request.
func TestTimerRerenders(t *testing.T) {
	now := time.Now().UTC()
	doc := testDoc()
	doc.Prefixes[1].Enabled = now.Add(50 * time.Millisecond)
	h := New(Options{})
	defer h.Close()
	rendered := make(chan *version, 4)
	h.mu.Lock()
	h.onRender = func(v *version) { rendered <- v }
	h.mu.Unlock()
	if err := h.Set(doc); err != nil {
		t.Fatal(err)
	}
	first := <-rendered
	if first.doc.Prefixes[1].Status(first.at) != ipranges.Announced {
		t.Fatal("not announced at first")
	}
	select {
	case v := <-rendered:
		if v.doc.Prefixes[1].Status(v.at) != ipranges.Active || !bytes.Contains(v.json.body, []byte(`"active"`)) {
			t.Fatal("re-rendered, but not active")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no re-render at the transition")
	}
}

func TestLastModifiedFollowsBytes(t *testing.T) {
	h, c := newHandler(t, tAnn.Add(time.Hour), nil)
	a := do(h, "GET", "/ip-ranges.json")
	// The same document again (a reload of an unchanged file): nothing moves.
	c.Set(tAnn.Add(2 * time.Hour))
	if err := h.Set(testDoc()); err != nil {
		t.Fatal(err)
	}
	b := do(h, "GET", "/ip-ranges.json")
	if a.Header().Get("ETag") != b.Header().Get("ETag") || a.Header().Get("Last-Modified") != b.Header().Get("Last-Modified") {
		t.Errorf("unchanged document moved: %v → %v", a.Header(), b.Header())
	}
	// A hand edit without a changelog entry: the bytes change, so Last-Modified must too.
	doc := testDoc()
	doc.Prefixes[0].Facility = "elsewhere"
	c.Set(tAnn.Add(3 * time.Hour))
	if err := h.Set(doc); err != nil {
		t.Fatal(err)
	}
	d := do(h, "GET", "/ip-ranges.json")
	if d.Header().Get("Last-Modified") != tAnn.Add(3*time.Hour).Format(http.TimeFormat) {
		t.Errorf("hand edit: Last-Modified %q", d.Header().Get("Last-Modified"))
	}
	if w := do(h, "GET", "/ip-ranges.json", "If-Modified-Since", a.Header().Get("Last-Modified")); w.Code != 200 {
		t.Errorf("hand edit answered %d to If-Modified-Since the old date", w.Code)
	}
}

func TestSetNilAndClose(t *testing.T) {
	h, _ := newHandler(t, tAnn, nil)
	h.Set(nil)
	if w := do(h, "GET", "/ip-ranges.json"); w.Code != 503 {
		t.Errorf("after Set(nil): %d", w.Code)
	}
	h.Close()
	h.Close()
	if err := h.Set(testDoc()); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	armed := h.timer != nil
	h.mu.Unlock()
	if armed {
		t.Error("a timer was armed after Close")
	}
	if w := do(h, "GET", "/ip-ranges.json"); w.Code != 200 {
		t.Errorf("after Close: %d", w.Code)
	}
}

func TestMaxAge(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "public, max-age=300", -1: "public, max-age=0", time.Hour: "public, max-age=3600"} {
		h := New(Options{MaxAge: d})
		h.Set(testDoc())
		if got := do(h, "GET", "/ip-ranges.json").Header().Get("Cache-Control"); got != want {
			t.Errorf("MaxAge %v: %q", d, got)
		}
		h.Close()
	}
}

func TestLargeDocument(t *testing.T) {
	doc := bigDoc(10000)
	h := New(Options{Now: newClock(tAnn).Now})
	defer h.Close()
	start := time.Now()
	if err := h.Set(doc); err != nil {
		t.Fatal(err)
	}
	t.Logf("Set of %d prefixes: %v", len(doc.Prefixes), time.Since(start))
	if w := do(h, "GET", "/ip-ranges.txt"); strings.Count(w.Body.String(), "\n") != 10001 {
		t.Errorf(".txt has %d lines", strings.Count(w.Body.String(), "\n"))
	}
}

func bigDoc(n int) *ipranges.Document {
	doc := testDoc()
	doc.Prefixes = doc.Prefixes[:0]
	doc.Changelog = doc.Changelog[:0]
	for i := range n {
		cidr := fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)
		doc.Prefixes = append(doc.Prefixes, pfx(cidr, ipranges.Ingress, tAnn, tEnable, nil))
		doc.Changelog = append(doc.Changelog, ipranges.Change{SyncToken: doc.SyncToken, At: tAnn, Action: "announce", CIDR: cidr})
	}
	return doc
}

// discard is a reusable ResponseWriter, to count the handler's own allocations.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

func BenchmarkConditionalGET(b *testing.B) {
	h, _ := newHandler(b, tAnn, nil)
	etag := do(h, "GET", "/ip-ranges.json").Header().Get("ETag")
	r := httptest.NewRequest("GET", "/ip-ranges.json", nil)
	r.Header.Set("If-None-Match", etag)
	b.Run("recorder", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != 304 {
				b.Fatal(w.Code)
			}
		}
	})
	b.Run("handler-only", func(b *testing.B) {
		w := &discard{h: make(http.Header, 8)}
		b.ReportAllocs()
		for b.Loop() {
			clear(w.h)
			h.ServeHTTP(w, r)
		}
	})
}

func BenchmarkGET(b *testing.B) {
	h, _ := newHandler(b, tAnn, nil)
	r := httptest.NewRequest("GET", "/ip-ranges.json", nil)
	w := &discard{h: make(http.Header, 8)}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, r)
	}
}

// FuzzConditionalHeaders: any If-None-Match or query is answered without panicking, a list that
// starts with the current ETag always matches, one without it (or *) never does, and a refused query gets a one-line reason.
func FuzzConditionalHeaders(f *testing.F) {
	f.Add(`"abc", W/"def"`, "direction=ingress&status=active")
	f.Add(`*`, "status=%zz")
	f.Add(`W/`, "a=1&a=2")
	f.Add(`"unterminated`, "")
	f.Fuzz(func(t *testing.T, inm, query string) {
		etag := `"0123456789abcdef0123456789abcdef"`
		if !strings.Contains(inm, etag) && !strings.Contains(inm, "*") && etagMatches([]string{inm}, etag) {
			t.Fatalf("%q matched a tag it does not contain", inm)
		}
		if !etagMatches([]string{etag + ", " + inm}, etag) || !etagMatches([]string{inm, "W/" + etag}, etag) {
			t.Fatalf("the tag did not match next to %q", inm)
		}
		d, s, msg := parseFilter(query, true)
		if msg != "" && strings.ContainsAny(msg, "\r\n") {
			t.Fatalf("multi-line reason %q", msg)
		}
		if msg == "" && (d < 0 || d > 2 || s < 0 || s > 4) {
			t.Fatalf("indexes %d %d", d, s)
		}
	})
}
