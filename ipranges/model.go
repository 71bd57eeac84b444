package ipranges

import (
	"net/netip"
	"time"
)

// SchemaVersion is the document format this build reads and writes.
const SchemaVersion = 1

// MinNotice is the shortest notice period the contract may promise: 14 days.
const MinNotice = 14 * 24 * time.Hour

// RetainRetired is how long a retired prefix stays in the document, so pollers see it go.
const RetainRetired = 30 * 24 * time.Hour

// Direction is seen from the provider: ingress addresses are the ones customers connect to,
// egress the source addresses backends and partners see.
type Direction string

const (
	Ingress Direction = "ingress"
	Egress  Direction = "egress"
)

// Status is derived from a prefix's dates at a given time.
type Status string

const (
	// Announced: published, not yet enabled. Firewalls should open it; the proxy does not use it.
	Announced Status = "announced"
	// Active: enabled and not retired. The proxy may bind or dial from it.
	Active Status = "active"
	// Draining: a retirement date is set and has not passed; still in use until then.
	Draining Status = "draining"
	// Retired: past its retirement date; kept for RetainRetired so pollers see it go.
	Retired Status = "retired"
)

// Prefix is one published address range. Field names follow the published contract fixedgate is
// modelled on; times are RFC 3339 UTC.
type Prefix struct {
	CIDR      netip.Prefix `json:"cidr"`
	Class     string       `json:"class"` // ipv4 or ipv6, from CIDR
	Direction Direction    `json:"direction"`
	Service   string       `json:"service"`
	Facility  string       `json:"facility"`
	Published time.Time    `json:"published"`
	Enabled   time.Time    `json:"enabled"`
	Retired   *time.Time   `json:"retired"`
}

// Status returns the prefix's status at now. A passed retirement date wins over everything else,
// so an announcement withdrawn before its enabled date (retired < enabled) goes from announced
// straight to retired and is never active.
func (p *Prefix) Status(now time.Time) Status {
	switch {
	case p.Retired != nil && !now.Before(*p.Retired):
		return Retired
	case now.Before(p.Enabled):
		return Announced
	case p.Retired == nil:
		return Active
	}
	return Draining
}

// InUse reports whether the proxy may bind or dial from the prefix at now (active or draining).
func (p *Prefix) InUse(now time.Time) bool {
	s := p.Status(now)
	return s == Active || s == Draining
}

// Change is one changelog entry: what the operator did, and when.
type Change struct {
	SyncToken string    `json:"sync_token"`
	At        time.Time `json:"at"`
	Action    string    `json:"action"` // init, announce, retire, prune
	CIDR      string    `json:"cidr"`
	Direction Direction `json:"direction,omitempty"`
	Note      string    `json:"note,omitempty"`
}

// Document is the whole contract, as stored and (with status added per prefix) as served.
type Document struct {
	SchemaVersion int       `json:"schema_version"`
	SyncToken     string    `json:"sync_token"` // milliseconds since the epoch of the last change; only grows
	CreatedAt     time.Time `json:"created_at"`
	NoticeDays    int       `json:"notice_days"`
	Prefixes      []Prefix  `json:"prefixes"`
	Changelog     []Change  `json:"changelog"`
}

// InUse reports whether addr may be used in direction dir at now: it lies in a prefix of that
// direction that is active or draining.
func (d *Document) InUse(addr netip.Addr, dir Direction, now time.Time) bool {
	addr = addr.Unmap()
	for i := range d.Prefixes {
		p := &d.Prefixes[i]
		if p.Direction == dir && p.CIDR.Contains(addr) && p.InUse(now) {
			return true
		}
	}
	return false
}

// Lookup returns the prefix of direction dir that contains addr, or nil.
func (d *Document) Lookup(addr netip.Addr, dir Direction) *Prefix {
	addr = addr.Unmap()
	for i := range d.Prefixes {
		p := &d.Prefixes[i]
		if p.Direction == dir && p.CIDR.Contains(addr) {
			return p
		}
	}
	return nil
}

// NextTransition returns the earliest enabled or retired time after now: when some prefix's
// status changes next (the proxy re-evaluates then; the handler re-renders). ok is false when
// no change is scheduled.
func (d *Document) NextTransition(now time.Time) (t time.Time, ok bool) {
	consider := func(c time.Time) {
		if c.After(now) && (!ok || c.Before(t)) {
			t, ok = c, true
		}
	}
	for i := range d.Prefixes {
		p := &d.Prefixes[i]
		consider(p.Enabled)
		if p.Retired != nil {
			consider(*p.Retired)
		}
	}
	return t, ok
}
