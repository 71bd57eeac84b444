package resolver

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/fixedgate/fixedgate/proxy/resolver/dnstest"
)

// --- helpers ---------------------------------------------------------------------------------

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func startDNS(t *testing.T, ip string) *dnstest.Server {
	t.Helper()
	s, err := dnstest.Start(ip)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func testConfig(servers ...string) Config {
	return Config{Servers: servers, MinTTL: time.Second, MaxTTL: time.Minute, StaleIfError: 30 * time.Second,
		CacheSize: 100, Timeout: 2 * time.Second}
}

// newManual returns a resolver on a fake clock whose background work runs only in r.step().
func newManual(t *testing.T, cfg Config, opts Options) (*Resolver, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	opts.Now = clk.Now
	r, err := newResolver(cfg, opts, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, clk
}

func newLive(t *testing.T, cfg Config, opts Options) *Resolver {
	t.Helper()
	r, err := NewWithOptions(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func mustLookup(t *testing.T, r *Resolver, host string) []netip.Addr {
	t.Helper()
	addrs, err := r.LookupNetIP(context.Background(), host)
	if err != nil {
		t.Fatalf("LookupNetIP(%q): %v", host, err)
	}
	return addrs
}

// waitFor polls cond every 10ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		<-tick.C
	}
}

func addrRange(prefix string, n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range n {
		out[i] = netip.MustParseAddr(fmt.Sprintf("%s%d", prefix, i+1))
	}
	return out
}

// changes records OnChange calls.
type changes struct {
	mu    sync.Mutex
	calls []change
}

type change struct {
	host  string
	fleet []netip.Addr
}

func (c *changes) hook(host string, fleet []netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, change{host, fleet})
}

func (c *changes) last() (change, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.calls) == 0 {
		return change{}, 0
	}
	return c.calls[len(c.calls)-1], len(c.calls)
}

// --- API and configuration -------------------------------------------------------------------

func TestLookupNetIP(t *testing.T) {
	srv, err := dnstest.Start("127.0.0.53")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.Set("dual.test", 30, netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("192.0.2.1"))
	srv.SetRcode("broken.test", dns.RcodeServerFailure)
	cfg := Defaults()
	cfg.Servers = []string{srv.Addr}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()

	got, err := r.LookupNetIP(ctx, "dual.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != netip.MustParseAddr("192.0.2.1") || got[1] != netip.MustParseAddr("2001:db8::1") {
		t.Errorf("dual.test = %v, want IPv4 first then IPv6", got)
	}
	if _, err := r.LookupNetIP(ctx, "missing.test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing.test: %v, want ErrNotFound", err)
	}
	if _, err := r.LookupNetIP(ctx, "broken.test"); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("SERVFAIL: %v, want a resolver error that is not ErrNotFound", err)
	}
	if srv.Queries() == 0 {
		t.Error("the configured server was never asked")
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.Servers = []string{"dns.example"} }, `servers[0]: "dns.example" is not an IP or IP:port`},
		{func(c *Config) { c.MinTTL = c.MaxTTL * 2 }, "min_ttl:"},
		{func(c *Config) { c.MinTTL = 0 }, "min_ttl: must be positive"},
		{func(c *Config) { c.StaleIfError = -time.Second }, "stale_if_error: must not be negative"},
		{func(c *Config) { c.CacheSize = 0 }, "cache_size: 0"},
		{func(c *Config) { c.Timeout = 0 }, "timeout: must be positive"},
	} {
		c := Defaults()
		tc.mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate() = %v, want %q", err, tc.want)
		}
	}
	c := Defaults()
	c.Servers = []string{"127.0.0.53", "[::1]:5353"}
	if err := c.Validate(); err != nil {
		t.Errorf("valid servers refused: %v", err)
	}
	c.StaleIfError = 0
	if err := c.Validate(); err != nil {
		t.Errorf("stale_if_error 0 refused: %v", err)
	}
}

func TestResolvConf(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "resolv.conf")
	os.WriteFile(good, []byte("search example.test\nnameserver 127.0.0.53\nnameserver ::1\n"), 0o644)
	empty := filepath.Join(dir, "empty.conf")
	os.WriteFile(empty, []byte("search example.test\n"), 0o644)
	defer func(old string) { resolvConf = old }(resolvConf)
	for _, tc := range []struct {
		file     string
		want     []string
		fallback bool
	}{
		{good, []string{"127.0.0.53:53", "[::1]:53"}, false},
		{empty, []string{"127.0.0.1:53"}, true},
		{filepath.Join(dir, "missing.conf"), []string{"127.0.0.1:53"}, true},
	} {
		resolvConf = tc.file
		got, note := servers(nil)
		if !slices.Equal(got, tc.want) || (note != "") != tc.fallback {
			t.Errorf("%s: servers %v note %q, want %v fallback %v", filepath.Base(tc.file), got, note, tc.want, tc.fallback)
		}
	}
	if got, note := servers([]string{"127.0.0.9", "[::1]:5353"}); !slices.Equal(got, []string{"127.0.0.9:53", "[::1]:5353"}) || note != "" {
		t.Errorf("configured servers = %v %q", got, note)
	}
}

func TestOrderAndNames(t *testing.T) {
	srv := startDNS(t, "127.0.53.1")
	srv.Set("mixed.test", 60,
		netip.MustParseAddr("2001:db8::2"), netip.MustParseAddr("192.0.2.9"), netip.MustParseAddr("2001:db8::1"),
		netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.1"))
	r, _ := newManual(t, testConfig(srv.Addr), Options{})
	want := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.9"), netip.MustParseAddr("192.0.2.10"),
		netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")}
	for _, host := range []string{"mixed.test", "MIXED.Test", "mixed.test.", "Mixed.TEST."} {
		if got := mustLookup(t, r, host); !slices.Equal(got, want) {
			t.Errorf("%s = %v, want %v", host, got, want)
		}
	}
	if n := srv.QueriesFor("mixed.test"); n != 2 {
		t.Errorf("%d queries for one name in four spellings, want 2 (A and AAAA once)", n)
	}
	if got := mustLookup(t, r, "192.0.2.77"); len(got) != 1 || got[0] != netip.MustParseAddr("192.0.2.77") {
		t.Errorf("IP literal = %v", got)
	}
	if _, err := r.LookupNetIP(context.Background(), "bad..name"); err == nil {
		t.Error("an invalid name resolved")
	}
}

// --- answers ---------------------------------------------------------------------------------

func TestLargeAnswers(t *testing.T) {
	v4, v6 := addrRange("127.0.1.", 100), addrRange("2001:db8::", 100)
	for _, tc := range []struct {
		name    string
		addrs   []netip.Addr
		maxUDP  int
		wantTCP bool
	}{
		{"40 A fit in EDNS0 1232", v4[:40], 0, false},
		{"40 AAAA fit in EDNS0 1232", v6[:40], 0, false},
		{"40 A over a 512-byte UDP cap", v4[:40], 512, true},
		{"100 A exceed 1232 bytes", v4, 0, true},
		{"100 A and 100 AAAA", append(slices.Clone(v4), v6...), 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startDNS(t, "127.0.53.2")
			srv.SetMaxUDP(tc.maxUDP)
			srv.Set("fleet.test", 60, tc.addrs...)
			r, _ := newManual(t, testConfig(srv.Addr), Options{})
			got := mustLookup(t, r, "fleet.test")
			want := slices.SortedFunc(slices.Values(tc.addrs), netip.Addr.Compare)
			if !slices.Equal(got, want) {
				t.Fatalf("got %d addresses, want all %d", len(got), len(want))
			}
			if tcp := srv.TCPQueries() > 0; tcp != tc.wantTCP {
				t.Errorf("server saw TCP queries: %v, want %v", tcp, tc.wantTCP)
			}
			if st := r.Stats(); (st.TCP > 0) != tc.wantTCP {
				t.Errorf("resolver counted %d truncated answers", st.TCP)
			}
		})
	}
}

func TestExtractFollowsCNAME(t *testing.T) {
	m := new(dns.Msg)
	m.SetQuestion("www.test.", dns.TypeA)
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	m.Answer = []dns.RR{
		rr("www.test. 300 IN CNAME lb.test."),
		rr("lb.test. 20 IN CNAME pool.test."),
		rr("pool.test. 60 IN A 192.0.2.1"),
		rr("other.test. 60 IN A 192.0.2.99"),
	}
	got := extract(m, "www.test.", dns.TypeA)
	if len(got) != 1 || got[0].addr != netip.MustParseAddr("192.0.2.1") || got[0].ttl != 20 {
		t.Errorf("extract = %+v, want 192.0.2.1 with the chain's smallest TTL 20", got)
	}
}

func TestTTLClamp(t *testing.T) {
	for _, tc := range []struct {
		ttl  uint32
		want time.Duration
	}{
		{0, time.Second}, // below min_ttl
		{1, time.Second}, // at min_ttl
		{30, 30 * time.Second},
		{86400, time.Minute}, // above max_ttl
	} {
		t.Run(fmt.Sprint(tc.ttl), func(t *testing.T) {
			srv := startDNS(t, "127.0.53.3")
			srv.Set("ttl.test", tc.ttl, netip.MustParseAddr("192.0.2.1"))
			r, clk := newManual(t, testConfig(srv.Addr), Options{})
			mustLookup(t, r, "ttl.test")
			clk.Advance(tc.want - 10*time.Millisecond)
			mustLookup(t, r, "ttl.test")
			if n := srv.QueriesFor("ttl.test"); n != 2 {
				t.Fatalf("%d queries before the clamped TTL %s ran out, want 2", n, tc.want)
			}
			clk.Advance(20 * time.Millisecond)
			mustLookup(t, r, "ttl.test")
			if n := srv.QueriesFor("ttl.test"); n != 4 {
				t.Fatalf("%d queries after the clamped TTL %s ran out, want 4", n, tc.want)
			}
		})
	}
}

// --- the fleet -------------------------------------------------------------------------------

func TestRotatingSubsetsUnion(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ttl    uint32
		minTTL time.Duration
		every  time.Duration // the sampling cadence for partial answers
	}{
		{"TTL 60s, min_ttl 1s: sampled every min_ttl", 60, time.Second, time.Second},
		{"TTL 1s = min_ttl: sampled every quarter TTL", 1, time.Second, 250 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startDNS(t, "127.0.53.4")
			fleet := addrRange("127.0.1.", 40)
			srv.SetRotating("api.test", tc.ttl, 10, fleet...)
			var ch changes
			cfg := testConfig(srv.Addr)
			cfg.MinTTL = tc.minTTL
			r, clk := newManual(t, cfg, Options{OnChange: ch.hook})
			if got := mustLookup(t, r, "api.test"); len(got) != 10 {
				t.Fatalf("first answer gave %d addresses, want 10", len(got))
			}
			refreshes := 0
			for len(mustLookup(t, r, "api.test")) < 30 {
				if refreshes == 5 {
					t.Fatalf("fleet has %d of 40 after %d refreshes", len(mustLookup(t, r, "api.test")), refreshes)
				}
				clk.Advance(tc.every)
				r.step()
				refreshes++
			}
			t.Logf("fleet >= 30 of 40 after %d refreshes", refreshes)
			for range 10 { // the union stays whole while the server keeps rotating
				clk.Advance(tc.every)
				r.step()
				if got := mustLookup(t, r, "api.test"); !slices.Equal(got, fleet) {
					t.Fatalf("fleet = %d addresses, want all 40", len(got))
				}
			}
			if c, _ := ch.last(); len(c.fleet) != 40 || c.host != "api.test" {
				t.Errorf("last OnChange = %s with %d addresses, want api.test with 40", c.host, len(c.fleet))
			}
			if st := r.Stats(); st.Misses != 1 {
				t.Errorf("%d lookups waited for DNS, want 1", st.Misses)
			}
		})
	}
}

func TestRotatingSubsetsBackground(t *testing.T) {
	srv := startDNS(t, "127.0.53.5")
	srv.SetRotating("api.test", 1, 10, addrRange("127.0.1.", 40)...)
	cfg := testConfig(srv.Addr)
	cfg.MinTTL, cfg.MaxTTL = 100*time.Millisecond, 5*time.Second
	r := newLive(t, cfg, Options{})
	mustLookup(t, r, "api.test")
	waitFor(t, 5*time.Second, "fleet never reached 30 of 40", func() bool {
		return len(mustLookup(t, r, "api.test")) >= 30
	})
	if n := srv.QueriesFor("api.test"); n > 60 {
		t.Errorf("%d queries to gather the fleet, want a bounded few", n)
	}
	if st := r.Stats(); st.Misses != 1 {
		t.Errorf("%d lookups waited for DNS, want only the first", st.Misses)
	}
}

func TestTTLChange(t *testing.T) {
	srv := startDNS(t, "127.0.53.6")
	a := netip.MustParseAddr("192.0.2.1")
	srv.Set("api.test", 60, a)
	r, clk := newManual(t, testConfig(srv.Addr), Options{})
	mustLookup(t, r, "api.test")
	queries := func() int64 { return srv.QueriesFor("api.test") }
	for range probeAnswers { // the first refreshes come at min_ttl
		clk.Advance(time.Second)
		r.step()
	}
	if n := queries(); n != 2+2*probeAnswers {
		t.Fatalf("%d queries after the first answers, want %d", n, 2+2*probeAnswers)
	}

	clk.Advance(44 * time.Second) // the next refresh is due at 75% of 60s
	r.step()
	if n := queries(); n != 6 {
		t.Fatalf("%d queries before 75%% of the TTL, want 6", n)
	}
	srv.Set("api.test", 4, a)
	clk.Advance(time.Second)
	mustLookup(t, r, "api.test")
	r.step()
	if n := queries(); n != 8 {
		t.Fatalf("%d queries at 75%% of the TTL, want 8", n)
	}
	clk.Advance(3 * time.Second) // 75% of the new 4s TTL
	mustLookup(t, r, "api.test")
	r.step()
	if n := queries(); n != 10 {
		t.Fatalf("%d queries 3s after the TTL dropped to 4s, want 10 (refreshed sooner)", n)
	}
	if st := r.Stats(); st.Misses != 1 {
		t.Errorf("%d lookups waited for DNS, want 1", st.Misses)
	}
}

func TestFleetShrink(t *testing.T) {
	srv := startDNS(t, "127.0.53.7")
	a, b, c := netip.MustParseAddr("127.0.1.1"), netip.MustParseAddr("127.0.1.2"), netip.MustParseAddr("127.0.1.3")
	srv.Set("api.test", 1, a, b, c)
	cfg := testConfig(srv.Addr)
	cfg.MinTTL, cfg.MaxTTL = 100*time.Millisecond, 5*time.Second
	var ch changes
	r := newLive(t, cfg, Options{OnChange: ch.hook})
	if got := mustLookup(t, r, "api.test"); len(got) != 3 {
		t.Fatalf("got %v", got)
	}
	waitFor(t, 2*time.Second, "no OnChange for the first fill", func() bool { _, n := ch.last(); return n == 1 })
	srv.Set("api.test", 1, a, b)
	waitFor(t, 5*time.Second, "removed address never left the fleet", func() bool {
		last, _ := ch.last()
		return slices.Equal(last.fleet, []netip.Addr{a, b})
	})
	if got := mustLookup(t, r, "api.test"); !slices.Equal(got, []netip.Addr{a, b}) {
		t.Errorf("fleet = %v, want %v", got, []netip.Addr{a, b})
	}
	if st := r.Stats(); st.Misses != 1 {
		t.Errorf("%d lookups waited for DNS, want 1", st.Misses)
	}
}

func TestAddressLeavesAfterItsOwnTTL(t *testing.T) {
	srv := startDNS(t, "127.0.53.21")
	a, b := netip.MustParseAddr("127.0.1.1"), netip.MustParseAddr("127.0.1.2")
	srv.SetRotating("api.test", 10, 1, a, b)
	var ch changes
	r, clk := newManual(t, testConfig(srv.Addr), Options{OnChange: ch.hook})
	mustLookup(t, r, "api.test") // a, expires at 10s
	clk.Advance(time.Second)
	r.step() // b, expires at 11s
	srv.SetRotating("api.test", 10, 1, b)
	clk.Advance(8500 * time.Millisecond)
	if got := mustLookup(t, r, "api.test"); !slices.Equal(got, []netip.Addr{a, b}) {
		t.Fatalf("fleet at 9.5s = %v, want both", got)
	}
	queries := srv.QueriesFor("api.test")
	clk.Advance(time.Second) // 10.5s: a's TTL is over, b's is not; no refresh has run
	if got := mustLookup(t, r, "api.test"); !slices.Equal(got, []netip.Addr{b}) {
		t.Fatalf("fleet at 10.5s = %v, want only %v", got, b)
	}
	if n := srv.QueriesFor("api.test"); n != queries {
		t.Errorf("dropping an expired address sent %d queries", n-queries)
	}
	r.step()
	if last, _ := ch.last(); !slices.Equal(last.fleet, []netip.Addr{b}) {
		t.Errorf("last OnChange fleet = %v, want %v", last.fleet, []netip.Addr{b})
	}
}

// --- failures --------------------------------------------------------------------------------

func TestStaleIfError(t *testing.T) {
	a := netip.MustParseAddr("192.0.2.1")
	for _, tc := range []struct {
		name  string
		brk   func(*dnstest.Server)
		check func(error) bool
	}{
		{"SERVFAIL", func(s *dnstest.Server) { s.SetRcode("api.test", dns.RcodeServerFailure) },
			func(err error) bool { return errors.Is(err, errServFail) }},
		{"REFUSED", func(s *dnstest.Server) { s.SetRcode("api.test", dns.RcodeRefused) },
			func(err error) bool { return errors.Is(err, errRefused) }},
		{"no answer", func(s *dnstest.Server) { s.SetDrop("api.test", true) }, isTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startDNS(t, "127.0.53.8")
			srv.Set("api.test", 10, a)
			cfg := testConfig(srv.Addr)
			cfg.Timeout = 300 * time.Millisecond
			r, clk := newManual(t, cfg, Options{})
			mustLookup(t, r, "api.test")
			tc.brk(srv)

			clk.Advance(7500 * time.Millisecond) // refresh due; it fails
			r.step()
			before := srv.QueriesFor("api.test")
			if before < 4 {
				t.Fatalf("refresh never asked: %d queries", before)
			}
			clk.Advance(5 * time.Second) // past the 10s TTL
			if got := mustLookup(t, r, "api.test"); !slices.Equal(got, []netip.Addr{a}) {
				t.Fatalf("stale fleet = %v", got)
			}
			r.step() // retries with back-off; still failing
			if st := r.Stats(); st.Stale == 0 {
				t.Error("stale answers not counted")
			}
			clk.Advance(28 * time.Second) // 10s TTL + 30s stale_if_error has passed
			r.step()
			_, err := r.LookupNetIP(context.Background(), "api.test")
			if err == nil || errors.Is(err, ErrNotFound) || !tc.check(err) || !strings.HasPrefix(err.Error(), "resolve api.test: ") {
				t.Fatalf("after stale_if_error: %v", err)
			}

			srv.Set("api.test", 10, a) // DNS recovers: the next retry (back-off <= 30s) restores the fleet
			clk.Advance(30 * time.Second)
			r.step()
			if got := mustLookup(t, r, "api.test"); !slices.Equal(got, []netip.Addr{a}) {
				t.Fatalf("after recovery = %v", got)
			}
		})
	}
}

func TestNegativeCaching(t *testing.T) {
	for _, tc := range []struct {
		name   string
		prog   func(*dnstest.Server)
		negTTL uint32
		want   time.Duration
	}{
		{"NXDOMAIN", func(*dnstest.Server) {}, 3, 3 * time.Second},
		{"NODATA", func(s *dnstest.Server) { s.SetRcode("gone.test", dns.RcodeSuccess) }, 3, 3 * time.Second},
		{"SOA below min_ttl", func(*dnstest.Server) {}, 0, time.Second},
		{"SOA above max_ttl", func(*dnstest.Server) {}, 3600, time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startDNS(t, "127.0.53.9")
			srv.SetNegativeTTL(tc.negTTL)
			tc.prog(srv)
			r, clk := newManual(t, testConfig(srv.Addr), Options{})
			for i, wantQ := range []int64{2, 2} {
				if _, err := r.LookupNetIP(context.Background(), "gone.test"); !errors.Is(err, ErrNotFound) {
					t.Fatalf("lookup %d: %v, want ErrNotFound", i, err)
				}
				if n := srv.QueriesFor("gone.test"); n != wantQ {
					t.Fatalf("lookup %d: %d queries, want %d", i, n, wantQ)
				}
			}
			clk.Advance(tc.want - 10*time.Millisecond)
			r.LookupNetIP(context.Background(), "gone.test")
			if n := srv.QueriesFor("gone.test"); n != 2 {
				t.Fatalf("asked again before the negative TTL %s ran out", tc.want)
			}
			clk.Advance(20 * time.Millisecond)
			r.LookupNetIP(context.Background(), "gone.test")
			if n := srv.QueriesFor("gone.test"); n != 4 {
				t.Fatalf("%d queries after the negative TTL %s ran out, want 4", n, tc.want)
			}
			if st := r.Stats(); st.Negative < 2 {
				t.Errorf("negative answers counted %d", st.Negative)
			}
		})
	}
}

func TestNXDomainDropsFleet(t *testing.T) {
	srv := startDNS(t, "127.0.53.10")
	srv.Set("api.test", 10, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"))
	var ch changes
	r, clk := newManual(t, testConfig(srv.Addr), Options{OnChange: ch.hook})
	mustLookup(t, r, "api.test")
	r.step()
	srv.SetRcode("api.test", dns.RcodeNameError)
	clk.Advance(7500 * time.Millisecond)
	r.step()
	if _, err := r.LookupNetIP(context.Background(), "api.test"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after NXDOMAIN: %v, want ErrNotFound (no stale fleet)", err)
	}
	if last, n := ch.last(); n != 2 || last.fleet != nil {
		t.Errorf("OnChange calls %d, last fleet %v; want the fill then an empty fleet", n, last.fleet)
	}
}

func TestServerFailover(t *testing.T) {
	for _, tc := range []struct {
		name string
		brk  func(*dnstest.Server)
	}{
		{"SERVFAIL", func(s *dnstest.Server) { s.SetRcode("api.test", dns.RcodeServerFailure) }},
		{"REFUSED", func(s *dnstest.Server) { s.SetRcode("api.test", dns.RcodeRefused) }},
		{"timeout", func(s *dnstest.Server) { s.SetDrop("api.test", true) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad, good := startDNS(t, "127.0.53.11"), startDNS(t, "127.0.53.12")
			tc.brk(bad)
			good.Set("api.test", 60, netip.MustParseAddr("192.0.2.1"))
			cfg := testConfig(bad.Addr, good.Addr)
			cfg.Timeout = time.Second
			r, _ := newManual(t, cfg, Options{})
			if got := mustLookup(t, r, "api.test"); len(got) != 1 {
				t.Fatalf("got %v", got)
			}
			if bad.QueriesFor("api.test") != 2 || good.QueriesFor("api.test") != 2 {
				t.Errorf("queries: first server %d, second %d; want 2 each", bad.QueriesFor("api.test"), good.QueriesFor("api.test"))
			}
		})
	}
}

func TestTimeoutIsDetectable(t *testing.T) {
	srv := startDNS(t, "127.0.53.13")
	srv.SetDrop("slow.test", true)
	cfg := testConfig(srv.Addr)
	cfg.Timeout = 200 * time.Millisecond
	r, _ := newManual(t, cfg, Options{})
	_, err := r.LookupNetIP(context.Background(), "slow.test")
	if err == nil || !isTimeout(err) || errors.Is(err, ErrNotFound) {
		t.Fatalf("dropped queries: %v, want a timeout", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error spans lines: %q", err)
	}

	srv.SetDrop("slower.test", true)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := r.LookupNetIP(ctx, "slower.test"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("caller deadline: %v, want context.DeadlineExceeded", err)
	}
}

// --- concurrency, cache, lifecycle -----------------------------------------------------------

func TestSingleflight(t *testing.T) {
	srv := startDNS(t, "127.0.53.14")
	srv.Set("api.test", 60, netip.MustParseAddr("192.0.2.1"))
	srv.SetDelay("api.test", 50*time.Millisecond) // keep the first lookup in flight
	r, _ := newManual(t, testConfig(srv.Addr), Options{})
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			<-start
			if got, err := r.LookupNetIP(context.Background(), "api.test"); err != nil || len(got) != 1 {
				errs <- fmt.Errorf("got %v, %v", got, err)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := srv.QueriesFor("api.test"); n != 2 {
		t.Errorf("50 concurrent cold lookups sent %d queries, want 2 (one A, one AAAA)", n)
	}
}

func TestWarmLookupsSendNoQueries(t *testing.T) {
	srv := startDNS(t, "127.0.53.15")
	srv.Set("api.test", 60, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1"))
	r := newLive(t, testConfig(srv.Addr), Options{})
	mustLookup(t, r, "api.test")
	before := srv.Queries()
	for range 1000 {
		mustLookup(t, r, "api.test")
	}
	if n := srv.Queries() - before; n != 0 {
		t.Errorf("1000 warm lookups sent %d queries", n)
	}
	if st := r.Stats(); st.Hits < 1000 {
		t.Errorf("hits = %d, want >= 1000", st.Hits)
	}
	ctx := context.Background()
	if allocs := testing.AllocsPerRun(1000, func() { r.LookupNetIP(ctx, "api.test") }); allocs != 0 {
		t.Errorf("warm lookup allocates %.1f times", allocs)
	}
}

// fiveNames serves a.test … e.test from a DNS server on ip and looks them all up, in that order,
// through a manual resolver with cache_size cacheSize.
func fiveNames(t *testing.T, ip string, cacheSize int) (*dnstest.Server, *Resolver, Config, *prometheus.Registry, []string) {
	t.Helper()
	srv := startDNS(t, ip)
	names := []string{"a.test", "b.test", "c.test", "d.test", "e.test"}
	for i, n := range names {
		srv.Set(n, 60, netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}))
	}
	cfg := testConfig(srv.Addr)
	cfg.CacheSize = cacheSize
	reg := prometheus.NewRegistry()
	r, _ := newManual(t, cfg, Options{Registerer: reg})
	for _, n := range names {
		mustLookup(t, r, n)
	}
	r.step()
	return srv, r, cfg, reg, names
}

func TestCacheBound(t *testing.T) {
	srv, r, _, reg, _ := fiveNames(t, "127.0.53.16", 3)
	if st := r.Stats(); st.Names != 3 {
		t.Errorf("%d names cached, want cache_size 3", st.Names)
	}
	if got := gaugeNames(t, reg); !slices.Equal(got, []string{"c.test", "d.test", "e.test"}) {
		t.Errorf("fleet_size series for %v, want the 3 cached names", got)
	}
	mustLookup(t, r, "a.test") // evicted: asked again
	if n := srv.QueriesFor("a.test"); n != 4 {
		t.Errorf("evicted name: %d queries, want 4", n)
	}
}

func TestIdleNamesEvicted(t *testing.T) {
	srv := startDNS(t, "127.0.53.17")
	srv.Set("used.test", 60, netip.MustParseAddr("192.0.2.1"))
	srv.Set("idle.test", 60, netip.MustParseAddr("192.0.2.2"))
	r, clk := newManual(t, testConfig(srv.Addr), Options{})
	mustLookup(t, r, "used.test")
	mustLookup(t, r, "idle.test")
	for range 12 { // 12 × 10s = 2 × max_ttl: idle.test falls out of use; used.test stays warm
		clk.Advance(10 * time.Second)
		mustLookup(t, r, "used.test")
		r.step()
	}
	if st := r.Stats(); st.Names != 1 {
		t.Errorf("%d names cached, want 1", st.Names)
	}
	idleQueries := srv.QueriesFor("idle.test")
	for range 6 {
		clk.Advance(10 * time.Second)
		mustLookup(t, r, "used.test")
		r.step()
	}
	if n := srv.QueriesFor("idle.test"); n != idleQueries {
		t.Errorf("evicted name still refreshed: %d queries, then %d", idleQueries, n)
	}
	if st := r.Stats(); st.Misses != 2 {
		t.Errorf("%d lookups waited, want 2", st.Misses)
	}
}

func TestMetrics(t *testing.T) {
	srv := startDNS(t, "127.0.53.18")
	srv.Set("api.test", 60, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"))
	reg := prometheus.NewRegistry()
	r, _ := newManual(t, testConfig(srv.Addr), Options{Registerer: reg})
	mustLookup(t, r, "api.test")
	mustLookup(t, r, "api.test")
	r.LookupNetIP(context.Background(), "gone.test")
	r.LookupNetIP(context.Background(), "gone.test")
	r.step()
	want := map[string]float64{
		`fixedgate_dns_queries_total{result="ok",type="A"}`:          1,
		`fixedgate_dns_queries_total{result="ok",type="AAAA"}`:       1,
		`fixedgate_dns_queries_total{result="nxdomain",type="A"}`:    1,
		`fixedgate_dns_queries_total{result="nxdomain",type="AAAA"}`: 1,
		`fixedgate_dns_cache_total{result="hit"}`:                    1,
		`fixedgate_dns_cache_total{result="miss"}`:                   2,
		`fixedgate_dns_cache_total{result="negative"}`:               1,
		`fixedgate_dns_fleet_size{name="api.test"}`:                  2,
	}
	got := gather(t, reg)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if _, err := NewWithOptions(testConfig(srv.Addr), Options{Registerer: reg}); err == nil {
		t.Error("a second resolver on the same registry was accepted")
	}
}

func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			out[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	return out
}

func gaugeNames(t *testing.T, reg *prometheus.Registry) []string {
	var names []string
	for k := range gather(t, reg) {
		if n, ok := strings.CutPrefix(k, `fixedgate_dns_fleet_size{name="`); ok {
			names = append(names, strings.TrimSuffix(n, `"}`))
		}
	}
	slices.Sort(names)
	return names
}

func TestCloseStopsGoroutines(t *testing.T) {
	srv := startDNS(t, "127.0.53.19")
	srv.Set("api.test", 1, netip.MustParseAddr("192.0.2.1"))
	srv.SetDrop("slow.test", true)
	base := runtime.NumGoroutine()
	cfg := testConfig(srv.Addr)
	cfg.MinTTL, cfg.Timeout = 100*time.Millisecond, 5*time.Second
	r, err := NewWithOptions(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustLookup(t, r, "api.test")
	slow := make(chan error, 1)
	go func() { _, err := r.LookupNetIP(context.Background(), "slow.test"); slow <- err }()
	waitFor(t, 2*time.Second, "slow.test never asked", func() bool { return srv.QueriesFor("slow.test") >= 2 })
	waitFor(t, 3*time.Second, "no background refresh", func() bool { return r.Stats().Refreshes > 0 })

	start := time.Now()
	r.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %s with a lookup in flight", d)
	}
	if err := <-slow; err == nil {
		t.Error("in-flight lookup succeeded after Close")
	}
	waitFor(t, 2*time.Second, fmt.Sprintf("goroutines after Close: %d, before New: %d", runtime.NumGoroutine(), base),
		func() bool { return runtime.NumGoroutine() <= base })

	if got := mustLookup(t, r, "api.test"); len(got) != 1 { // cached names are still served
		t.Errorf("after Close: %v", got)
	}
	if _, err := r.LookupNetIP(context.Background(), "new.test"); !errors.Is(err, errClosed) {
		t.Errorf("cold lookup after Close: %v", err)
	}
	r.Close()
}

func BenchmarkLookupWarm(b *testing.B) {
	srv, err := dnstest.Start("127.0.53.20")
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	srv.Set("api.test", 300, addrRange("127.0.1.", 40)...)
	r, err := New(testConfig(srv.Addr))
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	if _, err := r.LookupNetIP(ctx, "api.test"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r.LookupNetIP(ctx, "api.test")
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				r.LookupNetIP(ctx, "api.test")
			}
		})
	})
}

// --- live configuration ----------------------------------------------------------------------

func observed(opts *Options) *observer.ObservedLogs {
	core, logs := observer.New(zapcore.InfoLevel)
	opts.Logger = zap.New(core)
	return logs
}

func TestSetConfigTTLClamps(t *testing.T) {
	for _, tc := range []struct {
		name          string
		ttl           uint32
		mod           func(*Config)
		before, after time.Duration // refresh interval once a name is past its first answers
	}{
		{"min_ttl raised", 4, func(c *Config) { c.MinTTL = 10 * time.Second }, 3 * time.Second, 7500 * time.Millisecond},
		{"max_ttl lowered", 60, func(c *Config) { c.MaxTTL = 8 * time.Second }, 45 * time.Second, 6 * time.Second},
		{"max_ttl raised", 600, func(c *Config) { c.MaxTTL = 2 * time.Minute }, 45 * time.Second, 90 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startDNS(t, "127.0.53.30")
			srv.Set("api.test", tc.ttl, netip.MustParseAddr("192.0.2.1"))
			cfg := testConfig(srv.Addr)
			r, clk := newManual(t, cfg, Options{})
			queries := func() int64 { return srv.QueriesFor("api.test") }
			// advance moves the clock, keeps the name in use and runs what is due.
			advance := func(d time.Duration) {
				clk.Advance(d)
				mustLookup(t, r, "api.test")
				r.step()
			}
			mustLookup(t, r, "api.test")
			for range probeAnswers { // the first refreshes come at min_ttl (1s)
				advance(time.Second)
			}
			if n := queries(); n != 2+2*probeAnswers {
				t.Fatalf("%d queries after the first answers, want %d", n, 2+2*probeAnswers)
			}

			tc.mod(&cfg)
			if err := r.SetConfig(cfg); err != nil {
				t.Fatal(err)
			}
			advance(tc.before) // the refresh scheduled under the old settings keeps its time
			if n := queries(); n != 8 {
				t.Fatalf("%d queries at the refresh scheduled before the change, want 8", n)
			}
			advance(tc.after - 10*time.Millisecond) // that answer was clamped by the new settings
			if n := queries(); n != 8 {
				t.Fatalf("%d queries before the new interval %s, want 8", n, tc.after)
			}
			advance(10 * time.Millisecond)
			if n := queries(); n != 10 {
				t.Fatalf("%d queries at the new interval %s, want 10", n, tc.after)
			}
			if st := r.Stats(); st.Misses != 1 || st.Names != 1 {
				t.Errorf("%d lookups waited for DNS and %d names are cached, want 1 and 1", st.Misses, st.Names)
			}
		})
	}
}

func TestSetConfigServers(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	oldSrv, newSrv := startDNS(t, "127.0.53.31"), startDNS(t, "127.0.53.32")
	oldSrv.Set("api.test", 60, a)
	newSrv.Set("api.test", 60, b)
	newSrv.Set("new.test", 60, b)
	cfg := testConfig(oldSrv.Addr)
	r, clk := newManual(t, cfg, Options{})
	if got := mustLookup(t, r, "api.test"); !slices.Equal(got, []netip.Addr{a}) {
		t.Fatalf("before the change: %v, want %v", got, a)
	}

	cfg.Servers = []string{newSrv.Addr}
	if err := r.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if got := mustLookup(t, r, "new.test"); !slices.Equal(got, []netip.Addr{b}) { // unknown to the old server
		t.Errorf("new name after the change: %v, want %v", got, b)
	}
	clk.Advance(time.Second) // api.test's next refresh
	r.step()
	if got := mustLookup(t, r, "api.test"); !slices.Equal(got, []netip.Addr{a, b}) {
		t.Errorf("refreshed fleet = %v, want %v (the old address keeps its TTL) and %v", got, a, b)
	}
	if n := oldSrv.QueriesFor("new.test") + oldSrv.QueriesFor("api.test"); n != 2 {
		t.Errorf("the old server got %d queries, want only the 2 before the change", n)
	}
	if n, m := newSrv.QueriesFor("new.test"), newSrv.QueriesFor("api.test"); n != 4 || m != 2 {
		t.Errorf("the new server got %d and %d queries, want 4 (an answer and its first refresh) and 2", n, m)
	}
}

func TestSetConfigResolvConf(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(conf, []byte("nameserver 127.0.0.53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer func(old string) { resolvConf = old }(resolvConf)
	resolvConf = conf
	var opts Options
	logs := observed(&opts)
	cfg := testConfig("127.0.0.9")
	r, _ := newManual(t, cfg, opts)

	for _, tc := range []struct {
		name     string
		file     string // written before SetConfig; "" leaves the file alone
		want     []string
		fallback bool
		changed  bool
	}{
		{"servers emptied: resolv.conf is read", "", []string{"127.0.0.53:53"}, false, true},
		{"same section, same resolv.conf: nothing to do", "", []string{"127.0.0.53:53"}, false, false},
		{"same section, resolv.conf changed", "nameserver 127.0.0.54\n", []string{"127.0.0.54:53"}, false, true},
		{"resolv.conf without servers: fallback", "search example.test\n", []string{fallbackServer}, true, true},
	} {
		if tc.file != "" {
			if err := os.WriteFile(conf, []byte(tc.file), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		logs.TakeAll()
		cfg.Servers = nil
		if err := r.SetConfig(cfg); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		s := r.set.Load()
		if !slices.Equal(s.servers, tc.want) || (s.serverNote != "") != tc.fallback {
			t.Errorf("%s: servers %v note %q, want %v fallback %v", tc.name, s.servers, s.serverNote, tc.want, tc.fallback)
		}
		info := logs.FilterMessage("resolver settings changed").AllUntimed()
		if (len(info) == 1) != tc.changed || len(info) > 1 {
			t.Errorf("%s: %d change logs, want changed %v", tc.name, len(info), tc.changed)
		} else if tc.changed && fmt.Sprint(info[0].ContextMap()["servers"]) != fmt.Sprint(tc.want) {
			t.Errorf("%s: change log %v, want servers %v", tc.name, info[0].ContextMap(), tc.want)
		}
		if warned := logs.FilterMessageSnippet("using " + fallbackServer).Len(); (warned == 1) != tc.fallback {
			t.Errorf("%s: %d fallback warnings, want fallback %v", tc.name, warned, tc.fallback)
		}
	}
}

func TestSetConfigTimeout(t *testing.T) {
	const delay = 300 * time.Millisecond // how late the server answers
	short, long := 50*time.Millisecond, time.Minute
	for _, tc := range []struct {
		name     string
		from, to time.Duration
	}{
		{"shortened below the server's delay", long, short},
		{"lengthened past the server's delay", short, long},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startDNS(t, "127.0.53.33")
			for _, n := range []string{"before.test", "after.test"} {
				srv.Set(n, 60, netip.MustParseAddr("192.0.2.1"))
				srv.SetDelay(n, delay)
			}
			cfg := testConfig(srv.Addr)
			cfg.Timeout = tc.from
			r, _ := newManual(t, cfg, Options{})
			check := func(name string, timeout time.Duration) {
				t.Helper()
				_, err := r.LookupNetIP(context.Background(), name)
				if timeout < delay && (err == nil || !isTimeout(err)) {
					t.Errorf("%s with timeout %s: %v, want a timeout", name, timeout, err)
				}
				if timeout > delay && err != nil {
					t.Errorf("%s with timeout %s: %v, want the answer", name, timeout, err)
				}
			}
			check("before.test", tc.from)
			cfg.Timeout = tc.to
			if err := r.SetConfig(cfg); err != nil {
				t.Fatal(err)
			}
			if s := r.set.Load(); s.udp.Timeout != tc.to || s.tcp.Timeout != tc.to {
				t.Errorf("clients' timeouts: udp %s, tcp %s, want %s", s.udp.Timeout, s.tcp.Timeout, tc.to)
			}
			check("after.test", tc.to)
		})
	}
}

func TestSetConfigCacheSize(t *testing.T) {
	srv, r, cfg, reg, names := fiveNames(t, "127.0.53.34", 5)

	cfg.CacheSize = 2
	if err := r.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if st := r.Stats(); st.Names != 2 {
		t.Errorf("%d names cached after cache_size 5 -> 2, want 2", st.Names)
	}
	r.step() // the evicted names leave the schedule and the metrics
	if got := gaugeNames(t, reg); !slices.Equal(got, []string{"d.test", "e.test"}) {
		t.Errorf("fleet_size series for %v, want the 2 most recently used", got)
	}
	mustLookup(t, r, "a.test") // evicted: asked again, and evicts the least recently used
	if n := srv.QueriesFor("a.test"); n != 4 {
		t.Errorf("evicted name: %d queries, want 4", n)
	}
	if st := r.Stats(); st.Names != 2 {
		t.Errorf("%d names cached, want cache_size 2", st.Names)
	}

	cfg.CacheSize = 10 // growing keeps what is cached and makes room
	if err := r.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		mustLookup(t, r, n)
	}
	if st := r.Stats(); st.Names != 5 {
		t.Errorf("%d names cached after cache_size 2 -> 10, want 5", st.Names)
	}
}

func TestSetConfigRefusesInvalid(t *testing.T) {
	srv := startDNS(t, "127.0.53.35")
	srv.Set("api.test", 60, netip.MustParseAddr("192.0.2.1"))
	var opts Options
	logs := observed(&opts)
	cfg := testConfig(srv.Addr)
	r, _ := newManual(t, cfg, opts)
	mustLookup(t, r, "api.test")
	for _, tc := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.Servers = []string{"dns.example"} }, `servers[0]: "dns.example" is not an IP or IP:port`},
		{func(c *Config) { c.MinTTL = c.MaxTTL * 2 }, "min_ttl:"},
		{func(c *Config) { c.MinTTL = 0 }, "min_ttl: must be positive"},
		{func(c *Config) { c.StaleIfError = -time.Second }, "stale_if_error: must not be negative"},
		{func(c *Config) { c.CacheSize = 0; c.Timeout = time.Second }, "cache_size: 0"},
		{func(c *Config) { c.Timeout = 0; c.MaxTTL = time.Hour }, "timeout: must be positive"},
	} {
		before := r.set.Load()
		bad := testConfig(srv.Addr)
		tc.mod(&bad)
		err := r.SetConfig(bad)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("SetConfig = %v, want %q", err, tc.want)
		}
		if r.set.Load() != before {
			t.Errorf("refused %q: the settings changed", tc.want)
		}
	}
	if st := r.Stats(); st.Names != 1 {
		t.Errorf("%d names cached, want 1", st.Names)
	}
	if n := logs.FilterMessage("resolver settings changed").Len(); n != 0 {
		t.Errorf("%d change logs for refused configurations", n)
	}
	if got := mustLookup(t, r, "api.test"); len(got) != 1 {
		t.Errorf("after refused changes: %v", got)
	}
}

func TestSetConfigLogsChangesOnly(t *testing.T) {
	var opts Options
	logs := observed(&opts)
	cfg := testConfig("127.0.0.9", "127.0.0.10")
	r, _ := newManual(t, cfg, opts)
	first := r.set.Load()

	same := cfg
	same.Servers = slices.Clone(cfg.Servers) // equal, not the same slice
	if err := r.SetConfig(same); err != nil {
		t.Fatal(err)
	}
	if r.set.Load() != first || logs.Len() != 0 {
		t.Errorf("an identical section changed the settings or logged %v", logs.All())
	}

	cfg.Servers[0] = "127.0.0.11" // the caller's slice is not the resolver's
	if s := r.set.Load(); s.cfg.Servers[0] != "127.0.0.9" {
		t.Errorf("the caller's edit reached the settings: %v", s.cfg.Servers)
	}
	cfg.Servers[0] = "127.0.0.9"

	cfg.MinTTL, cfg.StaleIfError = 2*time.Second, time.Minute
	if err := r.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	info := logs.FilterMessage("resolver settings changed").AllUntimed()
	if len(info) != 1 {
		t.Fatalf("%d change logs, want 1", len(info))
	}
	if got := info[0].ContextMap(); len(got) != 2 || got["min_ttl"] != 2*time.Second || got["stale_if_error"] != time.Minute {
		t.Errorf("change log fields %v, want min_ttl 2s and stale_if_error 1m only", got)
	}
}

// TestSetConfigConcurrent is for the race detector: lookups, background refreshes and
// evictions while SetConfig swaps between sections that differ in every setting.
func TestSetConfigConcurrent(t *testing.T) {
	one, two := startDNS(t, "127.0.53.36"), startDNS(t, "127.0.53.37")
	names := []string{"a.test", "b.test", "c.test", "d.test", "e.test", "f.test"}
	for _, srv := range []*dnstest.Server{one, two} {
		for i, n := range names {
			srv.SetRotating(n, 1, 2, addrRange(fmt.Sprintf("127.0.%d.", i+1), 4)...)
		}
	}
	cfgs := []Config{testConfig(one.Addr), testConfig(two.Addr, one.Addr)}
	cfgs[0].MinTTL, cfgs[0].MaxTTL, cfgs[0].CacheSize = 50*time.Millisecond, time.Second, 3
	cfgs[1].MinTTL, cfgs[1].MaxTTL, cfgs[1].StaleIfError, cfgs[1].Timeout = 20*time.Millisecond, 500*time.Millisecond, 0, time.Second
	r := newLive(t, cfgs[0], Options{})

	var done atomic.Bool
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := 0; i < 200 || !done.Load(); i++ {
				name := names[(g+i)%len(names)]
				if got, err := r.LookupNetIP(context.Background(), name); err != nil || len(got) == 0 {
					t.Errorf("%s: %v, %v", name, got, err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		defer done.Store(true)
		for i := range 500 {
			if err := r.SetConfig(cfgs[i%2]); err != nil {
				t.Error(err)
				return
			}
			r.LookupNetIP(context.Background(), names[i%len(names)])
		}
	})
	wg.Wait()
	if s := r.set.Load(); s.cfg.CacheSize != cfgs[1].CacheSize || !slices.Equal(s.servers, cfgs[1].Servers) {
		t.Errorf("settings after the last SetConfig: %+v, want %+v", s.cfg, cfgs[1])
	}
}
