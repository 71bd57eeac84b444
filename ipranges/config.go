package ipranges

import (
	"errors"
	"fmt"
	"time"
)

// Config is the `ipranges:` section of fixedgate's YAML config. This package owns it;
// cmd/fixedgate only composes it into the whole file.
type Config struct {
	// State is the path of the state file, the contract as served. Empty: no contract, which
	// only loopback development setups may run without.
	State string `yaml:"state"`
	// Notice is the notice period the contract promises (notice_days in the document): an
	// address added after init is enabled no earlier than this long after it is published.
	// Default 336h (14 days); shorter is refused, and it must be a whole number of days.
	Notice time.Duration `yaml:"notice"`
	// SigningKey is an ed25519 private key file (PEM, PKCS#8). Set: /ip-ranges.json.sig is
	// served, a detached signature over the exact bytes of /ip-ranges.json.
	SigningKey string `yaml:"signing_key"`
	// MaxAge is the Cache-Control max-age of the served views. Default 5m.
	MaxAge time.Duration `yaml:"max_age"`
}

// Defaults returns the section's defaults: 14 days' notice, 5 minutes max-age, no state file.
func Defaults() Config {
	return Config{Notice: MinNotice, MaxAge: 5 * time.Minute}
}

// Validate reports every problem; messages are relative to `ipranges:` (e.g. "notice: …").
// It reads no files: whether State and SigningKey exist and parse is checked when they are
// loaded.
func (c Config) Validate() error {
	var errs []error
	switch {
	case c.Notice < MinNotice:
		errs = append(errs, fmt.Errorf("notice: %s is below the %s (%s) minimum the contract promises",
			shortDuration(c.Notice), shortDuration(MinNotice), fmtDuration(MinNotice)))
	case c.Notice%(24*time.Hour) != 0:
		errs = append(errs, fmt.Errorf("notice: %s is not a whole number of days; the contract states its notice as notice_days (e.g. 336h for 14 days)", shortDuration(c.Notice)))
	}
	if c.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("max_age: %s is negative", shortDuration(c.MaxAge)))
	} else if c.MaxAge%time.Second != 0 {
		errs = append(errs, fmt.Errorf("max_age: %s is not a whole number of seconds (Cache-Control counts seconds)", shortDuration(c.MaxAge)))
	}
	if c.SigningKey != "" && c.State == "" {
		errs = append(errs, errors.New("signing_key: set, but state is empty: there is no contract to sign"))
	}
	return errors.Join(errs...)
}
