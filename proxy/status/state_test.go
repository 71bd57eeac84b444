package status

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)

func TestDerive(t *testing.T) {
	now := t0
	up := ProbeStatus{Name: "up", Up: true, Checked: now.Add(-30 * time.Second)}
	openDegraded := &Incident{ID: "a", Updates: []Update{{At: now, State: Investigating, Impact: Degraded, Message: "m"}}}
	openOutage := &Incident{ID: "b", Updates: []Update{{At: now, State: Identified, Impact: Outage, Message: "m"}}}
	with := func(f func(p *ProbeStatus)) ProbeStatus {
		p := up
		f(&p)
		return p
	}
	tests := []struct {
		name   string
		probes []ProbeStatus
		open   *Incident
		want   State
	}{
		{"nothing at all", nil, nil, Operational},
		{"all up, never failed", []ProbeStatus{up, up}, nil, Operational},
		{"not run yet", []ProbeStatus{{Name: "new"}}, nil, Operational},
		{"failed 6 minutes ago, up since", []ProbeStatus{with(func(p *ProbeStatus) { p.LastFailure = now.Add(-6 * time.Minute) })}, nil, Operational},
		{"failed exactly 5 minutes ago", []ProbeStatus{with(func(p *ProbeStatus) { p.LastFailure = now.Add(-5 * time.Minute) })}, nil, Degraded},
		{"failed a minute ago, up since", []ProbeStatus{up, with(func(p *ProbeStatus) { p.LastFailure = now.Add(-time.Minute) })}, nil, Degraded},
		{"failure stamped after now (clock step)", []ProbeStatus{with(func(p *ProbeStatus) { p.LastFailure = now.Add(time.Minute) })}, nil, Degraded},
		{"down once, failure older than 5 minutes (slow probe)", []ProbeStatus{with(func(p *ProbeStatus) {
			p.Up, p.ConsecutiveFailures, p.LastFailure = false, 1, now.Add(-10*time.Minute)
		})}, nil, Degraded},
		{"two failures in a row", []ProbeStatus{with(func(p *ProbeStatus) {
			p.Up, p.ConsecutiveFailures, p.LastFailure = false, 2, now.Add(-time.Minute)
		})}, nil, Degraded},
		{"three failures in a row", []ProbeStatus{up, with(func(p *ProbeStatus) {
			p.Up, p.ConsecutiveFailures, p.LastFailure = false, 3, now.Add(-time.Minute)
		})}, nil, Outage},
		{"three failures in a row, long ago", []ProbeStatus{with(func(p *ProbeStatus) {
			p.Up, p.ConsecutiveFailures, p.LastFailure = false, 7, now.Add(-time.Hour)
		})}, nil, Outage},
		{"incident raises operational to degraded", []ProbeStatus{up}, openDegraded, Degraded},
		{"incident raises operational to outage", []ProbeStatus{up}, openOutage, Outage},
		{"incident raises degraded to outage", []ProbeStatus{with(func(p *ProbeStatus) { p.LastFailure = now })}, openOutage, Outage},
		{"incident never lowers an outage", []ProbeStatus{with(func(p *ProbeStatus) {
			p.Up, p.ConsecutiveFailures, p.LastFailure = false, 3, now
		})}, openDegraded, Outage},
		{"incident without impact counts as degraded", []ProbeStatus{up}, &Incident{ID: "c", Updates: []Update{{At: now, State: Monitoring, Message: "m"}}}, Degraded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Derive(tt.probes, tt.open, now); got != tt.want {
				t.Errorf("Derive() = %s; want %s", got, tt.want)
			}
		})
	}
}
