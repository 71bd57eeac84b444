package limit

import (
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func newTest() (*Limiter, *clock)    { c := &clock{t: time.Unix(1_700_000_000, 0)}; return New(c.now), c }

// admitted returns a check that an Acquire was admitted, and its release.
func admitted(t *testing.T) func(func(), *Refusal) func() {
	return func(f func(), r *Refusal) func() {
		t.Helper()
		if r != nil {
			t.Fatalf("refused: %+v", r)
		}
		return f
	}
}

func TestRateAndBurst(t *testing.T) {
	must := admitted(t)
	l, c := newTest()
	cfg := Config{MaxTunnels: 100, MaxRequestsInFlight: 100, Rate: 2, Burst: 3}
	for range 3 { // the burst
		must(l.Acquire("u:a", cfg, Request))()
	}
	_, r := l.Acquire("u:a", cfg, Request)
	if r == nil || r.Limit != "rate" || r.RetryAfter != 500*time.Millisecond {
		t.Fatalf("4th at once: %+v, want rate with Retry-After 0.5s", r)
	}
	if _, r := l.Acquire("u:b", cfg, Request); r != nil {
		t.Fatalf("another key is not affected: %+v", r)
	}
	c.add(500 * time.Millisecond) // one token back at 2/s
	must(l.Acquire("u:a", cfg, Tunnel))()
	if _, r := l.Acquire("u:a", cfg, Request); r == nil {
		t.Fatal("the refilled token was spent twice")
	}
	c.add(time.Hour) // refills to the burst, not beyond
	for range 3 {
		must(l.Acquire("u:a", cfg, Request))()
	}
	if _, r := l.Acquire("u:a", cfg, Request); r == nil {
		t.Fatal("the bucket filled beyond its burst")
	}
}

func TestConcurrency(t *testing.T) {
	must := admitted(t)
	l, _ := newTest()
	cfg := Config{MaxTunnels: 2, MaxRequestsInFlight: 1, Rate: 1000, Burst: 1000}
	t1 := must(l.Acquire("a:1.2.3.4", cfg, Tunnel))
	t2 := must(l.Acquire("a:1.2.3.4", cfg, Tunnel))
	if _, r := l.Acquire("a:1.2.3.4", cfg, Tunnel); r == nil || r.Limit != "tunnels" || !strings.Contains(r.Reason, "limit 2") {
		t.Fatalf("third tunnel: %+v", r)
	}
	req := must(l.Acquire("a:1.2.3.4", cfg, Request)) // requests are counted apart from tunnels
	if _, r := l.Acquire("a:1.2.3.4", cfg, Request); r == nil || r.Limit != "requests_in_flight" {
		t.Fatalf("second request in flight: %+v", r)
	}
	t1()
	t1() // a second call does nothing
	must(l.Acquire("a:1.2.3.4", cfg, Tunnel))
	if _, r := l.Acquire("a:1.2.3.4", cfg, Tunnel); r == nil {
		t.Fatal("a double release freed two slots")
	}
	t2()
	req()
	must(l.Acquire("a:1.2.3.4", cfg, Request))()
}

func TestAuthFailures(t *testing.T) {
	l, c := newTest()
	a := AuthFailures{Max: 3, Window: time.Minute}
	for range 3 {
		if r := l.AuthBlocked("1.2.3.4", a); r != nil {
			t.Fatalf("blocked early: %+v", r)
		}
		l.AuthFailed("1.2.3.4", a)
		c.add(10 * time.Second)
	}
	r := l.AuthBlocked("1.2.3.4", a)
	if r == nil || r.Limit != "auth_failures" || r.RetryAfter != 30*time.Second {
		t.Fatalf("after 3 failures: %+v, want blocked until the window ends in 30s", r)
	}
	if l.AuthBlocked("5.6.7.8", a) != nil {
		t.Fatal("another address is blocked too")
	}
	c.add(30 * time.Second)
	if r := l.AuthBlocked("1.2.3.4", a); r != nil {
		t.Fatalf("still blocked after the window: %+v", r)
	}
}

func TestIdleKeysForgotten(t *testing.T) {
	must := admitted(t)
	l, c := newTest()
	cfg := Defaults()
	held := must(l.Acquire("u:held", cfg, Tunnel))
	must(l.Acquire("u:done", cfg, Request))()
	c.add(2 * time.Minute)
	must(l.Acquire("u:new", cfg, Request))() // sweeps
	if n := l.Keys(); n != 2 {
		t.Fatalf("%d keys, want 2 (the one holding a tunnel, and the new one)", n)
	}
	held()
}

func TestConfig(t *testing.T) {
	if err := Defaults().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Config{{MaxTunnels: 0, MaxRequestsInFlight: 1, Rate: 1, Burst: 1}, {MaxTunnels: 1, MaxRequestsInFlight: 1, Rate: 0, Burst: 1}, {MaxTunnels: 1, MaxRequestsInFlight: 1, Rate: 1, Burst: 0}} {
		if bad.Validate() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if err := (Config{MaxTunnels: 5}).ValidateOverride(); err != nil {
		t.Error(err)
	}
	if (Config{Rate: -1}).ValidateOverride() == nil {
		t.Error("a negative rate override accepted")
	}
	got := Defaults().Over(Config{MaxTunnels: 50, Rate: 5})
	if got.MaxTunnels != 50 || got.Rate != 5 || got.Burst != 400 || got.MaxRequestsInFlight != 1000 {
		t.Errorf("Over: %+v", got)
	}
}

func TestAddrKey(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2::9", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"not-an-ip", "not-an-ip"},
	} {
		if got := AddrKey(c.in); got != c.want {
			t.Errorf("AddrKey(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestClockBackwards: a clock reading older than the bucket's last refill (a wall clock set back)
// takes no tokens away; found by BenchmarkAcquire, when the clock was read before the lock.
func TestClockBackwards(t *testing.T) {
	l, clk := newTest()
	c := Config{MaxTunnels: 10, MaxRequestsInFlight: 10, Rate: 1e6, Burst: 3}
	ok := admitted(t)
	ok(l.Acquire("k", c, Request))()
	clk.add(-time.Second)
	ok(l.Acquire("k", c, Request))()
	ok(l.Acquire("k", c, Request))()
	if _, r := l.Acquire("k", c, Request); r == nil || r.Limit != "rate" {
		t.Fatalf("the fourth of a burst of 3 was not refused: %+v", r)
	}
}

// BenchmarkAcquire is the limiter's cost per admitted request: one Acquire and its release,
// for one busy key and, in parallel, for many keys (one global lock).
func BenchmarkAcquire(b *testing.B) {
	c := Config{MaxTunnels: 1 << 30, MaxRequestsInFlight: 1 << 30, Rate: 1e12, Burst: 1 << 30}
	b.Run("one key", func(b *testing.B) {
		l := New(nil)
		for range b.N {
			release, r := l.Acquire("u:acme-corp", c, Request)
			if r != nil {
				b.Fatal(r.Reason)
			}
			release()
		}
	})
	b.Run("parallel, 1000 keys", func(b *testing.B) {
		l := New(nil)
		keys := make([]string, 1000)
		for i := range keys {
			keys[i] = "a:192.0.2." + strconv.Itoa(i)
		}
		var next atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(1))
			for pb.Next() {
				release, r := l.Acquire(keys[i%len(keys)], c, Request)
				if r != nil {
					b.Error(r.Reason)
					return
				}
				release()
				i++
			}
		})
	})
}
