package health

import (
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestSetConfigThresholds(t *testing.T) {
	const S, F, X = Success, Reset, Status5xx
	tests := []struct {
		name          string
		before, after func(*OutlierConfig)
		prefix        []Outcome // reported before the change; must not eject
		seq           []Outcome // reported after it
		at            int       // the attempt of seq (from 1) that ejects; 0 none
		reason        string
	}{
		{"consecutive_failures 5 -> 2", nil, func(o *OutlierConfig) { o.ConsecutiveFailures = 2 },
			nil, repeat(F, 5), 2, "consecutive"},
		{"consecutive_failures 5 -> 2: the run so far counts", nil, func(o *OutlierConfig) { o.ConsecutiveFailures = 2 },
			[]Outcome{F}, repeat(F, 5), 1, "consecutive"},
		{"consecutive_failures 2 -> 5", func(o *OutlierConfig) { o.ConsecutiveFailures = 2 }, func(o *OutlierConfig) { o.ConsecutiveFailures = 5 },
			[]Outcome{F}, repeat(F, 5), 4, "consecutive"},
		{"consecutive_failures 5 -> off", func(o *OutlierConfig) { o.FailureRatePercent = 0 }, func(o *OutlierConfig) { o.ConsecutiveFailures = 0 },
			repeat(F, 4), repeat(F, 50), 0, ""},
		{"consecutive_5xx off -> 3", nil, func(o *OutlierConfig) { o.Consecutive5xx = 3 },
			repeat(X, 10), repeat(X, 5), 3, "5xx"},
		{"failure_rate_percent 30 -> off", nil, func(o *OutlierConfig) { o.FailureRatePercent = 0 },
			nil, cat(repeat(S, 2), []Outcome{F}, repeat(S, 2), []Outcome{F}, repeat(S, 2), []Outcome{F}, repeat(S, 2), []Outcome{F}), 0, ""},
		{"failure_rate_percent 30 -> 10", nil, func(o *OutlierConfig) { o.FailureRatePercent = 10 },
			cat([]Outcome{F}, repeat(S, 8)), []Outcome{S}, 0, ""}, // 1 in 10: the 10% is reached at the next failure
		{"failure_rate_percent 30 -> 10, a failure", nil, func(o *OutlierConfig) { o.FailureRatePercent = 10 },
			cat([]Outcome{F}, repeat(S, 8)), []Outcome{F}, 1, "failure_rate"},
		// 4 failures then 16 successes fill the window of 20 (20%). Shrunk to 5, the window keeps
		// its newest 5 (all successes): one more success must not eject, two failures then do (40%).
		{"failure_rate_window 20 -> 5 keeps the newest", nil, func(o *OutlierConfig) { o.FailureRateWindow, o.FailureRateMinRequests = 5, 5 },
			cat(repeat(F, 4), repeat(S, 16)), []Outcome{S, F, F}, 3, "failure_rate"},
		// One failure in a window of 5; grown to 20 (10 needed), the window keeps it: 4 of 13.
		{"failure_rate_window 5 -> 20 keeps the old", func(o *OutlierConfig) { o.FailureRateWindow, o.FailureRateMinRequests = 5, 5 },
			func(o *OutlierConfig) { o.FailureRateWindow, o.FailureRateMinRequests = 20, 10 },
			cat([]Outcome{F}, repeat(S, 4)), cat(repeat(S, 5), repeat(F, 3)), 8, "failure_rate"},
		{"failure_rate_min_requests 10 -> 3", nil, func(o *OutlierConfig) { o.FailureRateMinRequests = 3 },
			[]Outcome{S}, []Outcome{F}, 0, ""}, // 1 of 2: too few samples yet
		{"failure_rate_min_requests 10 -> 3, enough", nil, func(o *OutlierConfig) { o.FailureRateMinRequests = 3 },
			[]Outcome{S, S}, []Outcome{F}, 1, "failure_rate"}, // 1 of 3
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, _ := newTracker(t, tt.before)
			addr := ap(fleetOf(1)[0])
			for _, o := range tt.prefix {
				report(tr, addr, o, 1)
			}
			if e, ej := ejectedEntry(tr, addr); ej {
				t.Fatalf("ejected before the change: %+v", e)
			}
			cfg := Config{Outlier: tr.policy.Load().OutlierConfig}
			tt.after(&cfg.Outlier)
			if err := tr.SetConfig(cfg); err != nil {
				t.Fatal(err)
			}
			for k, o := range tt.seq {
				report(tr, addr, o, 1)
				if e, ej := ejectedEntry(tr, addr); ej {
					if k+1 != tt.at || e.Reason != tt.reason {
						t.Fatalf("ejected after %d attempts, reason %s; want after %d, %q", k+1, e.Reason, tt.at, tt.reason)
					}
					return
				}
			}
			if tt.at != 0 {
				t.Fatalf("not ejected after %d attempts; want after %d", len(tt.seq), tt.at)
			}
		})
	}
}

func TestSetConfigKeepsEjections(t *testing.T) {
	tr, c := newTracker(t, nil)
	addr := ap(fleetOf(1)[0])
	report(tr, addr, Reset, 5)
	for range 2 {
		ejectAgain(t, tr, c, addr)
	}
	e, _ := ejectedEntry(tr, addr)
	if e.Count != 3 || e.Until.Sub(c.Now()) != 90*time.Second {
		t.Fatalf("third ejection %+v lasts %s; want count 3, 90s", e, e.Until.Sub(c.Now()))
	}

	cfg := Defaults()
	cfg.Outlier.BaseEjection, cfg.Outlier.MaxEjection = 10*time.Second, 20*time.Second
	if err := tr.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if e2, ej := ejectedEntry(tr, addr); !ej || e2 != e {
		t.Fatalf("after the change: %+v, %v; want the ejection unchanged, %+v", e2, ej, e)
	}
	c.Set(e.Until.Add(-time.Nanosecond))
	if tr.Healthy([]netip.Addr{addr.Addr()}, port) != 0 {
		t.Fatal("healthy before its ejection's end")
	}
	// At the end it returns on probation; one failure ejects it again, now for the new
	// durations: the multiplier 4 is capped at 2 (max_ejection / base_ejection).
	d, e2 := ejectAgain(t, tr, c, addr)
	if e2.Count != 2 || d != 20*time.Second {
		t.Errorf("next ejection %+v lasts %s; want count 2, 20s", e2, d)
	}
}

func TestSetConfigMaxEjectedPercent(t *testing.T) {
	tr, _ := newTracker(t, nil)
	fleet := fleetOf(2)
	report(tr, ap(fleet[0]), ConnectFailure, 5)
	busy := tr.Start(ap(fleet[1])) // so that P2C prefers fleet[0] whenever it may use it
	defer busy.Done(Success)
	for range 20 {
		if got, _ := tr.Pick(fleet, port, nil); got != ap(fleet[1]) {
			t.Fatalf("Pick = %s with max_ejected_percent 50; want the healthy %s", got, fleet[1])
		}
	}
	cfg := Defaults()
	cfg.Outlier.MaxEjectedPercent = 0
	if err := tr.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if got, _ := tr.Pick(fleet, port, nil); got != ap(fleet[0]) {
			t.Fatalf("Pick = %s with max_ejected_percent 0; want the idle ejected %s", got, fleet[0])
		}
	}
}

func TestSetConfigRefusesInvalidAndLogsChanges(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	c := newClock()
	tr := New(Defaults(), Options{Now: c.Now, Logger: zap.New(core)})
	first := tr.policy.Load()
	for _, mod := range []func(*OutlierConfig){
		func(o *OutlierConfig) { o.ConsecutiveFailures = -1 },
		func(o *OutlierConfig) { o.FailureRateWindow = 65 },
		func(o *OutlierConfig) { o.FailureRateMinRequests = 21 },
		func(o *OutlierConfig) { o.MaxEjection = time.Second },
		func(o *OutlierConfig) { o.ProbationSuccesses = 0 },
		func(o *OutlierConfig) { o.MaxEjectedPercent = 120 },
	} {
		cfg := Defaults()
		cfg.Outlier.ConsecutiveFailures = 2 // a valid change alongside the invalid one
		mod(&cfg.Outlier)
		want := cfg.Validate()
		if err := tr.SetConfig(cfg); err == nil || err.Error() != want.Error() {
			t.Errorf("SetConfig(%+v) = %v; want %v", cfg.Outlier, err, want)
		}
		if tr.policy.Load() != first {
			t.Errorf("refused %+v: the settings changed", cfg.Outlier)
		}
	}
	if err := tr.SetConfig(Defaults()); err != nil || tr.policy.Load() != first {
		t.Errorf("the same section: %v, settings replaced %v", err, tr.policy.Load() != first)
	}
	if err := tr.SetConfig(Config{}); err != nil || tr.policy.Load() != first {
		t.Errorf("the zero Config (the defaults): %v, settings replaced %v", err, tr.policy.Load() != first)
	}
	if logs.Len() != 0 {
		t.Errorf("logs without a change: %v", logs.All())
	}

	cfg := Defaults()
	cfg.Outlier.ConsecutiveFailures, cfg.Outlier.FlapWindow = 2, time.Minute
	if err := tr.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	info := logs.FilterMessage("health settings changed").AllUntimed()
	if len(info) != 1 {
		t.Fatalf("%d change logs; want 1", len(info))
	}
	if f := info[0].ContextMap(); len(f) != 2 || f["outlier.consecutive_failures"] != int64(2) || f["outlier.flap_window"] != time.Minute {
		t.Errorf("change log fields %v; want consecutive_failures 2 and flap_window 1m only", f)
	}
	if got := tr.policy.Load(); got.OutlierConfig != cfg.Outlier || got.keep != int64(10*time.Minute) {
		t.Errorf("policy %+v; want %+v, kept for max(max_ejection, flap_window) = 10m", got.OutlierConfig, cfg.Outlier)
	}
}

// TestSetConfigConcurrent is for the race detector: the whole API while SetConfig swaps between
// sections that differ in every setting. Each backend's failure-rate window must stay
// consistent with its sample count throughout.
func TestSetConfigConcurrent(t *testing.T) {
	a, b := Defaults(), Defaults()
	a.Outlier.BaseEjection, a.Outlier.MaxEjection, a.Outlier.FlapWindow = time.Second, time.Second, time.Second
	b.Outlier = OutlierConfig{ConsecutiveFailures: 2, Consecutive5xx: 3, FailureRatePercent: 50, FailureRateWindow: 4,
		FailureRateMinRequests: 2, BaseEjection: 100 * time.Millisecond, MaxEjection: 2 * time.Second,
		MaxEjectedPercent: 10, FlapWindow: 500 * time.Millisecond, ProbationSuccesses: 1}
	c := newClock()
	tr := New(a, Options{Now: c.Now})
	fleet := fleetOf(40)
	var done atomic.Bool
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			var tried []netip.AddrPort
			for i := 0; i < 2000 || !done.Load(); i++ {
				addr, ok := tr.Pick(fleet, port, tried)
				if !ok {
					t.Error("Pick found nothing")
					return
				}
				o := Success // mostly, so that failure-rate windows fill between ejections
				if rng.IntN(4) == 0 {
					o = Outcome(rng.IntN(int(Canceled) + 1))
				}
				tr.Start(addr).Done(o)
				if tried = append(tried, addr); len(tried) > 2 || o == Success {
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
	wg.Go(func() {
		defer done.Store(true)
		for i := range 300 {
			cfg := a
			if i%2 == 0 {
				cfg = b
			}
			if err := tr.SetConfig(cfg); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Wait()
	tr.mu.RLock()
	defer tr.mu.RUnlock()
	for addr, be := range tr.backends {
		if n := be.inflight.Load(); n != 0 {
			t.Errorf("%s has %d in flight after everything finished", addr, n)
		}
		be.mu.Lock()
		if bits.Len64(be.window) > be.samples || be.samples > 20 {
			t.Errorf("%s: window %b holds more than its %d samples", addr, be.window, be.samples)
		}
		be.mu.Unlock()
	}
}
