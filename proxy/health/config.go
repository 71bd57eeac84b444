package health

import (
	"fmt"
	"time"
)

// Config is the `health:` section of the configuration.
type Config struct {
	Outlier OutlierConfig `yaml:"outlier"`
}

// OutlierConfig tunes passive outlier detection. The caller decodes YAML over Defaults(), so a
// zero in a field means the operator wrote 0; for the three detectors that means "off".
type OutlierConfig struct {
	// ConsecutiveFailures ejects after this many connection-level failures (connect, TLS,
	// reset before a response, timeout) in a row. 0 turns the criterion off.
	ConsecutiveFailures int `yaml:"consecutive_failures"`
	// Consecutive5xx ejects after this many 5xx responses in a row. 0 (the default) means 5xx
	// responses are the application's business and count as successes.
	Consecutive5xx int `yaml:"consecutive_5xx"`
	// FailureRatePercent ejects when at least this share of the last FailureRateWindow attempts
	// failed, once FailureRateMinRequests have been seen. It catches a flapping link, which
	// never fails enough times in a row for ConsecutiveFailures. 0 turns the criterion off.
	FailureRatePercent     int `yaml:"failure_rate_percent"`
	FailureRateWindow      int `yaml:"failure_rate_window"`       // attempts remembered, 1..64
	FailureRateMinRequests int `yaml:"failure_rate_min_requests"` // samples needed before the rate counts

	BaseEjection time.Duration `yaml:"base_ejection"` // first ejection; the n-th within flap_window lasts n×base
	MaxEjection  time.Duration `yaml:"max_ejection"`  // cap on one ejection
	// MaxEjectedPercent caps the share of a fleet that Pick will avoid; beyond it the least
	// recently failed ejected backends are used again.
	MaxEjectedPercent int `yaml:"max_ejected_percent"`
	// FlapWindow: an ejection that starts within this time of the previous one's end multiplies;
	// each whole window without one halves the multiplier.
	FlapWindow time.Duration `yaml:"flap_window"`
	// ProbationSuccesses is how many successes a returning backend needs before it is trusted
	// again; until then a single failure ejects it again, for longer.
	ProbationSuccesses int `yaml:"probation_successes"`
}

// Defaults returns the documented defaults.
func Defaults() Config {
	return Config{Outlier: OutlierConfig{
		ConsecutiveFailures:    5,
		Consecutive5xx:         0,
		FailureRatePercent:     30,
		FailureRateWindow:      20,
		FailureRateMinRequests: 10,
		BaseEjection:           30 * time.Second,
		MaxEjection:            10 * time.Minute,
		MaxEjectedPercent:      50,
		FlapWindow:             time.Hour,
		ProbationSuccesses:     5,
	}}
}

// Validate reports the first problem; messages are relative to `health:`.
func (c Config) Validate() error {
	o := c.Outlier
	nonNegative := func(key string, v int) error {
		if v < 0 {
			return fmt.Errorf("outlier.%s: %d is negative", key, v)
		}
		return nil
	}
	percent := func(key string, v int) error {
		if v < 0 || v > 100 {
			return fmt.Errorf("outlier.%s: %d is outside 0..100", key, v)
		}
		return nil
	}
	for _, err := range []error{
		nonNegative("consecutive_failures", o.ConsecutiveFailures),
		nonNegative("consecutive_5xx", o.Consecutive5xx),
		percent("failure_rate_percent", o.FailureRatePercent),
	} {
		if err != nil {
			return err
		}
	}
	switch {
	case o.FailureRateWindow < 1 || o.FailureRateWindow > 64:
		return fmt.Errorf("outlier.failure_rate_window: %d is outside 1..64", o.FailureRateWindow)
	case o.FailureRateMinRequests < 1 || o.FailureRateMinRequests > o.FailureRateWindow:
		return fmt.Errorf("outlier.failure_rate_min_requests: %d is outside 1..failure_rate_window (%d)",
			o.FailureRateMinRequests, o.FailureRateWindow)
	case o.BaseEjection <= 0:
		return fmt.Errorf("outlier.base_ejection: %s, must be positive", o.BaseEjection)
	case o.MaxEjection < o.BaseEjection:
		return fmt.Errorf("outlier.max_ejection: %s is below base_ejection %s", o.MaxEjection, o.BaseEjection)
	case o.FlapWindow <= 0:
		return fmt.Errorf("outlier.flap_window: %s, must be positive", o.FlapWindow)
	case o.ProbationSuccesses < 1:
		return fmt.Errorf("outlier.probation_successes: %d, must be at least 1", o.ProbationSuccesses)
	}
	return percent("max_ejected_percent", o.MaxEjectedPercent)
}
