package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fixedgate/fixedgate/ipranges"
	"github.com/fixedgate/fixedgate/ipranges/handler"
)

var (
	t0   = time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	tAnn = time.Date(2026, 11, 23, 18, 40, 0, 0, time.UTC)
	tEn  = tAnn.Add(ipranges.MinNotice)
	day  = 24 * time.Hour
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

func doc(token time.Time, ps ...ipranges.Prefix) *ipranges.Document {
	return &ipranges.Document{SchemaVersion: 1, SyncToken: fmt.Sprint(token.UnixMilli()), CreatedAt: t0, NoticeDays: 14,
		Prefixes: ps, Changelog: []ipranges.Change{}}
}

func base() []ipranges.Prefix {
	return []ipranges.Prefix{
		pfx("203.0.113.10/32", ipranges.Ingress, t0, t0, nil),
		pfx("198.51.100.20/32", ipranges.Egress, t0, t0, nil),
	}
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time)         { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// server serves the contract through the real handler on loopback, on a shared clock, and
// counts requests and 304s.
type server struct {
	*httptest.Server
	h            *handler.Handler
	clock        *clock
	requests     atomic.Int64
	notModified  atomic.Int64
	conditionals atomic.Int64
}

type countingWriter struct {
	http.ResponseWriter
	s *server
}

func (w countingWriter) WriteHeader(code int) {
	if code == http.StatusNotModified {
		w.s.notModified.Add(1)
	}
	w.ResponseWriter.WriteHeader(code)
}

func newServer(t *testing.T, now time.Time, d *ipranges.Document) *server {
	t.Helper()
	s := &server{clock: &clock{t: now}}
	s.h = handler.New(handler.Options{Now: s.clock.Now})
	t.Cleanup(s.h.Close)
	if err := s.h.Set(d); err != nil {
		t.Fatal(err)
	}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if r.Header.Get("If-None-Match") != "" {
			s.conditionals.Add(1)
		}
		s.h.ServeHTTP(countingWriter{w, s}, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) url() string { return s.URL + handler.PathJSON }

func (s *server) set(t *testing.T, d *ipranges.Document) {
	t.Helper()
	if err := s.h.Set(d); err != nil {
		t.Fatal(err)
	}
}

func TestFetch(t *testing.T) {
	s := newServer(t, tAnn, doc(tAnn, base()...))
	ctx := context.Background()
	r, err := Fetch(ctx, s.Client(), s.url(), "")
	if err != nil {
		t.Fatal(err)
	}
	if r.NotModified || r.Doc == nil || len(r.Doc.Prefixes) != 2 || r.ETag == "" || r.LastModified == "" || len(r.Raw) == 0 {
		t.Fatalf("%+v", r)
	}
	r2, err := Fetch(ctx, s.Client(), s.url(), r.ETag)
	if err != nil || !r2.NotModified || r2.Doc != nil || r2.ETag != r.ETag {
		t.Fatalf("conditional: %+v %v", r2, err)
	}
	_, err = Fetch(ctx, s.Client(), s.URL+"/ip-ranges.json?direction=up", "")
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 400 || !strings.Contains(err.Error(), "bad direction") {
		t.Errorf("400: %v", err)
	}
	notJSON := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>captive portal</html>")) }))
	defer notJSON.Close()
	if _, err := Fetch(ctx, nil, notJSON.URL, ""); err == nil || !strings.Contains(err.Error(), notJSON.URL) {
		t.Errorf("not JSON: %v", err)
	}
	// A 304 to an unconditional request is an error, not an empty document.
	odd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(304) }))
	defer odd.Close()
	if _, err := Fetch(ctx, nil, odd.URL, ""); err == nil {
		t.Error("unconditional 304 accepted")
	}
	// Deadlines come from ctx.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Fetch(cctx, nil, s.url(), ""); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestFetchSizeLimit(t *testing.T) {
	old := maxSize
	maxSize = 1000
	defer func() { maxSize = old }()
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", "5000")
		}
		w.Write([]byte(strings.Repeat(" ", 2000)))
		w.(http.Flusher).Flush()
		w.Write([]byte(strings.Repeat(" ", 3000)))
	}))
	defer big.Close()
	for _, q := range []string{"", "?chunked=1"} {
		if _, err := Fetch(context.Background(), nil, big.URL+q, ""); err == nil || !strings.Contains(err.Error(), "over the 1000-byte limit") {
			t.Errorf("%q: %v", q, err)
		}
	}
}

func TestOpen(t *testing.T) {
	s := newServer(t, tAnn, doc(tAnn, base()...))
	d, raw, err := Open(context.Background(), s.url())
	if err != nil || len(d.Prefixes) != 2 {
		t.Fatal(d, err)
	}
	path := filepath.Join(t.TempDir(), "c.json")
	os.WriteFile(path, raw, 0o644)
	d2, raw2, err := Open(context.Background(), path)
	if err != nil || len(d2.Prefixes) != 2 || string(raw2) != string(raw) {
		t.Fatal(err)
	}
	if _, _, err := Open(context.Background(), path+".missing"); err == nil {
		t.Error("missing file opened")
	}
	os.WriteFile(path, []byte(`{"schema_version": 1`), 0o644)
	if _, _, err := Open(context.Background(), path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("truncated: %v", err)
	}
}

func TestDiff(t *testing.T) {
	old := doc(tAnn,
		pfx("203.0.113.10/32", ipranges.Ingress, t0, t0, nil),                  // retire scheduled
		pfx("203.0.113.11/32", ipranges.Ingress, tAnn, tEn, nil),               // enabled by time
		pfx("198.51.100.20/32", ipranges.Egress, t0, t0, tp(tAnn.Add(day))),    // retired by time
		pfx("198.51.100.21/32", ipranges.Egress, t0, t0, tp(t0.Add(day))),      // removed
		pfx("198.51.100.23/32", ipranges.Egress, tAnn, tEn.Add(day), nil),      // postponed
		pfx("2001:db8::10/128", ipranges.Ingress, t0, t0, nil),                 // unchanged
		pfx("2001:db8::11/128", ipranges.Ingress, t0, t0, tp(tEn.Add(30*day))), // retirement withdrawn
	)
	now := tEn.Add(time.Hour)
	nw := doc(now,
		pfx("203.0.113.10/32", ipranges.Ingress, t0, t0, tp(now.Add(14*day))),
		pfx("203.0.113.11/32", ipranges.Ingress, tAnn, tEn, nil),
		pfx("198.51.100.20/32", ipranges.Egress, t0, t0, tp(tAnn.Add(day))),
		pfx("198.51.100.22/32", ipranges.Egress, now, now.Add(14*day), nil),
		pfx("198.51.100.23/32", ipranges.Egress, tAnn, tEn.Add(3*day), nil),
		pfx("2001:db8::10/128", ipranges.Ingress, t0, t0, nil),
		pfx("2001:db8::11/128", ipranges.Ingress, t0, t0, nil),
	)
	nw.Prefixes[5].Facility = "us-east-1" // same
	got := Diff(old, nw, now)
	var lines []string
	for _, c := range got {
		lines = append(lines, c.String())
	}
	want := []string{
		"retired egress 198.51.100.20/32: retired at 2026-11-24T18:40:00Z",
		"removed egress 198.51.100.21/32: no longer listed (was retired)",
		"added egress 198.51.100.22/32: announced: published 2026-12-07T19:40:00Z, enabled 2026-12-21T19:40:00Z",
		"changed egress 198.51.100.23/32: announced; enabled 2026-12-08T18:40:00Z → 2026-12-10T18:40:00Z",
		"retire-scheduled ingress 203.0.113.10/32: draining until 2026-12-21T19:40:00Z (retired then); retired set to 2026-12-21T19:40:00Z",
		"enabled ingress 203.0.113.11/32: active since 2026-12-07T18:40:00Z",
		"changed ingress 2001:db8::11/128: draining → active; retirement 2027-01-06T18:40:00Z withdrawn",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if got := Diff(nw, nw, now); len(got) != 0 {
		t.Errorf("identical: %v", got)
	}
	// The same document later: the announced prefix is enabled by time alone.
	later := Diff(old, old, tEn)
	if len(later) != 2 || later[1].Kind != Enabled || later[0].Kind != Retired {
		t.Errorf("by time: %v", later)
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		14 * day: "14d", 13*day + 23*time.Hour: "13d23h", time.Hour: "1h0m0s", -2 * time.Hour: "-2h0m0s",
		day + 90*time.Second: "1d1m30s", 0: "0s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("%v: %q, want %q", d, got, want)
		}
	}
}

func poll(t *testing.T, w *Watcher) *Report {
	t.Helper()
	r, err := w.Poll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestWatcherHonestOperator: an address announced with the full notice is reported as added,
// then enabled, and never as a violation; polls are conditional.
func TestWatcherHonestOperator(t *testing.T) {
	s := newServer(t, tAnn.Add(-time.Hour), doc(t0, base()...))
	w := NewWatcher(s.url(), WatcherOptions{Client: s.Client(), Now: s.clock.Now})
	r := poll(t, w)
	if !r.Baseline || len(r.Changes) != 0 || len(r.Violations) != 0 {
		t.Fatalf("baseline %+v", r)
	}
	s.clock.Set(tAnn)
	s.set(t, doc(tAnn, append(base(), pfx("203.0.113.11/32", ipranges.Ingress, tAnn, tEn, nil))...))
	s.clock.Set(tAnn.Add(5 * time.Minute))
	r = poll(t, w)
	if len(r.Changes) != 1 || r.Changes[0].Kind != Added || len(r.Violations) != 0 || r.NotModified {
		t.Fatalf("announce: %+v", r)
	}
	s.clock.Set(tEn.Add(-time.Minute))
	if r = poll(t, w); !r.NotModified || len(r.Changes) != 0 {
		t.Fatalf("unchanged: %+v", r)
	}
	s.clock.Set(tEn.Add(time.Minute))
	r = poll(t, w)
	if len(r.Changes) != 1 || r.Changes[0].Kind != Enabled || len(r.Violations) != 0 {
		t.Fatalf("enabled: %+v", r)
	}
	if s.conditionals.Load() != 3 || s.notModified.Load() != 1 {
		t.Errorf("%d conditional requests, %d 304s", s.conditionals.Load(), s.notModified.Load())
	}
}

// TestWatcherDocumentDates: a hand-edited document that enables an address an hour after
// publishing it is flagged at the first poll, naming the notice it had.
func TestWatcherDocumentDates(t *testing.T) {
	now := tAnn.Add(2 * time.Hour)
	s := newServer(t, now, doc(tAnn, append(base(), pfx("203.0.113.99/32", ipranges.Ingress, tAnn, tAnn.Add(time.Hour), nil))...))
	w := NewWatcher(s.url(), WatcherOptions{Client: s.Client(), Now: s.clock.Now})
	r := poll(t, w)
	if len(r.Violations) != 1 {
		t.Fatalf("%+v", r)
	}
	v := r.Violations[0]
	if v.Observed || v.CIDR.String() != "203.0.113.99/32" || v.Notice != time.Hour || v.Required != ipranges.MinNotice {
		t.Errorf("%+v", v)
	}
	want := "ingress 203.0.113.99/32 is active (enabled 2026-11-23T19:40:00Z) with 1h0m0s of notice by the document's own dates (published 2026-11-23T18:40:00Z); the contract promises 14d"
	if v.String() != want {
		t.Errorf("%s\nwant\n%s", v, want)
	}
	// Reported once.
	s.clock.Advance(time.Hour)
	if r = poll(t, w); len(r.Violations) != 0 {
		t.Errorf("reported again: %v", r.Violations)
	}
}

// TestWatcherObservations: dates that look right but contradict what the watcher saw.
func TestWatcherObservations(t *testing.T) {
	now := tAnn
	s := newServer(t, now, doc(t0, base()...))
	w := NewWatcher(s.url(), WatcherOptions{Client: s.Client(), Now: s.clock.Now})
	poll(t, w)
	firstPoll := now

	// Appears already active, with backdated dates that give 14 days on paper.
	s.clock.Advance(time.Hour)
	backdated := pfx("203.0.113.50/32", ipranges.Ingress, tAnn.Add(-15*day), tAnn.Add(-day), nil)
	// Appears announced with published backdated 20 days: enabled 13 days after the watcher
	// last saw the contract without it.
	short := pfx("198.51.100.60/32", ipranges.Egress, tAnn.Add(-20*day), tAnn.Add(13*day), nil)
	// Announced honestly, within the slack: enabled 14 days after published, seen 5 minutes late.
	honest := pfx("198.51.100.61/32", ipranges.Egress, tAnn.Add(55*time.Minute), tAnn.Add(55*time.Minute+14*day), nil)
	s.set(t, doc(tAnn.Add(time.Hour), append(base(), backdated, short, honest)...))
	r := poll(t, w)
	if len(r.Violations) != 1 || !r.Violations[0].Observed || r.Violations[0].CIDR != backdated.CIDR {
		t.Fatalf("backdated active: %+v", r.Violations)
	}
	v := r.Violations[0]
	if v.NotListedAt != firstPoll || v.Notice != -day {
		t.Errorf("%+v", v)
	}
	if !strings.Contains(v.String(), "was not in the contract at 2026-11-23T18:40:00Z, so it had at most -1d of notice") {
		t.Errorf("%s", v)
	}

	s.clock.Set(tAnn.Add(13*day + time.Minute))
	r = poll(t, w)
	if len(r.Violations) != 1 || r.Violations[0].CIDR != short.CIDR || r.Violations[0].Notice != 13*day {
		t.Fatalf("short notice: %+v", r.Violations)
	}
	if len(r.Changes) != 1 || r.Changes[0].Kind != Enabled {
		t.Errorf("changes %v", r.Changes)
	}
	s.clock.Set(tAnn.Add(15 * day))
	r = poll(t, w)
	if len(r.Violations) != 0 || len(r.Changes) != 1 || r.Changes[0].CIDR != honest.CIDR {
		t.Fatalf("honest one: %+v", r)
	}
}

// TestWatcherBaselineAccepted: what is present at the first poll is not judged by observation.
func TestWatcherBaselineAccepted(t *testing.T) {
	ps := append(base(), pfx("203.0.113.11/32", ipranges.Ingress, tAnn, tEn, nil))
	s := newServer(t, tEn.Add(-time.Hour), doc(tAnn, ps...))
	w := NewWatcher(s.url(), WatcherOptions{Client: s.Client(), Now: s.clock.Now})
	poll(t, w)
	s.clock.Set(tEn.Add(time.Hour))
	if r := poll(t, w); len(r.Violations) != 0 || len(r.Changes) != 1 {
		t.Fatalf("%+v", r)
	}
}

// TestWatcherErrorsKeepState: a failed poll records nothing; the next good one compares with
// the last good document.
func TestWatcherErrorsKeepState(t *testing.T) {
	s := newServer(t, tAnn, doc(t0, base()...))
	var fail atomic.Bool
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
			return
		}
		s.Config.Handler.ServeHTTP(w, r)
	}))
	defer front.Close()
	w := NewWatcher(front.URL+handler.PathJSON, WatcherOptions{Now: s.clock.Now})
	poll(t, w)
	fail.Store(true)
	s.clock.Advance(time.Hour)
	s.set(t, doc(tAnn.Add(time.Hour), append(base(), pfx("203.0.113.11/32", ipranges.Ingress, tAnn.Add(time.Hour), tEn.Add(time.Hour), nil))...))
	if _, err := w.Poll(context.Background()); err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "maintenance") {
		t.Fatalf("error: %v", err)
	}
	fail.Store(false)
	r := poll(t, w)
	if len(r.Changes) != 1 || r.Changes[0].Kind != Added || len(r.Violations) != 0 {
		t.Fatalf("%+v", r)
	}
}

func TestWatcherRun(t *testing.T) {
	s := newServer(t, tAnn, doc(t0, base()...))
	w := NewWatcher(s.url(), WatcherOptions{Client: s.Client(), Now: s.clock.Now})
	ticks := make(chan time.Time)
	stop := errors.New("stop")
	var reports []*Report
	done := make(chan error, 1)
	go func() {
		done <- w.Run(context.Background(), ticks, func(r *Report, err error) error {
			if err != nil {
				return err
			}
			reports = append(reports, r)
			if len(reports) == 3 {
				return stop
			}
			return nil
		})
	}()
	ticks <- time.Time{}
	ticks <- time.Time{}
	if err := <-done; err != stop {
		t.Fatal(err)
	}
	if len(reports) != 3 || !reports[0].Baseline || !reports[2].NotModified {
		t.Errorf("%d reports", len(reports))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Run(ctx, ticks, func(*Report, error) error { return stop }); err != nil {
		t.Errorf("cancelled run: %v", err)
	}
}
