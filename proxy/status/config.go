package status

import (
	"fmt"
	"strings"
	"time"
)

// Config is the `status:` section of the configuration. The caller decodes YAML over
// Defaults(), so a zero in a field means the operator wrote 0.
type Config struct {
	// Public also serves /status, /status.json and /status.atom, redacted, on the public
	// listeners. The admin listener always serves the full view.
	Public bool `yaml:"public"`
	// UpdateInterval is how often an open incident must be updated: one whose last update is
	// older is overdue (on the page and in fixedgate_status_update_overdue). Default 30m.
	UpdateInterval time.Duration `yaml:"update_interval"`
}

// DefaultUpdateInterval is the promise to customers: an update at least every 30 minutes while
// an incident is open.
const DefaultUpdateInterval = 30 * time.Minute

// The bounds Validate enforces on update_interval.
const (
	MinUpdateInterval = time.Minute
	MaxUpdateInterval = 24 * time.Hour
)

// Defaults returns the section's defaults: not public, updates due every 30 minutes.
func Defaults() Config {
	return Config{UpdateInterval: DefaultUpdateInterval}
}

// Validate reports a problem with the section; messages are relative to `status:`.
func (c Config) Validate() error {
	switch {
	case c.UpdateInterval < MinUpdateInterval:
		return fmt.Errorf("update_interval: must be at least %s (got %s)", shortDuration(MinUpdateInterval), shortDuration(c.UpdateInterval))
	case c.UpdateInterval > MaxUpdateInterval:
		return fmt.Errorf("update_interval: must be at most %s (got %s): customers are promised regular updates", shortDuration(MaxUpdateInterval), shortDuration(c.UpdateInterval))
	}
	return nil
}

// interval is UpdateInterval, or the default when it is not set (a Config not decoded over
// Defaults).
func (c Config) interval() time.Duration {
	if c.UpdateInterval <= 0 {
		return DefaultUpdateInterval
	}
	return c.UpdateInterval
}

// shortDuration prints a duration without Go's trailing zero units: 30m, not 30m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
