package status

import (
	"encoding/json"
	"io"
	"math"
	"time"
)

// The /status.json document; the package documentation lists its fields. Admin-only fields
// sit in embedded pointers that the public view leaves nil, so they are absent, not null.
type jsonStatus struct {
	State           State         `json:"state"`
	Probes          []jsonProbe   `json:"probes"`
	Routes          []jsonRoute   `json:"routes"`
	Contract        *jsonContract `json:"contract"` // null: no contract
	Incident        *jsonIncident `json:"incident"` // null: none open
	UpdateOverdue   bool          `json:"update_overdue"`
	GeneratedAt     string        `json:"generated_at"`
	UpdateIntervalS int64         `json:"update_interval_s"`
	IncidentsError  string        `json:"incidents_error,omitempty"`
}

type byWindow[T any] struct {
	H1  T `json:"1h"`
	H24 T `json:"24h"`
	D7  T `json:"7d"`
}

type jsonLatency struct {
	P50 *float64 `json:"p50"`
	P99 *float64 `json:"p99"`
}

type jsonProbe struct {
	Name           string                `json:"name"`
	Up             bool                  `json:"up"`
	Availability   byWindow[*float64]    `json:"availability"`
	LatencyMS      jsonLatency           `json:"latency_ms"`
	LatencyWindows byWindow[jsonLatency] `json:"latency_ms_windows"`
	Last24h        []jsonHour            `json:"last_24h"`
	*jsonProbeAdmin
}

type jsonProbeAdmin struct {
	Checked             *string `json:"checked"`      // null: not run yet
	LastFailure         *string `json:"last_failure"` // null: never failed
	ConsecutiveFailures int     `json:"consecutive_failures"`
	LastError           string  `json:"last_error"`
}

type jsonHour struct {
	Hour         string   `json:"hour"`
	Availability *float64 `json:"availability"`
	P50MS        *float64 `json:"p50_ms"`
	P99MS        *float64 `json:"p99_ms"`
}

type jsonRoute struct {
	Host       string `json:"host"`
	PathPrefix string `json:"path_prefix"`
	Upstream   string `json:"upstream,omitempty"` // admin view only
	Backends   int    `json:"backends"`
	Healthy    int    `json:"healthy"`
	Ejected    int    `json:"ejected"`
	*jsonRouteAdmin
}

type jsonRouteAdmin struct {
	Addresses []jsonAddress `json:"addresses"`
}

type jsonAddress struct {
	IP      string `json:"ip"`
	Ejected bool   `json:"ejected"`
}

type jsonContract struct {
	IPRanges string       `json:"ip_ranges"`
	Upcoming []jsonChange `json:"upcoming"`
}

type jsonChange struct {
	CIDR      string `json:"cidr"`
	Direction string `json:"direction"`
	Status    string `json:"status"`
	At        string `json:"at"`
}

type jsonIncident struct {
	ID        string       `json:"id"`
	State     string       `json:"state"`
	Impact    State        `json:"impact"`
	OpenedAt  string       `json:"opened_at"`
	UpdatedAt string       `json:"updated_at"`
	Updates   []jsonUpdate `json:"updates"` // newest first
}

type jsonUpdate struct {
	At      string `json:"at"`
	State   string `json:"state"`
	Impact  State  `json:"impact"`
	Message string `json:"message"`
}

func renderJSON(w io.Writer, s *snapshot) error {
	doc := jsonStatus{
		State:           s.state,
		GeneratedAt:     rfc3339(s.now),
		UpdateIntervalS: int64(s.interval / time.Second),
		UpdateOverdue:   s.overdue,
		Probes:          make([]jsonProbe, 0, len(s.probes)),
		Routes:          make([]jsonRoute, 0, len(s.routes)),
		IncidentsError:  s.storeErr,
	}
	if s.open != nil {
		doc.Incident = incidentJSON(s.open)
	}
	for i := range s.probes {
		doc.Probes = append(doc.Probes, probeJSON(&s.probes[i], s.public))
	}
	for _, r := range s.routes {
		jr := jsonRoute{Host: r.Host, PathPrefix: r.PathPrefix, Upstream: r.Upstream,
			Backends: r.Backends, Healthy: r.Healthy, Ejected: r.Ejected}
		if !s.public {
			jr.jsonRouteAdmin = &jsonRouteAdmin{Addresses: make([]jsonAddress, 0, len(r.Addresses))}
			for _, a := range r.Addresses {
				jr.Addresses = append(jr.Addresses, jsonAddress{IP: a.Addr.String(), Ejected: a.Ejected})
			}
		}
		doc.Routes = append(doc.Routes, jr)
	}
	if s.hasContract {
		doc.Contract = &jsonContract{IPRanges: "/ip-ranges.json", Upcoming: make([]jsonChange, 0, len(s.contract))}
		for _, c := range s.contract {
			doc.Contract.Upcoming = append(doc.Contract.Upcoming,
				jsonChange{CIDR: c.CIDR, Direction: c.Direction, Status: c.Status, At: rfc3339(c.At)})
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(&doc)
}

func probeJSON(p *ProbeStatus, public bool) jsonProbe {
	jp := jsonProbe{
		Name: p.Name,
		Up:   p.Up,
		Availability: byWindow[*float64]{
			H1:  availabilityJSON(p.Windows[Window1h].Total, p.Windows[Window1h].Failures),
			H24: availabilityJSON(p.Windows[Window24h].Total, p.Windows[Window24h].Failures),
			D7:  availabilityJSON(p.Windows[Window7d].Total, p.Windows[Window7d].Failures),
		},
		LatencyMS: latencyJSON(p.Windows[Window1h]),
		LatencyWindows: byWindow[jsonLatency]{
			H1:  latencyJSON(p.Windows[Window1h]),
			H24: latencyJSON(p.Windows[Window24h]),
			D7:  latencyJSON(p.Windows[Window7d]),
		},
		Last24h: make([]jsonHour, 0, 24),
	}
	for _, hr := range last24(p.Hours) {
		jh := jsonHour{Hour: rfc3339(hr.Start), Availability: availabilityJSON(hr.Total, hr.Failures)}
		if hr.Total > 0 {
			jh.P50MS, jh.P99MS = ms(hr.P50), ms(hr.P99)
		}
		jp.Last24h = append(jp.Last24h, jh)
	}
	if !public {
		jp.jsonProbeAdmin = &jsonProbeAdmin{
			Checked:             timeJSON(p.Checked),
			LastFailure:         timeJSON(p.LastFailure),
			ConsecutiveFailures: p.ConsecutiveFailures,
			LastError:           p.LastError,
		}
	}
	return jp
}

// last24 is at most the 24 latest hours.
func last24(hours []Hour) []Hour {
	if len(hours) > 24 {
		return hours[len(hours)-24:]
	}
	return hours
}

// availabilityJSON is the share of successes, rounded down to 6 decimals (so a window with a
// failure never shows 1), or nil without data.
func availabilityJSON(total, failures int) *float64 {
	a, ok := availability(total, failures)
	if !ok {
		return nil
	}
	a = math.Floor(a*1e6) / 1e6
	return &a
}

func latencyJSON(w Window) jsonLatency {
	if w.Total <= 0 {
		return jsonLatency{}
	}
	return jsonLatency{P50: ms(w.P50), P99: ms(w.P99)}
}

// ms is d in milliseconds, to the microsecond.
func ms(d time.Duration) *float64 {
	v := math.Round(float64(d)/float64(time.Microsecond)) / 1000
	return &v
}

func timeJSON(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := rfc3339(t)
	return &s
}

func incidentJSON(inc *Incident) *jsonIncident {
	ji := &jsonIncident{
		ID:        inc.ID,
		State:     string(inc.Latest().State),
		Impact:    inc.Impact(),
		OpenedAt:  rfc3339(inc.OpenedAt()),
		UpdatedAt: rfc3339(inc.UpdatedAt()),
		Updates:   make([]jsonUpdate, 0, len(inc.Updates)),
	}
	for i := len(inc.Updates) - 1; i >= 0; i-- {
		u := inc.Updates[i]
		ji.Updates = append(ji.Updates, jsonUpdate{At: rfc3339(u.At), State: string(u.State), Impact: u.Impact, Message: u.Message})
	}
	return ji
}
