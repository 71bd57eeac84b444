package client

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/fixedgate/fixedgate/ipranges"
)

// Kind says what happened to a prefix between two versions of a contract.
type Kind string

const (
	// Added: in the new version only (normally announced; if already in use, the watcher
	// reports a violation).
	Added Kind = "added"
	// Enabled: announced before, active now (its enabled time passed, or an edit moved it).
	Enabled Kind = "enabled"
	// RetireScheduled: a retirement date was set; the prefix stays in use (draining) until then.
	RetireScheduled Kind = "retire-scheduled"
	// Retired: its retirement date passed; firewalls may close it.
	Retired Kind = "retired"
	// Removed: in the old version only (pruned some time after retiring).
	Removed Kind = "removed"
	// Changed: dates or attributes moved without one of the transitions above (for example a
	// retirement withdrawn, an enabled time postponed, a facility renamed).
	Changed Kind = "changed"
)

// Change is one difference between two versions, for one prefix (direction and CIDR).
type Change struct {
	Kind      Kind
	Direction ipranges.Direction
	CIDR      netip.Prefix
	// Old and New are the entries in each version; nil where absent.
	Old, New *ipranges.Prefix
	// OldStatus and NewStatus are the statuses at the times Diff evaluated each version
	// (empty where absent).
	OldStatus, NewStatus ipranges.Status
	// Details lists what moved, e.g. "enabled 2026-12-07T18:40:00Z → 2026-12-21T18:40:00Z".
	Details []string
}

// String is one line for the CLI: kind, direction, CIDR, then what it means, e.g.
// "enabled ingress 203.0.113.11/32: active since 2026-12-07T18:40:00Z".
func (c Change) String() string {
	var what string
	switch c.Kind {
	case Added:
		p := c.New
		switch c.NewStatus {
		case ipranges.Announced:
			what = "announced: published " + ts(p.Published) + ", enabled " + ts(p.Enabled)
		case ipranges.Retired:
			what = "retired at " + ts(*p.Retired)
		default:
			what = "already " + string(c.NewStatus) + " (enabled " + ts(p.Enabled) + ", published " + ts(p.Published) + ")"
		}
	case Enabled:
		what = "active since " + ts(c.New.Enabled)
	case RetireScheduled:
		what = "draining until " + ts(*c.New.Retired) + " (retired then)"
		if c.NewStatus == ipranges.Announced {
			what = "retirement set to " + ts(*c.New.Retired) + " before it was enabled"
		}
	case Retired:
		what = "retired at " + ts(*c.New.Retired)
	case Removed:
		what = "no longer listed (was " + string(c.OldStatus) + ")"
	case Changed:
		what = string(c.OldStatus) + " → " + string(c.NewStatus)
		if c.OldStatus == c.NewStatus {
			what = string(c.NewStatus)
		}
	}
	if len(c.Details) > 0 {
		what += "; " + strings.Join(c.Details, "; ")
	}
	return fmt.Sprintf("%s %s %s: %s", c.Kind, c.Direction, c.CIDR, what)
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// AsOf returns the time a document speaks for: the latest of its created_at, its changelog
// entries and its sync_token. Diff evaluates the old version at that time.
func AsOf(doc *ipranges.Document) time.Time {
	t := doc.CreatedAt
	for i := range doc.Changelog {
		if doc.Changelog[i].At.After(t) {
			t = doc.Changelog[i].At
		}
	}
	if ms, err := ipranges.ParseSyncToken(doc.SyncToken); err == nil {
		if st := time.UnixMilli(ms).UTC(); st.After(t) {
			t = st
		}
	}
	return t
}

// Diff compares two versions of a contract: old as of when it was written (AsOf, at most now)
// and new as of now, so an announced address that has become active since old is reported as
// enabled even when nobody edited the document. Changes are sorted by CIDR, then direction.
func Diff(old, new *ipranges.Document, now time.Time) []Change {
	oldAt := AsOf(old)
	if oldAt.After(now) {
		oldAt = now
	}
	return DiffAt(old, oldAt, new, now)
}

type key struct {
	dir  ipranges.Direction
	cidr netip.Prefix
}

func keyOf(p *ipranges.Prefix) key { return key{p.Direction, p.CIDR} }

// DiffAt compares old's statuses at oldAt with new's at newAt (for example the times each
// version was fetched).
func DiffAt(old *ipranges.Document, oldAt time.Time, new *ipranges.Document, newAt time.Time) []Change {
	oldIdx := make(map[key]*ipranges.Prefix, len(old.Prefixes))
	for i := range old.Prefixes {
		oldIdx[keyOf(&old.Prefixes[i])] = &old.Prefixes[i]
	}
	var out []Change
	seen := make(map[key]bool, len(new.Prefixes))
	for i := range new.Prefixes {
		np := &new.Prefixes[i]
		k := keyOf(np)
		seen[k] = true
		op := oldIdx[k]
		if op == nil {
			out = append(out, Change{Kind: Added, Direction: k.dir, CIDR: k.cidr, New: np, NewStatus: np.Status(newAt)})
			continue
		}
		if c, ok := compare(op, oldAt, np, newAt); ok {
			out = append(out, c)
		}
	}
	for i := range old.Prefixes {
		op := &old.Prefixes[i]
		if k := keyOf(op); !seen[k] {
			out = append(out, Change{Kind: Removed, Direction: k.dir, CIDR: k.cidr, Old: op, OldStatus: op.Status(oldAt)})
		}
	}
	slices.SortStableFunc(out, func(a, b Change) int {
		if c := a.CIDR.Compare(b.CIDR); c != 0 {
			return c
		}
		return cmp.Compare(a.Direction, b.Direction)
	})
	return out
}

// compare classifies the difference between one prefix's two versions.
func compare(op *ipranges.Prefix, oldAt time.Time, np *ipranges.Prefix, newAt time.Time) (Change, bool) {
	c := Change{Direction: np.Direction, CIDR: np.CIDR, Old: op, New: np, OldStatus: op.Status(oldAt), NewStatus: np.Status(newAt)}
	moved := func(name string, a, b time.Time) {
		if !a.Equal(b) {
			c.Details = append(c.Details, name+" "+ts(a)+" → "+ts(b))
		}
	}
	moved("published", op.Published, np.Published)
	moved("enabled", op.Enabled, np.Enabled)
	switch {
	case op.Retired == nil && np.Retired != nil:
		c.Details = append(c.Details, "retired set to "+ts(*np.Retired))
	case op.Retired != nil && np.Retired == nil:
		c.Details = append(c.Details, "retirement "+ts(*op.Retired)+" withdrawn")
	case op.Retired != nil:
		moved("retired", *op.Retired, *np.Retired)
	}
	for _, f := range [][3]string{{"class", op.Class, np.Class}, {"service", op.Service, np.Service}, {"facility", op.Facility, np.Facility}} {
		if f[1] != f[2] {
			c.Details = append(c.Details, fmt.Sprintf("%s %q → %q", f[0], f[1], f[2]))
		}
	}
	from, to := c.OldStatus, c.NewStatus
	switch {
	case from != to && to == ipranges.Active && from == ipranges.Announced:
		c.Kind = Enabled
	case from != to && to == ipranges.Draining && (from == ipranges.Active || from == ipranges.Announced):
		c.Kind = RetireScheduled
	case from != to && to == ipranges.Retired:
		c.Kind = Retired
	case from != to:
		c.Kind = Changed
	case op.Retired == nil && np.Retired != nil:
		c.Kind = RetireScheduled // set on a prefix that is still announced
	case len(c.Details) > 0:
		c.Kind = Changed
	default:
		return c, false
	}
	return c, true
}
