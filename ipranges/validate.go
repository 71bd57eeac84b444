package ipranges

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Notice returns the notice period the document promises (notice_days).
func (d *Document) Notice() time.Duration {
	return time.Duration(d.NoticeDays) * 24 * time.Hour
}

// ruleNotice is the notice the rules enforce: the document's, and never less than MinNotice
// (a document that states less is refused anyway, but its other entries are still checked).
func (d *Document) ruleNotice() time.Duration {
	return max(d.Notice(), MinNotice)
}

// ParseSyncToken reads a sync_token: a decimal count of Unix milliseconds (digits only, no sign,
// no leading zero, greater than zero). Tokens compare as these numbers, not as strings.
func ParseSyncToken(s string) (int64, error) {
	bad := func() (int64, error) {
		return 0, fmt.Errorf("%q is not a decimal count of Unix milliseconds (e.g. \"1763923200000\")", s)
	}
	if s == "" || len(s) > 19 || s[0] == '0' {
		return bad()
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return bad()
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return bad()
	}
	return n, nil
}

func tokenTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// checkCIDR enforces the canonical form of a prefix: valid, no zone, IPv4 not written as
// IPv4-mapped IPv6, no host bits set. The message suggests the form to write instead.
func checkCIDR(p netip.Prefix) error {
	if !p.IsValid() {
		return errors.New("not a valid CIDR prefix")
	}
	a := p.Addr()
	if a.Zone() != "" {
		return fmt.Errorf("%s has an IPv6 zone; zones are not allowed in the contract", p)
	}
	if a.Is4In6() {
		if p.Bits() >= 96 {
			return fmt.Errorf("%s is an IPv4-mapped IPv6 prefix; write it as %s", p, netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked())
		}
		return fmt.Errorf("%s is written in IPv4-mapped IPv6 form; write IPv4 prefixes as a.b.c.d/n", p)
	}
	if m := p.Masked(); m != p {
		return fmt.Errorf("%s is not canonical: host bits are set below the /%d; did you mean %s?", p, p.Bits(), m)
	}
	return nil
}

// classOf is the class the contract gives a prefix's family.
func classOf(p netip.Prefix) string {
	if p.Addr().Is4() {
		return "ipv4"
	}
	return "ipv6"
}

func validDirection(d Direction) bool { return d == Ingress || d == Egress }

var knownActions = []string{"init", "announce", "retire", "prune"}

// overlap is a pair of document indices whose prefixes of one direction overlap.
type overlap struct{ outer, inner int }

// findOverlaps returns every prefix contained in (or equal to) an earlier-sorted prefix of the same
// direction, in O(n log n): sorted by direction, address and length (shorter first), a prefix
// overlaps an earlier one exactly when it starts inside the one that reaches furthest so far,
// because CIDR blocks are either nested or disjoint. Invalid prefixes are skipped.
func findOverlaps(ps []Prefix) []overlap {
	idx := make([]int, 0, len(ps))
	for i := range ps {
		if ps[i].CIDR.IsValid() {
			idx = append(idx, i)
		}
	}
	slices.SortFunc(idx, func(a, b int) int {
		pa, pb := ps[a].CIDR.Masked(), ps[b].CIDR.Masked()
		return cmp.Or(cmp.Compare(ps[a].Direction, ps[b].Direction), pa.Addr().Compare(pb.Addr()),
			cmp.Compare(pa.Bits(), pb.Bits()), cmp.Compare(a, b))
	})
	var out []overlap
	best := -1
	for _, i := range idx {
		if best >= 0 && ps[best].Direction == ps[i].Direction &&
			ps[best].CIDR.Masked().Contains(ps[i].CIDR.Masked().Addr()) {
			out = append(out, overlap{outer: best, inner: i})
			continue
		}
		best = i
	}
	return out
}

// Validate checks every rule of the contract (see the package documentation) and reports all
// violations, each naming the entry (e.g. `prefixes[3] (203.0.113.11/32)`) and the rule.
// notice is the configured notice (ipranges.notice): the document's notice_days must equal it.
// notice 0 accepts the document's own notice_days (still at least 14 days); the CLI uses that
// when it is given no config.
func (d *Document) Validate(notice time.Duration) error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if d.SchemaVersion != SchemaVersion {
		add("schema_version: %d is not supported by this build (it reads %d)", d.SchemaVersion, SchemaVersion)
	}
	minDays := int(MinNotice / (24 * time.Hour))
	if d.NoticeDays < minDays {
		add("notice_days: %d is below the %d-day minimum the contract promises", d.NoticeDays, minDays)
	}
	if notice != 0 && notice != d.Notice() {
		add("notice_days: %d days does not match the configured notice %s (ipranges.notice); the document and the config must agree",
			d.NoticeDays, fmtDuration(notice))
	}
	rn := d.ruleNotice()
	tok, tokErr := ParseSyncToken(d.SyncToken)
	if tokErr != nil {
		add("sync_token: %v", tokErr)
	}
	switch {
	case d.CreatedAt.IsZero():
		add("created_at: missing")
	case tokErr == nil && d.CreatedAt.After(tokenTime(tok)):
		add("created_at: %s is after the time of sync_token %s (%s): the last change cannot precede the contract",
			fmtTime(d.CreatedAt), d.SyncToken, fmtTime(tokenTime(tok)))
	}
	for i := range d.Prefixes {
		p := &d.Prefixes[i]
		// The entry's name is formatted only when there is a problem to report: Validate runs
		// on every load of a contract that may list 10,000 prefixes.
		addp := func(format string, args ...any) {
			add("prefixes[%d] (%s): "+format, append([]any{i, p.CIDR}, args...)...)
		}
		if err := checkCIDR(p.CIDR); err != nil {
			addp("cidr: %v", err)
		} else if want := classOf(p.CIDR); p.Class != want {
			addp("class: %q does not match the address family (want %q)", p.Class, want)
		}
		if !validDirection(p.Direction) {
			addp("direction: %q is not ingress or egress", p.Direction)
		}
		if p.Service == "" {
			addp("service: empty (e.g. \"proxy\")")
		}
		switch {
		case p.Published.IsZero():
			addp("published: missing")
		case p.Enabled.IsZero():
			addp("enabled: missing")
		case p.Published.Before(d.CreatedAt):
			addp("published %s is before the contract's created_at %s: nothing is published before the contract exists",
				fmtTime(p.Published), fmtTime(d.CreatedAt))
		case p.Enabled.Before(p.Published):
			addp("enabled %s is before published %s: an address is published before it is enabled (published <= enabled)",
				fmtTime(p.Enabled), fmtTime(p.Published))
		case !d.initial(p) && p.Enabled.Before(p.Published.Add(rn)):
			addp("enabled %s is only %s after published %s: an entry added after init is enabled at least the notice (%s) after it is published (enabled >= published + notice)",
				fmtTime(p.Enabled), fmtDuration(p.Enabled.Sub(p.Published)), fmtTime(p.Published), fmtDuration(rn))
		}
		if p.Retired != nil && !p.Published.IsZero() && p.Retired.Before(p.Published) {
			addp("retired %s is before published %s: a retirement cannot precede the announcement (retired >= published)",
				fmtTime(*p.Retired), fmtTime(p.Published))
		}
	}
	for _, o := range findOverlaps(d.Prefixes) {
		a, b := min(o.outer, o.inner), max(o.outer, o.inner)
		pa, pb := &d.Prefixes[a], &d.Prefixes[b]
		if pa.CIDR == pb.CIDR {
			add("prefixes[%d] (%s): listed twice as %s (also prefixes[%d]): prefixes of one direction must not overlap", b, pb.CIDR, pb.Direction, a)
		} else {
			add("prefixes[%d] (%s): overlaps prefixes[%d] (%s), both %s: prefixes of one direction must not overlap", b, pb.CIDR, a, pa.CIDR, pb.Direction)
		}
	}
	var prev int64
	for i := range d.Changelog {
		c := &d.Changelog[i]
		addc := func(format string, args ...any) {
			name := fmt.Sprintf("changelog[%d]", i)
			if c.CIDR != "" {
				name += " (" + c.CIDR + ")"
			}
			add("%s: "+format, append([]any{name}, args...)...)
		}
		ct, err := ParseSyncToken(c.SyncToken)
		if err != nil {
			addc("sync_token: %v", err)
		} else {
			if i > 0 && prev != 0 && ct <= prev {
				addc("sync_token %s is not greater than changelog[%d]'s %d: changelog sync_tokens strictly increase", c.SyncToken, i-1, prev)
			}
			if tokErr == nil && ct > tok {
				addc("sync_token %s is greater than the document's sync_token %s: the document's token is its last change", c.SyncToken, d.SyncToken)
			}
			if c.At.After(tokenTime(ct)) {
				addc("at %s is after the time of its sync_token %s (%s)", fmtTime(c.At), c.SyncToken, fmtTime(tokenTime(ct)))
			}
		}
		prev = ct
		if c.At.IsZero() {
			addc("at: missing")
		}
		if !slices.Contains(knownActions, c.Action) {
			addc("action: %q is not one of %v", c.Action, knownActions)
		}
		if p, err := parseCIDR(c.CIDR); err != nil {
			addc("cidr: %v", err)
		} else if err := checkCIDR(p); err != nil {
			addc("cidr: %v", err)
		}
		if c.Direction != "" && !validDirection(c.Direction) {
			addc("direction: %q is not ingress or egress", c.Direction)
		}
	}
	return joinCapped(errs)
}

// initial reports whether p belongs to the initial set: published == enabled == created_at, which
// is how Init writes the first set (active at once: nobody can depend on it yet). Every other
// entry owes the notice. CheckSuccessor closes the obvious loophole: an entry added to an
// existing contract owes the notice even if it copies created_at into both dates.
func (d *Document) initial(p *Prefix) bool {
	return p.Published.Equal(d.CreatedAt) && p.Enabled.Equal(d.CreatedAt)
}

type prefixKey struct {
	dir  Direction
	cidr netip.Prefix
}

func keyOf(p *Prefix) prefixKey { return prefixKey{p.Direction, p.CIDR} }

// CheckSuccessor checks the rules between two versions of one contract, old in force and new
// about to replace it, at now. serve applies it on every reload and the CLI before every save:
//
//   - created_at does not change (it is the same contract), and notice_days does not shrink;
//   - sync_token grows strictly (or stays equal when the stored content is byte-for-byte equal);
//   - no prefix disappears unless it was retired at least RetainRetired (30 days) before now:
//     removal goes only through `retire`, and pollers get to see it go;
//   - a listed prefix's published and enabled never move earlier; an enabled or retired date that
//     has passed at now does not change (and a passed retirement is not undone: an address that
//     left customers' allow-lists comes back only through a new announcement);
//   - a prefix in new that is not in old (identified by cidr and direction) is enabled at least
//     the notice after it is published — even if it poses as part of the initial set — and is
//     not backdated: its published is not before the whole second of old's sync_token time.
//     (Stored times are whole seconds while tokens are milliseconds, hence the truncation.)
//
// It does not run Validate on either document; callers validate new first.
func CheckSuccessor(old, new *Document, now time.Time) error {
	if old == nil || new == nil {
		return errors.New("check successor: both versions are required")
	}
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !old.CreatedAt.Equal(new.CreatedAt) {
		add("created_at: changed from %s to %s: a new version is the same contract (a new contract needs a new state file)",
			fmtTime(old.CreatedAt), fmtTime(new.CreatedAt))
	}
	if new.NoticeDays < old.NoticeDays {
		add("notice_days: went down from %d to %d: the notice the contract promises may grow, never shrink", old.NoticeDays, new.NoticeDays)
	}
	ot, oerr := ParseSyncToken(old.SyncToken)
	nt, nerr := ParseSyncToken(new.SyncToken)
	switch {
	case oerr != nil:
		add("sync_token of the version in force: %v", oerr)
	case nerr != nil:
		add("sync_token: %v", nerr)
	case nt < ot:
		add("sync_token: went backwards from %s to %s: it only grows", old.SyncToken, new.SyncToken)
	case nt == ot && !sameContent(old, new):
		add("sync_token: still %s but the content changed: every change increases it", new.SyncToken)
	}
	newIdx := make(map[prefixKey]int, len(new.Prefixes))
	for j := range new.Prefixes {
		newIdx[keyOf(&new.Prefixes[j])] = j
	}
	oldKeys := make(map[prefixKey]bool, len(old.Prefixes))
	for i := range old.Prefixes {
		op := &old.Prefixes[i]
		oldKeys[keyOf(op)] = true
		j, ok := newIdx[keyOf(op)]
		if !ok {
			switch {
			case op.Retired == nil:
				add("prefixes: %s (%s, %s at %s) was removed without being retired: removal goes through `retire`, and the entry stays listed %s after its retired date",
					op.CIDR, op.Direction, op.Status(now), fmtTime(now), fmtDuration(RetainRetired))
			case now.Before(op.Retired.Add(RetainRetired)):
				add("prefixes: %s (%s, retired %s) was removed before %s: a retired entry stays listed %s so pollers see it go",
					op.CIDR, op.Direction, fmtTime(*op.Retired), fmtTime(op.Retired.Add(RetainRetired)), fmtDuration(RetainRetired))
			}
			continue
		}
		np := &new.Prefixes[j]
		name := fmt.Sprintf("prefixes[%d] (%s)", j, np.CIDR)
		if np.Published.Before(op.Published) {
			add("%s: published moved earlier, from %s to %s: dates of a listed entry never move earlier", name, fmtTime(op.Published), fmtTime(np.Published))
		}
		switch {
		case np.Enabled.Before(op.Enabled):
			add("%s: enabled moved earlier, from %s to %s: that would shorten the notice customers were given", name, fmtTime(op.Enabled), fmtTime(np.Enabled))
		case !op.Enabled.After(now) && !np.Enabled.Equal(op.Enabled):
			add("%s: enabled %s has passed and may not change (to %s)", name, fmtTime(op.Enabled), fmtTime(np.Enabled))
		}
		if op.Retired != nil && !now.Before(*op.Retired) {
			switch {
			case np.Retired == nil:
				add("%s: retired %s has passed and may not be undone: a retired address comes back only through a new announcement", name, fmtTime(*op.Retired))
			case !np.Retired.Equal(*op.Retired):
				add("%s: retired %s has passed and may not change (to %s)", name, fmtTime(*op.Retired), fmtTime(*np.Retired))
			}
		}
	}
	rn := new.ruleNotice()
	for j := range new.Prefixes {
		np := &new.Prefixes[j]
		if oldKeys[keyOf(np)] {
			continue
		}
		name := fmt.Sprintf("prefixes[%d] (%s)", j, np.CIDR)
		if np.Enabled.Before(np.Published.Add(rn)) {
			add("%s: added with enabled %s only %s after published %s: a new entry is enabled at least the notice (%s) after it is published",
				name, fmtTime(np.Enabled), fmtDuration(np.Enabled.Sub(np.Published)), fmtTime(np.Published), fmtDuration(rn))
		}
		if oerr == nil {
			if floor := tokenTime(ot).Truncate(time.Second); np.Published.Before(floor) {
				add("%s: added with published %s, before the previous version's last change (%s): a new announcement cannot be backdated",
					name, fmtTime(np.Published), fmtTime(floor))
			}
		}
	}
	return joinCapped(errs)
}

func sameContent(a, b *Document) bool {
	ab, err1 := Marshal(a)
	bb, err2 := Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ab, bb)
}

func fmtTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// fmtDuration prints whole days as "14 days" and anything else as Go prints durations.
func fmtDuration(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d == day:
		return "1 day"
	case d != 0 && d%day == 0:
		return fmt.Sprintf("%d days", d/day)
	}
	return shortDuration(d)
}

// shortDuration prints a duration without Go's trailing zero units: 72h, not 72h0m0s.
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
