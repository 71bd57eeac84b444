package status

import (
	"net/netip"
	"time"
)

// Source is what the page reports. The caller (cmd/fixedgate) adapts the probe runner, the proxy's
// routes and the ip-ranges contract to it; the handler calls the functions on every request, so
// they must be safe for concurrent use and cheap, and must not retain or modify what they
// return after returning it.
type Source struct {
	Probes   func() []ProbeStatus    // nil: no probes
	Routes   func() []RouteStatus    // nil: no routes
	Contract func() []ContractChange // nil: no contract (the page says nothing about one)
	Now      func() time.Time        // nil: time.Now
}

// ProbeStatus is one probe: a customer's path walked through the proxy's own listener.
type ProbeStatus struct {
	Name                string
	Up                  bool      // the last result succeeded
	Checked             time.Time // the last run; zero: not run yet
	LastFailure         time.Time // zero: never failed
	ConsecutiveFailures int       // failed results in a row, up to the last one
	LastError           string    // internal: admin view only
	Windows             [3]Window // the last 1h, 24h and 7d, in that order
	Hours               []Hour    // the last 24 hours, oldest first; Total 0 = no data that hour
}

// The windows of ProbeStatus.Windows, by index.
const (
	Window1h = iota
	Window24h
	Window7d
)

// windowNames are the JSON keys and page labels of ProbeStatus.Windows.
var windowNames = [3]string{"1h", "24h", "7d"}

// Window summarises a probe's results over a period. Total 0 means no data.
type Window struct {
	Total, Failures int
	P50, P99        time.Duration
}

// Hour is one hour of a probe's results, from Start. Total 0 means no data that hour.
type Hour struct {
	Start           time.Time
	Total, Failures int
	P50, P99        time.Duration
}

// RouteStatus is one gateway route and its backend fleet.
type RouteStatus struct {
	Host, PathPrefix, Upstream string
	Backends, Healthy, Ejected int             // known, healthy and ejected backends
	Addresses                  []BackendStatus // internal: admin view only
}

// BackendStatus is one backend of a fleet. Internal: admin view only.
type BackendStatus struct {
	Addr    netip.Addr
	Ejected bool
}

// ContractChange is an upcoming change of the ip-ranges contract: a prefix announced (At is when
// it goes live) or draining (At is when it is retired). Other statuses are not shown.
type ContractChange struct {
	CIDR      string
	Direction string // ingress or egress
	Status    string // announced or draining
	At        time.Time
}

// The ContractChange statuses the page shows.
const (
	ContractAnnounced = "announced"
	ContractDraining  = "draining"
)
