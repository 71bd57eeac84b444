package status

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // "" means valid
	}{
		{"defaults", Defaults(), ""},
		{"public", Config{Public: true, UpdateInterval: 15 * time.Minute}, ""},
		{"one minute", Config{UpdateInterval: time.Minute}, ""},
		{"one day", Config{UpdateInterval: 24 * time.Hour}, ""},
		{"zero", Config{}, "update_interval: must be at least 1m (got 0s)"},
		{"too short", Config{UpdateInterval: 30 * time.Second}, "update_interval: must be at least 1m (got 30s)"},
		{"negative", Config{UpdateInterval: -time.Hour}, "update_interval: must be at least 1m (got -1h)"},
		{"too long", Config{UpdateInterval: 25 * time.Hour}, "update_interval: must be at most 24h (got 25h)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v; want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.wantErr)):
				t.Fatalf("Validate() = %v; want an error starting with %q", err, tt.wantErr)
			}
		})
	}
	if d := Defaults(); d.Public || d.UpdateInterval != 30*time.Minute {
		t.Errorf("Defaults() = %+v; want not public, 30m", d)
	}
}
