package status

import "time"

// State is the overall state the page shows, and an incident's impact.
type State string

// The states, from best to worst. An incident's impact is Degraded or Outage.
const (
	Operational State = "operational"
	Degraded    State = "degraded"
	Outage      State = "outage"
)

// The probe results that make a state: a failure within RecentFailure degrades it, and
// OutageFailures failed results in a row are an outage.
const (
	RecentFailure  = 5 * time.Minute
	OutageFailures = 3
)

// rank orders states from best (0) to worst; unknown values rank as operational.
func (s State) rank() int {
	switch s {
	case Degraded:
		return 1
	case Outage:
		return 2
	}
	return 0
}

// worse returns the worse of s and t.
func (s State) worse(t State) State {
	if t.rank() > s.rank() {
		return t
	}
	return s
}

// Derive returns the state at now: outage when any probe's last OutageFailures results all
// failed; degraded when any probe failed within the last RecentFailure (LastFailure) or its last
// result failed (a probe that runs less often than every 5 minutes is still down); else
// operational. The open incident's impact (nil: none) raises it, never lowers it.
func Derive(probes []ProbeStatus, open *Incident, now time.Time) State {
	s := Operational
	for i := range probes {
		s = s.worse(probeState(&probes[i], now))
	}
	if open != nil {
		s = s.worse(open.Impact())
	}
	return s
}

func probeState(p *ProbeStatus, now time.Time) State {
	switch {
	case p.ConsecutiveFailures >= OutageFailures:
		return Outage
	case !p.LastFailure.IsZero() && now.Sub(p.LastFailure) <= RecentFailure:
		return Degraded // a LastFailure after now (a clock step) counts as recent
	case !p.Up && !p.Checked.IsZero():
		return Degraded
	}
	return Operational
}
