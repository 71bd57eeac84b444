package health

import (
	"time"

	"go.uber.org/zap"
)

// policy is the outlier configuration in force and what derives from it. A value is immutable
// once published; each operation (an outcome, a Pick, a sweep) loads it once, so that it sees one
// consistent set while SetConfig swaps it.
type policy struct {
	OutlierConfig
	base, max, flap int64 // nanoseconds
	maxN            int64 // multiplier at which max_ejection is reached; n never grows past it
	keep            int64 // idle time after which an entry is forgotten
	sweepEvery      int64
	windowMask      uint64 // the low FailureRateWindow bits
}

// newPolicy derives the policy for a valid o.
func newPolicy(o OutlierConfig) *policy {
	p := &policy{
		OutlierConfig: o,
		base:          int64(o.BaseEjection),
		max:           int64(o.MaxEjection),
		flap:          int64(o.FlapWindow),
	}
	p.maxN = (p.max + p.base - 1) / p.base
	p.keep = max(p.max, p.flap)
	p.sweepEvery = min(p.keep, int64(time.Minute))
	p.windowMask = 1<<o.FailureRateWindow - 1
	if o.FailureRateWindow == 64 {
		p.windowMask = ^uint64(0)
	}
	return p
}

// SetConfig applies a new `health:` section to the running tracker, for a configuration reload.
// An invalid cfg is refused with Validate's error (relative to `health:`, like Validate's) and
// changes nothing; the zero Config means Defaults(), as for New.
//
// Every backend keeps its state. An ejection in progress keeps its end. Counters keep counting,
// and the new thresholds and failure rate apply from each backend's next attempt; a smaller
// failure_rate_window keeps the newest attempts of the old window. The ejection multiplier is
// capped by the new max_ejection at the next ejection, and the new durations apply from then on.
//
// When nothing differs it does nothing; otherwise it logs the changed settings. It is safe to
// call concurrently with everything else, including itself.
func (t *Tracker) SetConfig(cfg Config) error {
	if cfg == (Config{}) {
		cfg = Defaults()
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	t.setMu.Lock()
	defer t.setMu.Unlock()
	old := t.policy.Load()
	changed := old.OutlierConfig.changes(cfg.Outlier)
	if len(changed) == 0 {
		return nil
	}
	t.policy.Store(newPolicy(cfg.Outlier))
	t.log.Info("health settings changed", changed...)
	return nil
}

// changes lists, as log fields holding the new values, what differs from o in n.
func (o OutlierConfig) changes(n OutlierConfig) []zap.Field {
	var f []zap.Field
	ints := func(key string, old, cur int) {
		if old != cur {
			f = append(f, zap.Int("outlier."+key, cur))
		}
	}
	durations := func(key string, old, cur time.Duration) {
		if old != cur {
			f = append(f, zap.Duration("outlier."+key, cur))
		}
	}
	ints("consecutive_failures", o.ConsecutiveFailures, n.ConsecutiveFailures)
	ints("consecutive_5xx", o.Consecutive5xx, n.Consecutive5xx)
	ints("failure_rate_percent", o.FailureRatePercent, n.FailureRatePercent)
	ints("failure_rate_window", o.FailureRateWindow, n.FailureRateWindow)
	ints("failure_rate_min_requests", o.FailureRateMinRequests, n.FailureRateMinRequests)
	durations("base_ejection", o.BaseEjection, n.BaseEjection)
	durations("max_ejection", o.MaxEjection, n.MaxEjection)
	ints("max_ejected_percent", o.MaxEjectedPercent, n.MaxEjectedPercent)
	durations("flap_window", o.FlapWindow, n.FlapWindow)
	ints("probation_successes", o.ProbationSuccesses, n.ProbationSuccesses)
	return f
}
