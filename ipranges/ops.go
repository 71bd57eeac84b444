package ipranges

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"time"
)

// DefaultService is the service name of entries when none is given.
const DefaultService = "proxy"

// InitOptions are the settings of a new contract.
type InitOptions struct {
	Notice   time.Duration // the notice the contract promises; 0: MinNotice. Whole days, at least MinNotice.
	Facility string        // facility of the first set (e.g. a region); may be empty
	Service  string        // service of the first set; empty: DefaultService
}

// RetireOptions adjust Retire.
type RetireOptions struct {
	// Direction selects the entry when the same CIDR is listed as both ingress and egress.
	Direction Direction
	// Force allows retiring the last address of a direction that stays in service: without a
	// replacement enabled by the retirement date, the proxy would be unreachable (ingress) or
	// unable to dial out (egress).
	Force bool
}

// Init returns a new contract whose first set is active at once (published = enabled =
// created_at = now, truncated to whole seconds, UTC): nobody can depend on addresses nobody has
// seen yet, so the first set owes no notice. Every later addition does (Announce). It refuses an
// empty set, non-canonical CIDRs (suggesting the masked form) and overlapping prefixes of one
// direction. The changelog gets one "init" entry per prefix.
func Init(ingress, egress []netip.Prefix, opts InitOptions, now time.Time) (*Document, error) {
	notice := opts.Notice
	if notice == 0 {
		notice = MinNotice
	}
	if err := checkNotice(notice); err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	if len(ingress)+len(egress) == 0 {
		return nil, errors.New("init: no prefixes: a contract starts with at least one ingress or egress address")
	}
	service := opts.Service
	if service == "" {
		service = DefaultService
	}
	at := now.UTC().Truncate(time.Second)
	d := &Document{
		SchemaVersion: SchemaVersion,
		CreatedAt:     at,
		NoticeDays:    int(notice / (24 * time.Hour)),
		Prefixes:      make([]Prefix, 0, len(ingress)+len(egress)),
		Changelog:     make([]Change, 0, len(ingress)+len(egress)),
	}
	for _, set := range []struct {
		dir Direction
		ps  []netip.Prefix
	}{{Ingress, ingress}, {Egress, egress}} {
		for _, p := range set.ps {
			if err := checkCIDR(p); err != nil {
				return nil, fmt.Errorf("init: %s: %w", set.dir, err)
			}
			d.Prefixes = append(d.Prefixes, Prefix{
				CIDR: p, Class: classOf(p), Direction: set.dir, Service: service, Facility: opts.Facility,
				Published: at, Enabled: at,
			})
		}
	}
	if ov := findOverlaps(d.Prefixes); len(ov) > 0 {
		a, b := &d.Prefixes[ov[0].outer], &d.Prefixes[ov[0].inner]
		if a.CIDR == b.CIDR {
			return nil, fmt.Errorf("init: %s is given twice as %s", a.CIDR, a.Direction)
		}
		return nil, fmt.Errorf("init: %s overlaps %s (both %s): prefixes of one direction must not overlap", b.CIDR, a.CIDR, a.Direction)
	}
	for i := range d.Prefixes {
		p := &d.Prefixes[i]
		d.record(now, at, "init", p, "active at once (initial set)")
	}
	if err := d.Validate(0); err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	return d, nil
}

func checkNotice(notice time.Duration) error {
	if notice < MinNotice {
		return fmt.Errorf("notice %s is below the %s (%s) minimum the contract promises", shortDuration(notice), shortDuration(MinNotice), fmtDuration(MinNotice))
	}
	if notice%(24*time.Hour) != 0 {
		return fmt.Errorf("notice %s is not a whole number of days (the contract states notice_days)", shortDuration(notice))
	}
	return nil
}

// bump advances sync_token to max(previous+1, now in milliseconds), so it strictly grows even
// when the clock goes backwards, and returns it.
func (d *Document) bump(now time.Time) string {
	next := now.UnixMilli()
	if prev, err := ParseSyncToken(d.SyncToken); err == nil && next <= prev {
		next = prev + 1
	}
	d.SyncToken = strconv.FormatInt(next, 10)
	return d.SyncToken
}

// record appends one changelog entry for p with a fresh sync_token.
func (d *Document) record(now, at time.Time, action string, p *Prefix, note string) {
	d.Changelog = append(d.Changelog, Change{
		SyncToken: d.bump(now), At: at, Action: action, CIDR: p.CIDR.String(), Direction: p.Direction, Note: note,
	})
}

// opTime is the time an operation records: now in whole seconds, UTC, but never before the
// second of the document's last change. A clock that stepped back therefore cannot backdate an
// announcement (CheckSuccessor's backdating rule) or a changelog entry past an earlier one.
func (d *Document) opTime(now time.Time) time.Time {
	t := now.UTC().Truncate(time.Second)
	if ms, err := ParseSyncToken(d.SyncToken); err == nil {
		if floor := tokenTime(ms).Truncate(time.Second); t.Before(floor) {
			t = floor
		}
	}
	return t
}

// ceilSecond rounds t up to a whole second, so that rounding never shortens a notice.
func ceilSecond(t time.Time) time.Time {
	if r := t.Truncate(time.Second); !r.Equal(t) {
		return r.Add(time.Second)
	}
	return t
}

// Announce adds p in direction dir: published now, enabled notice later (notice 0: the
// document's notice; less than the document's notice is refused). The proxy may use it from
// enabled on, not before. It refuses a non-canonical CIDR and any overlap with a listed prefix
// of that direction — announced, active, draining, or retired but still listed (such an address
// can be announced again once Prune has dropped it, RetainRetired after its retirement).
// service empty: DefaultService.
func (d *Document) Announce(p netip.Prefix, dir Direction, notice time.Duration, facility, service string, now time.Time) error {
	if err := checkCIDR(p); err != nil {
		return fmt.Errorf("announce: %w", err)
	}
	if !validDirection(dir) {
		return fmt.Errorf("announce %s: direction %q is not ingress or egress", p, dir)
	}
	if notice == 0 {
		notice = d.Notice()
	}
	if min := d.ruleNotice(); notice < min {
		return fmt.Errorf("announce %s: notice %s is below the %s (%s) minimum the contract promises", p, shortDuration(notice), shortDuration(min), fmtDuration(min))
	}
	for i := range d.Prefixes {
		q := &d.Prefixes[i]
		if q.Direction != dir || !q.CIDR.Overlaps(p) {
			continue
		}
		what := fmt.Sprintf("%s is already listed as %s", q.CIDR, dir)
		if q.CIDR != p {
			what = fmt.Sprintf("%s overlaps %s, listed as %s", p, q.CIDR, dir)
		}
		switch st := q.Status(now); st {
		case Retired, Draining:
			return fmt.Errorf("announce %s: %s (%s, retired %s); it can be announced again after %s, when it is pruned from the contract",
				p, what, st, fmtTime(*q.Retired), fmtTime(q.Retired.Add(RetainRetired)))
		default:
			return fmt.Errorf("announce %s: %s (%s, enabled %s)", p, what, st, fmtTime(q.Enabled))
		}
	}
	if service == "" {
		service = DefaultService
	}
	at := d.opTime(now)
	d.Prefixes = append(d.Prefixes, Prefix{
		CIDR: p, Class: classOf(p), Direction: dir, Service: service, Facility: facility,
		Published: at, Enabled: ceilSecond(at.Add(notice)),
	})
	np := &d.Prefixes[len(d.Prefixes)-1]
	d.record(now, at, "announce", np, "enabled "+fmtTime(np.Enabled))
	return nil
}

// Retire schedules p's retirement after the given delay: retired = now + after (whole seconds).
// Until then an in-use prefix is draining (still used, taking its leave); from then on it is
// retired and no longer used, and it stays listed for RetainRetired so pollers see it go.
// Retiring a prefix that is still announced withdraws the announcement: with a retirement
// before its enabled date it is never used. Any after >= 0 is allowed: removing an address
// breaks nobody's allow-list, and the CLI defaults it to the notice (0 for a withdrawal) so
// customers have time to stop sending to it.
//
// Refused: an unknown prefix, one already retiring or retired, a CIDR listed in both directions
// without opts.Direction, and (without opts.Force) retiring the last address of a direction:
// one that is or will be in use while no other address of that direction, not itself retiring,
// is enabled by the retirement date.
func (d *Document) Retire(p netip.Prefix, after time.Duration, opts RetireOptions, now time.Time) error {
	if after < 0 {
		return fmt.Errorf("retire %s: after %s is negative", p, shortDuration(after))
	}
	var matches []int
	for i := range d.Prefixes {
		q := &d.Prefixes[i]
		if q.CIDR == p && (opts.Direction == "" || q.Direction == opts.Direction) {
			matches = append(matches, i)
		}
	}
	switch len(matches) {
	case 0:
		for i := range d.Prefixes {
			if q := &d.Prefixes[i]; q.CIDR.Overlaps(p) && (opts.Direction == "" || q.Direction == opts.Direction) {
				return fmt.Errorf("retire %s: not in the contract; it overlaps %s (%s): retire entries as listed", p, q.CIDR, q.Direction)
			}
		}
		if opts.Direction != "" {
			return fmt.Errorf("retire %s: not in the contract as %s", p, opts.Direction)
		}
		return fmt.Errorf("retire %s: not in the contract", p)
	case 1:
	default:
		return fmt.Errorf("retire %s: listed as both ingress and egress; say which (direction)", p)
	}
	q := &d.Prefixes[matches[0]]
	if q.Retired != nil {
		if st := q.Status(now); st == Retired {
			return fmt.Errorf("retire %s: already retired at %s; it leaves the contract after %s", p, fmtTime(*q.Retired), fmtTime(q.Retired.Add(RetainRetired)))
		}
		return fmt.Errorf("retire %s: already draining; it retires at %s", p, fmtTime(*q.Retired))
	}
	at := d.opTime(now)
	retired := ceilSecond(at.Add(after))
	if retired.Before(q.Published) {
		retired = q.Published
	}
	if from := later(retired, q.Enabled); !opts.Force && !d.covered(q, from) {
		return fmt.Errorf("retire %s: it is the last %s address in service: no other %s address would be in use from %s, so the proxy would be %s; announce a replacement first (enabled by then), or force",
			p, q.Direction, q.Direction, fmtTime(from), map[Direction]string{Ingress: "unreachable", Egress: "unable to dial out"}[q.Direction])
	}
	note := "retired " + fmtTime(retired)
	if q.Status(now) == Announced && !q.Enabled.Before(retired) {
		note = "announcement withdrawn; never enabled"
	}
	q.Retired = &retired
	d.record(now, at, "retire", q, note)
	return nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// covered reports whether the other prefixes of q's direction keep that direction in use at
// every moment from on, as q (not retiring) did: the union of their in-use spans [enabled,
// retired) covers [from, forever). O(n log n), so a 10,000-prefix contract stays fast.
func (d *Document) covered(q *Prefix, from time.Time) bool {
	type span struct {
		from time.Time
		to   *time.Time // nil: forever
	}
	var spans []span
	for i := range d.Prefixes {
		r := &d.Prefixes[i]
		if r != q && r.Direction == q.Direction && (r.Retired == nil || r.Retired.After(from)) {
			spans = append(spans, span{r.Enabled, r.Retired})
		}
	}
	slices.SortFunc(spans, func(a, b span) int { return a.from.Compare(b.from) })
	t := from
	for _, s := range spans {
		if s.from.After(t) {
			return false // nothing in use at t
		}
		if s.to == nil {
			return true
		}
		if s.to.After(t) {
			t = *s.to
		}
	}
	return false
}

// Prune drops the prefixes retired at least RetainRetired before now, with a "prune" changelog
// entry each, and returns how many it dropped. Every Update prunes.
func (d *Document) Prune(now time.Time) int {
	at := d.opTime(now)
	kept := d.Prefixes[:0:0]
	var dropped []Prefix
	for _, p := range d.Prefixes {
		if p.Retired != nil && !now.Before(p.Retired.Add(RetainRetired)) {
			dropped = append(dropped, p)
			continue
		}
		kept = append(kept, p)
	}
	if len(dropped) == 0 {
		return 0
	}
	d.Prefixes = kept
	for i := range dropped {
		d.record(now, at, "prune", &dropped[i], "retired "+fmtTime(*dropped[i].Retired))
	}
	return len(dropped)
}

// Clone returns a deep copy of d.
func (d *Document) Clone() *Document {
	c := *d
	c.Prefixes = make([]Prefix, len(d.Prefixes))
	copy(c.Prefixes, d.Prefixes)
	for i := range c.Prefixes {
		if r := c.Prefixes[i].Retired; r != nil {
			t := *r
			c.Prefixes[i].Retired = &t
		}
	}
	c.Changelog = make([]Change, len(d.Changelog))
	copy(c.Changelog, d.Changelog)
	return &c
}
