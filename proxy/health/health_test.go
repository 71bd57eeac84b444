package health

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// clock is the injectable clock the tests drive by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 23, 18, 40, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

const port = 443

// fleetOf returns n loopback backends, 127.0.1.1 onwards, as the resolver would.
func fleetOf(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{127, 0, 1 + byte((i+1)/256), byte((i + 1) % 256)})
	}
	return out
}

func ap(a netip.Addr) netip.AddrPort { return netip.AddrPortFrom(a, port) }

func newTracker(t testing.TB, mod func(*OutlierConfig)) (*Tracker, *clock) {
	t.Helper()
	cfg := Defaults()
	if mod != nil {
		mod(&cfg.Outlier)
	}
	c := newClock()
	return New(cfg, Options{Now: c.Now}), c
}

// report runs k attempts to addr that end with o.
func report(tr *Tracker, addr netip.AddrPort, o Outcome, k int) {
	for range k {
		tr.Start(addr).Done(o)
	}
}

func ejectedEntry(tr *Tracker, addr netip.AddrPort) (EjectedBackend, bool) {
	for _, e := range tr.Ejected() {
		if e.Addr == addr {
			return e, true
		}
	}
	return EjectedBackend{}, false
}

func TestDefaults(t *testing.T) {
	d := Defaults()
	if err := d.Validate(); err != nil {
		t.Fatalf("Defaults().Validate() = %v", err)
	}
	want := OutlierConfig{ConsecutiveFailures: 5, Consecutive5xx: 0, FailureRatePercent: 30, FailureRateWindow: 20,
		FailureRateMinRequests: 10, BaseEjection: 30 * time.Second, MaxEjection: 10 * time.Minute,
		MaxEjectedPercent: 50, FlapWindow: time.Hour, ProbationSuccesses: 5}
	if d.Outlier != want {
		t.Errorf("Defaults() = %+v; want %+v", d.Outlier, want)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		mod  func(*OutlierConfig)
		want string
	}{
		{func(o *OutlierConfig) { o.ConsecutiveFailures = 0; o.FailureRatePercent = 0 }, ""},
		{func(o *OutlierConfig) { o.FailureRateWindow = 64; o.FailureRateMinRequests = 64 }, ""},
		{func(o *OutlierConfig) { o.MaxEjection = o.BaseEjection }, ""},
		{func(o *OutlierConfig) { o.ConsecutiveFailures = -1 }, "outlier.consecutive_failures: -1 is negative"},
		{func(o *OutlierConfig) { o.Consecutive5xx = -3 }, "outlier.consecutive_5xx: -3 is negative"},
		{func(o *OutlierConfig) { o.FailureRatePercent = 101 }, "outlier.failure_rate_percent: 101 is outside 0..100"},
		{func(o *OutlierConfig) { o.FailureRateWindow = 65 }, "outlier.failure_rate_window: 65 is outside 1..64"},
		{func(o *OutlierConfig) { o.FailureRateWindow = 0 }, "outlier.failure_rate_window: 0 is outside 1..64"},
		{func(o *OutlierConfig) { o.FailureRateMinRequests = 21 }, "outlier.failure_rate_min_requests: 21 is outside 1..failure_rate_window (20)"},
		{func(o *OutlierConfig) { o.FailureRateMinRequests = 0 }, "outlier.failure_rate_min_requests: 0 is outside 1..failure_rate_window (20)"},
		{func(o *OutlierConfig) { o.BaseEjection = 0 }, "outlier.base_ejection: 0s, must be positive"},
		{func(o *OutlierConfig) { o.MaxEjection = time.Second }, "outlier.max_ejection: 1s is below base_ejection 30s"},
		{func(o *OutlierConfig) { o.FlapWindow = -time.Second }, "outlier.flap_window: -1s, must be positive"},
		{func(o *OutlierConfig) { o.ProbationSuccesses = 0 }, "outlier.probation_successes: 0, must be at least 1"},
		{func(o *OutlierConfig) { o.MaxEjectedPercent = 120 }, "outlier.max_ejected_percent: 120 is outside 0..100"},
		{func(o *OutlierConfig) { o.MaxEjectedPercent = -1 }, "outlier.max_ejected_percent: -1 is outside 0..100"},
	}
	for _, tt := range tests {
		cfg := Defaults()
		tt.mod(&cfg.Outlier)
		err := cfg.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("Validate(%+v) = %v; want nil", cfg.Outlier, err)
		case tt.want != "" && (err == nil || err.Error() != tt.want):
			t.Errorf("Validate(%+v) = %v; want %q", cfg.Outlier, err, tt.want)
		}
	}
}

func TestNewPanicsOnInvalidConfig(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "max_ejected_percent") {
			t.Errorf("recover() = %v; want a panic naming max_ejected_percent", r)
		}
	}()
	cfg := Defaults()
	cfg.Outlier.MaxEjectedPercent = 120
	New(cfg, Options{})
}

func TestZeroConfigIsDefaults(t *testing.T) {
	tr := New(Config{}, Options{})
	if got := tr.policy.Load().OutlierConfig; got != Defaults().Outlier {
		t.Errorf("New(Config{}) uses %+v; want the defaults", got)
	}
}

func TestConsecutiveFailuresEjectAtThreshold(t *testing.T) {
	for _, threshold := range []int{1, 3, 5} {
		for _, o := range []Outcome{ConnectFailure, Reset, Timeout} {
			t.Run(fmt.Sprintf("%d_%s", threshold, o), func(t *testing.T) {
				tr, _ := newTracker(t, func(c *OutlierConfig) { c.ConsecutiveFailures = threshold; c.FailureRatePercent = 0 })
				addr := ap(fleetOf(1)[0])
				report(tr, addr, o, threshold-1)
				report(tr, addr, Success, 1) // resets the run
				report(tr, addr, o, threshold-1)
				if _, ej := ejectedEntry(tr, addr); ej {
					t.Fatalf("ejected after %d failures, a success and %d more; threshold %d", threshold-1, threshold-1, threshold)
				}
				report(tr, addr, o, 1)
				e, ej := ejectedEntry(tr, addr)
				if !ej || e.Reason != "consecutive" || e.Count != 1 {
					t.Fatalf("after %d in a row: Ejected() = %+v, %v; want reason consecutive, count 1", threshold, e, ej)
				}
			})
		}
	}
}

func TestConsecutiveFailuresOff(t *testing.T) {
	tr, _ := newTracker(t, func(c *OutlierConfig) { c.ConsecutiveFailures = 0; c.FailureRatePercent = 0 })
	addr := ap(fleetOf(1)[0])
	report(tr, addr, ConnectFailure, 100)
	if got := tr.Ejected(); len(got) != 0 {
		t.Errorf("with every criterion off, Ejected() = %+v", got)
	}
}

// ejectAgain brings addr back from its current ejection and fails it once, which on probation
// ejects it again; it returns the new ejection's length.
func ejectAgain(t *testing.T, tr *Tracker, c *clock, addr netip.AddrPort) (time.Duration, EjectedBackend) {
	t.Helper()
	e, ok := ejectedEntry(tr, addr)
	if !ok {
		t.Fatalf("%s is not ejected", addr)
	}
	c.Set(e.Until)
	report(tr, addr, Reset, 1)
	e2, ok := ejectedEntry(tr, addr)
	if !ok {
		t.Fatalf("one failure on probation did not eject %s again", addr)
	}
	return e2.Until.Sub(c.Now()), e2
}

func TestEjectionGrowsAndCaps(t *testing.T) {
	tests := []struct {
		base, max time.Duration
		want      []time.Duration
	}{
		{30 * time.Second, 100 * time.Second, []time.Duration{30, 60, 90, 100, 100, 100}},
		{30 * time.Second, 10 * time.Minute, []time.Duration{30, 60, 90, 120, 150, 180}},
		{time.Minute, 2 * time.Minute, []time.Duration{60, 120, 120}},
		{time.Minute, time.Minute, []time.Duration{60, 60}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s-%s", tt.base, tt.max), func(t *testing.T) {
			tr, c := newTracker(t, func(o *OutlierConfig) { o.BaseEjection, o.MaxEjection = tt.base, tt.max })
			addr := ap(fleetOf(1)[0])
			report(tr, addr, ConnectFailure, 5)
			e, _ := ejectedEntry(tr, addr)
			got := []time.Duration{e.Until.Sub(c.Now()) / time.Second}
			for len(got) < len(tt.want) {
				d, _ := ejectAgain(t, tr, c, addr)
				got = append(got, d/time.Second)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("ejections lasted %v s; want %v s", got, tt.want)
			}
		})
	}
}

func TestProbation(t *testing.T) {
	tests := []struct {
		name      string
		successes int // after the return, before one failure
		reejected bool
	}{
		{"failure at once", 0, true},
		{"failure after 4 successes", 4, true},
		{"failure after 5 successes", 5, false},
		{"failure after 20 successes", 20, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, c := newTracker(t, nil)
			addr := ap(fleetOf(1)[0])
			report(tr, addr, Timeout, 5)
			e, _ := ejectedEntry(tr, addr)
			c.Set(e.Until)
			if tr.Healthy([]netip.Addr{addr.Addr()}, port) != 1 {
				t.Fatal("not healthy when its ejection ended")
			}
			report(tr, addr, Success, tt.successes)
			report(tr, addr, ConnectFailure, 1)
			e2, ej := ejectedEntry(tr, addr)
			if ej != tt.reejected {
				t.Fatalf("ejected = %v (%+v); want %v", ej, e2, tt.reejected)
			}
			if !ej {
				// Out of probation: the normal threshold applies again, and the next ejection
				// still counts as a flap (within flap_window of the last).
				report(tr, addr, ConnectFailure, 3)
				if _, ej := ejectedEntry(tr, addr); ej {
					t.Fatal("ejected after 4 failures out of probation; threshold is 5")
				}
				report(tr, addr, ConnectFailure, 1)
				e2, ej = ejectedEntry(tr, addr)
				if !ej {
					t.Fatal("not ejected after 5 failures")
				}
			}
			if e2.Count != 2 || e2.Until.Sub(c.Now()) != time.Minute {
				t.Errorf("second ejection %+v lasts %s; want count 2, 1m", e2, e2.Until.Sub(c.Now()))
			}
		})
	}
}

func TestMultiplierDecays(t *testing.T) {
	const flap = time.Hour
	tests := []struct {
		quiet time.Duration // from the end of the 4th ejection to the next one
		count int
	}{
		{0, 5},
		{flap, 5},
		{flap + time.Second, 3},   // 4 halves to 2, +1
		{2*flap + time.Second, 2}, // 4 → 2 → 1, +1
		{3*flap + time.Second, 1},
		{100 * flap, 1},
	}
	for _, tt := range tests {
		t.Run(tt.quiet.String(), func(t *testing.T) {
			tr, c := newTracker(t, func(o *OutlierConfig) { o.FlapWindow = flap })
			addr := ap(fleetOf(1)[0])
			report(tr, addr, Reset, 5)
			for range 3 {
				ejectAgain(t, tr, c, addr)
			}
			e, _ := ejectedEntry(tr, addr)
			if e.Count != 4 {
				t.Fatalf("count = %d; want 4", e.Count)
			}
			c.Set(e.Until)
			report(tr, addr, Success, 5) // leaves probation
			c.Set(e.Until.Add(tt.quiet))
			report(tr, addr, Reset, 5)
			e, _ = ejectedEntry(tr, addr)
			if e.Count != tt.count || e.Until.Sub(c.Now()) != time.Duration(tt.count)*30*time.Second {
				t.Errorf("after %s quiet: %+v, lasting %s; want count %d", tt.quiet, e, e.Until.Sub(c.Now()), tt.count)
			}
		})
	}
}

func Test5xx(t *testing.T) {
	tests := []struct {
		name      string
		threshold int
		seq       []Outcome
		reason    string // "" not ejected
	}{
		{"off: 5xx are successes", 0, repeat(Status5xx, 50), ""},
		{"off: 5xx ends a failure run", 0, cat(repeat(Reset, 4), []Outcome{Status5xx}, repeat(Reset, 4)), ""},
		{"on: threshold reached", 3, repeat(Status5xx, 3), "5xx"},
		{"on: below threshold", 3, repeat(Status5xx, 2), ""},
		{"on: a success resets", 3, []Outcome{Status5xx, Status5xx, Success, Status5xx, Status5xx}, ""},
		{"on: a 5xx ends a connection failure run", 3, cat(repeat(Reset, 4), []Outcome{Status5xx}, repeat(Reset, 4)), ""},
		{"on: connection failures keep the 5xx run", 3, []Outcome{Status5xx, Status5xx, Reset, Status5xx}, "5xx"},
		{"on: rate counts 5xx", 4, cat(repeat(Success, 7), []Outcome{Status5xx, Reset, Status5xx}), "failure_rate"},
		{"off: rate ignores 5xx", 0, cat(repeat(Success, 7), []Outcome{Status5xx, Reset, Status5xx}), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, _ := newTracker(t, func(o *OutlierConfig) { o.Consecutive5xx = tt.threshold })
			addr := ap(fleetOf(1)[0])
			for _, o := range tt.seq {
				report(tr, addr, o, 1)
			}
			e, ej := ejectedEntry(tr, addr)
			if e.Reason != tt.reason || ej != (tt.reason != "") {
				t.Errorf("Ejected() = %+v, %v; want reason %q", e, ej, tt.reason)
			}
		})
	}
}

func repeat(o Outcome, n int) []Outcome {
	s := make([]Outcome, n)
	for i := range s {
		s[i] = o
	}
	return s
}

func cat(ss ...[]Outcome) []Outcome {
	var out []Outcome
	for _, s := range ss {
		out = append(out, s...)
	}
	return out
}

func TestFailureRate(t *testing.T) {
	tests := []struct {
		name string
		fail func(k int) bool // k-th attempt, from 0
		at   int              // attempts until ejection; 0 never (within 200)
	}{
		{"every 3rd fails", func(k int) bool { return k%3 == 2 }, 12},
		{"up 3, down 3", func(k int) bool { return k%6 >= 3 }, 10},
		{"up 2, down 1 from the start", func(k int) bool { return k%3 == 0 }, 10},
		{"every 5th fails: 20% is below 30%", func(k int) bool { return k%5 == 4 }, 0},
		{"healthy", func(int) bool { return false }, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, c := newTracker(t, nil)
			addr := ap(fleetOf(1)[0])
			for k := range 200 {
				o := Success
				if tt.fail(k) {
					o = Reset
				}
				report(tr, addr, o, 1)
				c.Advance(100 * time.Millisecond)
				if e, ej := ejectedEntry(tr, addr); ej {
					if k+1 != tt.at || e.Reason != "failure_rate" {
						t.Fatalf("ejected after %d attempts, reason %s; want after %d, failure_rate", k+1, e.Reason, tt.at)
					}
					return
				}
			}
			if tt.at != 0 {
				t.Fatalf("not ejected after 200 attempts; want after %d", tt.at)
			}
		})
	}
}

func TestCanceledAndStragglersAreNeutral(t *testing.T) {
	tr, c := newTracker(t, nil)
	addr := ap(fleetOf(1)[0])
	report(tr, addr, Reset, 4)
	report(tr, addr, Canceled, 3)
	report(tr, addr, Reset, 1)
	e, ej := ejectedEntry(tr, addr)
	if !ej || e.Reason != "consecutive" {
		t.Fatalf("4 failures, 3 cancels, 1 failure: Ejected() = %+v, %v; want a consecutive ejection", e, ej)
	}
	// Requests started before the ejection that fail during it neither extend nor repeat it.
	stragglers := make([]Attempt, 10)
	for i := range stragglers {
		stragglers[i] = tr.Start(addr)
	}
	c.Advance(10 * time.Second)
	for _, a := range stragglers {
		a.Done(Reset)
	}
	if e2, _ := ejectedEntry(tr, addr); e2 != e {
		t.Errorf("stragglers changed the ejection: %+v; was %+v", e2, e)
	}
	Attempt{}.Done(Reset) // the zero Attempt is inert
}

func TestMaxEjectedPercent(t *testing.T) {
	tests := []struct {
		cap      int
		failing  int
		avoided  int
		fleetLen int
	}{
		{30, 5, 3, 10},
		{50, 5, 5, 10},
		{50, 7, 5, 10},
		{0, 5, 0, 10},
		{100, 5, 5, 10},
		{50, 1, 0, 1}, // a fleet of one is never avoided
		{50, 3, 1, 3}, // floor(1.5)
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d%%_%dof%d", tt.cap, tt.failing, tt.fleetLen), func(t *testing.T) {
			tr, c := newTracker(t, func(o *OutlierConfig) { o.MaxEjectedPercent = tt.cap })
			fleet := fleetOf(tt.fleetLen)
			for i := range tt.failing { // backend 0 fails first: it is the least recently failed
				report(tr, ap(fleet[i]), ConnectFailure, 5)
				c.Advance(time.Second)
			}
			if got := tr.Healthy(fleet, port); got != tt.fleetLen-tt.failing {
				t.Errorf("Healthy = %d; want %d", got, tt.fleetLen-tt.failing)
			}
			picked := map[netip.AddrPort]int{}
			for range 4000 {
				a, ok := tr.Pick(fleet, port, nil)
				if !ok {
					t.Fatal("Pick found nothing")
				}
				picked[a]++
			}
			readmitted := tt.failing - tt.avoided
			for i, a := range fleet {
				wantPicked := i < readmitted || i >= tt.failing
				if (picked[ap(a)] > 0) != wantPicked {
					t.Errorf("backend %d picked %d times; want picked = %v (readmitted: the %d least recently failed)",
						i, picked[ap(a)], wantPicked, readmitted)
				}
			}
		})
	}
}

func TestAllEjectedFallsBackToLeastRecentlyFailed(t *testing.T) {
	tr, c := newTracker(t, func(o *OutlierConfig) { o.MaxEjectedPercent = 100 })
	fleet := fleetOf(3)
	for _, i := range []int{1, 2, 0} {
		report(tr, ap(fleet[i]), ConnectFailure, 5)
		c.Advance(time.Second)
	}
	if got := tr.Healthy(fleet, port); got != 0 {
		t.Fatalf("Healthy = %d; want 0", got)
	}
	for range 100 {
		if a, ok := tr.Pick(fleet, port, nil); !ok || a != ap(fleet[1]) {
			t.Fatalf("Pick = %v, %v; want %v, the least recently failed", a, ok, ap(fleet[1]))
		}
	}
	if a, ok := tr.Pick(fleet, port, []netip.AddrPort{ap(fleet[1])}); !ok || a != ap(fleet[2]) {
		t.Fatalf("Pick excluding it = %v, %v; want %v, the next least recently failed", a, ok, ap(fleet[2]))
	}
	// Traffic the fallback sends refreshes last failure times: the fallback moves on.
	report(tr, ap(fleet[1]), Reset, 1)
	if a, _ := tr.Pick(fleet, port, nil); a != ap(fleet[2]) {
		t.Errorf("after backend 1 failed again, Pick = %v; want %v", a, ap(fleet[2]))
	}

	// A fleet of one under the default cap is never avoided.
	tr, _ = newTracker(t, nil)
	one := fleetOf(1)
	report(tr, ap(one[0]), ConnectFailure, 5)
	if a, ok := tr.Pick(one, port, nil); !ok || a != ap(one[0]) {
		t.Errorf("fleet of one: Pick = %v, %v; want its only backend", a, ok)
	}
}

func TestExclude(t *testing.T) {
	tr, c := newTracker(t, nil)
	fleet := fleetOf(5)
	exclude := []netip.AddrPort{ap(fleet[0]), ap(fleet[2]), ap(fleet[3])}
	seen := map[netip.AddrPort]bool{}
	for range 500 {
		a, ok := tr.Pick(fleet, port, exclude)
		if !ok {
			t.Fatal("Pick found nothing")
		}
		seen[a] = true
	}
	if len(seen) != 2 || !seen[ap(fleet[1])] || !seen[ap(fleet[4])] {
		t.Errorf("picked %v; want exactly backends 1 and 4", seen)
	}
	all := []netip.AddrPort{ap(fleet[0]), ap(fleet[1]), ap(fleet[2]), ap(fleet[3]), ap(fleet[4])}
	if a, ok := tr.Pick(fleet, port, all); ok {
		t.Errorf("Pick with everything excluded = %v; want ok = false", a)
	}
	if a, ok := tr.Pick(nil, port, nil); ok {
		t.Errorf("Pick of an empty fleet = %v; want ok = false", a)
	}

	// The usable ones are all tried: a retry goes to an ejected backend rather than nowhere.
	f4 := fleetOf(4)
	report(tr, ap(f4[1]), ConnectFailure, 5)
	c.Advance(time.Second)
	report(tr, ap(f4[0]), ConnectFailure, 5) // cap 50%: both stay avoided
	tried := []netip.AddrPort{ap(f4[2]), ap(f4[3])}
	if a, ok := tr.Pick(f4, port, tried); !ok || a != ap(f4[1]) {
		t.Errorf("Pick with the healthy ones tried = %v, %v; want %v (ejected, least recently failed)", a, ok, ap(f4[1]))
	}
	if a, ok := tr.Pick(f4, port, append(tried, ap(f4[1]))); !ok || a != ap(f4[0]) {
		t.Errorf("Pick = %v, %v; want %v, the only one not tried", a, ok, ap(f4[0]))
	}
}

func TestPickSpreadsLoad(t *testing.T) {
	tr, _ := newTracker(t, nil)
	fleet := fleetOf(40)
	count := map[netip.AddrPort]int{}
	for range 10000 {
		a, _ := tr.Pick(fleet, port, nil)
		count[a]++
	}
	if len(count) != 40 {
		t.Errorf("10000 picks touched %d of 40 backends", len(count))
	}

	// One backend is busy: P2C sends it (almost) nothing while others are idler.
	busy := ap(fleet[7])
	var busyAttempts []Attempt
	for range 50 {
		busyAttempts = append(busyAttempts, tr.Start(busy))
	}
	clear(count)
	for range 10000 {
		a, _ := tr.Pick(fleet, port, nil)
		count[a]++
	}
	if count[busy] > 10000/40/4 {
		t.Errorf("backend with 50 in flight got %d of 10000 picks; average is 250", count[busy])
	}
	for _, a := range busyAttempts {
		a.Done(Success)
	}

	// Picks that stay in flight balance the fleet: P2C keeps the spread small. It is random, so
	// the bound leaves room: over 10,000 runs the spread was 2 to 10 (1 run above 9), while one
	// random choice per pick spreads 4000 over 40 by about 40.
	var open []Attempt
	for range 4000 {
		a, _ := tr.Pick(fleet, port, nil)
		open = append(open, tr.Start(a))
	}
	lo, hi := int64(1<<62), int64(0)
	for _, a := range fleet {
		n := tr.backends[ap(a)].inflight.Load()
		lo, hi = min(lo, n), max(hi, n)
	}
	if hi-lo > 15 {
		t.Errorf("4000 picks in flight over 40 backends: %d..%d each; want a spread of at most 15", lo, hi)
	}
	for _, a := range open {
		a.Done(Success)
	}
}

// flapper is a backend that accepts connections and drops some: fail(k) says whether its k-th
// attempt (from 0) is reset.
type flapper func(k int) bool

func every3rd(k int) bool { return k%3 == 2 }
func up3down3(k int) bool { return k%6 >= 3 }

// simulation drives a fleet with real Pick/Start/Done calls, one request at a time, the clock
// moving step per request, retrying on another backend up to retries times within the budget.
type simulation struct {
	tr      *Tracker
	clock   *clock
	budget  *Budget
	fleet   []netip.Addr
	flaps   map[netip.AddrPort]flapper
	rng     *rand.Rand
	noise   float64 // chance that a healthy backend resets an attempt
	retries int
	step    time.Duration

	attemptsTo map[netip.AddrPort]int
	attempts   int
	ok, failed int
}

func (s *simulation) request() {
	s.budget.Request()
	var tried []netip.AddrPort
	for try := 0; try <= s.retries; try++ {
		if try > 0 && !s.budget.TryRetry() {
			break
		}
		a, ok := s.tr.Pick(s.fleet, port, tried)
		if !ok {
			break
		}
		tried = append(tried, a)
		att := s.tr.Start(a)
		fail := s.rng.Float64() < s.noise
		if f, flaps := s.flaps[a]; flaps {
			fail = f(s.attemptsTo[a])
		}
		s.attemptsTo[a]++
		s.attempts++
		if !fail {
			att.Done(Success)
			s.ok++
			s.clock.Advance(s.step)
			return
		}
		att.Done(Reset)
	}
	s.failed++
	s.clock.Advance(s.step)
}

func newSimulation(t *testing.T, n int, flaps ...flapper) *simulation {
	tr, c := newTracker(t, nil)
	s := &simulation{
		tr: tr, clock: c, fleet: fleetOf(n), budget: tr.NewBudget(0.2, 3, 10*time.Second),
		flaps: map[netip.AddrPort]flapper{}, rng: rand.New(rand.NewPCG(1, 2)),
		retries: 2, step: 100 * time.Millisecond, attemptsTo: map[netip.AddrPort]int{},
	}
	for i, f := range flaps {
		s.flaps[ap(s.fleet[i])] = f
	}
	return s
}

// TestFlappingFleet is the incident: 1000 requests over 10 backends, two of which flap. Retries
// hide the flaps from customers, and once detected the flapping backends get little traffic.
func TestFlappingFleet(t *testing.T) {
	s := newSimulation(t, 10, every3rd, up3down3)
	s.noise = 0.002
	detected := -1
	var before map[netip.AddrPort]int
	var attemptsBefore int
	for i := range 1000 {
		s.request()
		if detected < 0 && len(s.tr.Ejected()) == 2 {
			detected = i
			before, attemptsBefore = maps(s.attemptsTo), s.attempts
		}
	}
	if s.ok < 995 {
		t.Errorf("%d of 1000 requests succeeded; want at least 99.5%%", s.ok)
	}
	if detected < 0 || detected > 300 {
		t.Fatalf("both flapping backends ejected after request %d; want within 300", detected)
	}
	flapped := 0
	for a := range s.flaps {
		flapped += s.attemptsTo[a] - before[a]
	}
	share := float64(flapped) / float64(s.attempts-attemptsBefore)
	t.Logf("detected after %d requests; %d ok; flapping share after detection %.2f%% of %d attempts",
		detected+1, s.ok, 100*share, s.attempts-attemptsBefore)
	if share > 0.02 {
		t.Errorf("flapping backends got %.1f%% of attempts after detection; want under 2%% (fair share 20%%)", 100*share)
	}
}

func maps(m map[netip.AddrPort]int) map[netip.AddrPort]int {
	out := make(map[netip.AddrPort]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// TestFlappingStaysEjected runs each flap pattern for a simulated hour: the backend is caught by
// the rate criterion, every return ends in a longer ejection, and it never becomes preferred.
func TestFlappingStaysEjected(t *testing.T) {
	for name, f := range map[string]flapper{"every3rd": every3rd, "up3down3": up3down3} {
		t.Run(name, func(t *testing.T) {
			s := newSimulation(t, 10, f)
			core, logs := observer.New(zapcore.InfoLevel)
			s.tr.log = zap.New(core)
			flap := ap(s.fleet[0])
			var half int
			for i := range 36000 {
				s.request()
				if i == 18000 {
					half = s.attemptsTo[flap]
				}
			}
			var durations []float64
			for i, e := range logs.FilterMessage("backend ejected").AllUntimed() {
				fields := e.ContextMap()
				if fields["backend"] != flap.String() {
					t.Fatalf("healthy backend ejected: %v", fields)
				}
				if i == 0 && fields["reason"] != "failure_rate" {
					t.Errorf("first ejection reason %v; want failure_rate", fields["reason"])
				}
				durations = append(durations, fields["ejection_s"].(float64))
			}
			if len(durations) < 8 {
				t.Fatalf("ejected %d times in an hour (%v); want it caught again after each return", len(durations), durations)
			}
			for i := 1; i < len(durations); i++ {
				if durations[i] <= durations[i-1] && durations[i] < 600 {
					t.Errorf("ejections %v do not grow", durations)
					break
				}
			}
			share := float64(s.attemptsTo[flap]) / float64(s.attempts)
			lateShare := float64(s.attemptsTo[flap]-half) / float64(s.attempts/2)
			t.Logf("%d ejections, durations %v s; share %.3f%% overall, %.3f%% in the second half",
				len(durations), durations, 100*share, 100*lateShare)
			if share > 0.01 || lateShare > 0.005 {
				t.Errorf("flapping backend got %.2f%% of attempts (%.2f%% in the second half); fair share is 10%%",
					100*share, 100*lateShare)
			}
			if s.failed != 0 {
				t.Errorf("%d requests failed despite retries", s.failed)
			}
			if len(logs.FilterMessage("backend returned from ejection, on probation").All()) == 0 {
				t.Error("no return from ejection was logged")
			}
		})
	}
}

func TestHealthyAndEjected(t *testing.T) {
	tr, c := newTracker(t, nil)
	fleet := fleetOf(3)
	if got := tr.Healthy(fleet, port); got != 3 {
		t.Errorf("Healthy of a fresh fleet = %d; want 3", got)
	}
	report(tr, ap(fleet[1]), ConnectFailure, 5)
	if got := tr.Healthy(fleet, port); got != 2 {
		t.Errorf("Healthy = %d; want 2", got)
	}
	if got := tr.Healthy(fleet, 8443); got != 3 {
		t.Errorf("Healthy on another port = %d; want 3", got)
	}
	want := []EjectedBackend{{Addr: ap(fleet[1]), Until: c.Now().Add(30 * time.Second), Count: 1, Reason: "consecutive"}}
	if got := tr.Ejected(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Ejected() = %+v; want %+v", got, want)
	}
	c.Advance(30 * time.Second)
	if got := tr.Healthy(fleet, port); got != 3 || len(tr.Ejected()) != 0 {
		t.Errorf("after the ejection: Healthy = %d, Ejected() = %+v; want 3, none", got, tr.Ejected())
	}
}

func TestSweep(t *testing.T) {
	tr, c := newTracker(t, nil) // entries are kept max(10m, 1h) = 1h
	fleet := fleetOf(3)
	report(tr, ap(fleet[0]), Success, 1)
	report(tr, ap(fleet[1]), ConnectFailure, 5)
	long := tr.Start(ap(fleet[2]))
	c.Advance(61 * time.Minute)
	tr.Start(ap(fleetOf(4)[3])).Done(Success) // sweeps
	tr.mu.RLock()
	_, kept0 := tr.backends[ap(fleet[0])]
	_, kept1 := tr.backends[ap(fleet[1])]
	_, kept2 := tr.backends[ap(fleet[2])]
	n := len(tr.backends)
	tr.mu.RUnlock()
	if kept0 || kept1 || !kept2 || n != 2 {
		t.Errorf("after 61m idle: kept %v %v %v (%d entries); want only the one in flight and the new one", kept0, kept1, kept2, n)
	}
	long.Done(Success)
}

func TestMetricsAndLogs(t *testing.T) {
	reg := prometheus.NewRegistry()
	core, logs := observer.New(zapcore.InfoLevel)
	c := newClock()
	cfg := Defaults()
	cfg.Outlier.Consecutive5xx = 2
	tr := New(cfg, Options{Now: c.Now, Registerer: reg, Logger: zap.New(core)})
	fleet := fleetOf(4)
	report(tr, ap(fleet[0]), ConnectFailure, 5)
	report(tr, ap(fleet[1]), Status5xx, 2)
	for k := range 12 {
		o := Success
		if every3rd(k) {
			o = Reset
		}
		report(tr, ap(fleet[2]), o, 1)
	}
	b := tr.NewBudget(0.2, 0, 10*time.Second)
	b.TryRetry()
	b.TryRetry()

	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			got[mf.GetName()+labels(m)] = value(m)
		}
	}
	want := map[string]float64{
		`fixedgate_backend_ejections_total{reason="consecutive"}`:  1,
		`fixedgate_backend_ejections_total{reason="failure_rate"}`: 1,
		`fixedgate_backend_ejections_total{reason="5xx"}`:          1,
		`fixedgate_backends_ejected`:                               3,
		`fixedgate_retry_budget_exhausted_total`:                   2,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("metrics = %v; want %v", got, want)
	}

	warn := logs.FilterMessage("backend ejected").AllUntimed()
	if len(warn) != 3 {
		t.Fatalf("%d ejection logs; want 3", len(warn))
	}
	f := warn[0].ContextMap()
	if warn[0].Level != zapcore.WarnLevel || f["backend"] != "127.0.1.1:443" || f["reason"] != "consecutive" ||
		f["ejection_s"] != 30.0 || f["count"] != int64(1) {
		t.Errorf("ejection log %v %v", warn[0].Level, f)
	}
	c.Advance(30 * time.Second)
	report(tr, ap(fleet[0]), Success, 1)
	info := logs.FilterMessage("backend returned from ejection, on probation").AllUntimed()
	if len(info) != 1 || info[0].Level != zapcore.InfoLevel || info[0].ContextMap()["backend"] != "127.0.1.1:443" {
		t.Errorf("return logs = %v", info)
	}
}

func labels(m *dto.Metric) string {
	if len(m.GetLabel()) == 0 {
		return ""
	}
	var s []string
	for _, l := range m.GetLabel() {
		s = append(s, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
	}
	return "{" + strings.Join(s, ",") + "}"
}

func value(m *dto.Metric) float64 {
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// TestConcurrentUse is for the race detector: Pick, Start, Done, Healthy, Ejected and sweeps at
// once, with the clock moving.
func TestConcurrentUse(t *testing.T) {
	tr, c := newTracker(t, func(o *OutlierConfig) {
		o.BaseEjection, o.MaxEjection, o.FlapWindow = time.Second, time.Second, time.Second
	})
	fleet := fleetOf(40)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 0))
			var tried []netip.AddrPort
			for i := range 3000 {
				a, ok := tr.Pick(fleet, port, tried)
				if !ok {
					t.Error("Pick found nothing")
					return
				}
				o := Outcome(rng.IntN(int(Canceled) + 1))
				tr.Start(a).Done(o)
				if tried = append(tried, a); len(tried) > 2 || o == Success {
					tried = tried[:0]
				}
				if g == 0 {
					c.Advance(10 * time.Millisecond)
				}
				if i%500 == 0 {
					tr.Healthy(fleet, port)
					tr.Ejected()
				}
			}
		})
	}
	wg.Wait()
	tr.mu.RLock()
	defer tr.mu.RUnlock()
	for a, b := range tr.backends {
		if n := b.inflight.Load(); n != 0 {
			t.Errorf("%s has %d in flight after everything finished", a, n)
		}
	}
}

func BenchmarkPick40(b *testing.B) {
	tr, _ := newTracker(b, nil)
	fleet := fleetOf(40)
	for _, a := range fleet {
		tr.Start(ap(a)).Done(Success)
	}
	b.ReportAllocs()
	for b.Loop() {
		tr.Pick(fleet, port, nil)
	}
}

// BenchmarkPick40Ejected is Pick while one backend is ejected: every member is looked at.
func BenchmarkPick40Ejected(b *testing.B) {
	tr, _ := newTracker(b, func(o *OutlierConfig) { o.BaseEjection = time.Hour; o.MaxEjection = time.Hour })
	fleet := fleetOf(40)
	for _, a := range fleet {
		tr.Start(ap(a)).Done(Success)
	}
	report(tr, ap(fleet[3]), ConnectFailure, 5)
	b.ReportAllocs()
	for b.Loop() {
		tr.Pick(fleet, port, nil)
	}
}

// BenchmarkPick40Retry is a retry's Pick: two backends excluded, one ejected.
func BenchmarkPick40Retry(b *testing.B) {
	tr, _ := newTracker(b, func(o *OutlierConfig) { o.BaseEjection = time.Hour; o.MaxEjection = time.Hour })
	fleet := fleetOf(40)
	for _, a := range fleet {
		tr.Start(ap(a)).Done(Success)
	}
	report(tr, ap(fleet[3]), ConnectFailure, 5)
	tried := []netip.AddrPort{ap(fleet[0]), ap(fleet[1])}
	b.ReportAllocs()
	for b.Loop() {
		tr.Pick(fleet, port, tried)
	}
}

func BenchmarkStartDone(b *testing.B) {
	tr, _ := newTracker(b, nil)
	addr := ap(fleetOf(1)[0])
	b.ReportAllocs()
	for b.Loop() {
		tr.Start(addr).Done(Success)
	}
}

// BenchmarkPickStartDoneParallel is the whole hot path from many goroutines with the real clock.
func BenchmarkPickStartDoneParallel(b *testing.B) {
	tr := New(Defaults(), Options{})
	fleet := fleetOf(40)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			a, _ := tr.Pick(fleet, port, nil)
			tr.Start(a).Done(Success)
		}
	})
}

func TestHotPathDoesNotAllocate(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts")
	}
	tr, _ := newTracker(t, func(o *OutlierConfig) { o.MaxEjectedPercent = 5 })
	fleet := fleetOf(40)
	retry := []netip.AddrPort{ap(fleet[0]), ap(fleet[1])}
	check := func(name string, f func()) {
		t.Helper()
		if n := testing.AllocsPerRun(200, f); n != 0 {
			t.Errorf("%s: %.1f allocations per run; want 0", name, n)
		}
	}
	check("Pick, nothing ejected", func() { tr.Pick(fleet, port, nil) })
	check("Pick, retry", func() { tr.Pick(fleet, port, retry) })
	check("Start+Done", func() { tr.Start(ap(fleet[5])).Done(Success) })
	for i := range 4 { // the cap (5% of 40: 2) readmits 2 of them
		report(tr, ap(fleet[10+i]), ConnectFailure, 5)
	}
	check("Pick, 4 ejected over the cap", func() { tr.Pick(fleet, port, nil) })
	check("Pick, 4 ejected, retry", func() { tr.Pick(fleet, port, retry) })
	check("Healthy", func() { tr.Healthy(fleet, port) })
}
