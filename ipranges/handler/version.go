package handler

import (
	"bytes"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"sync/atomic"
	"time"

	"github.com/fixedgate/fixedgate/ipranges"
)

// version is everything served for one document between two status transitions.
type version struct {
	doc     *ipranges.Document
	at      time.Time // statuses are derived at this time; they hold until next
	next    time.Time
	hasNext bool

	lastMod    time.Time // whole seconds
	lastModHdr []string

	json, txt, atom, sig *rep

	views    [3][5]atomic.Pointer[rep] // ?direction × ?status, filled on first request
	txtViews [3]atomic.Pointer[rep]    // ?direction
}

var (
	directions = [3]ipranges.Direction{"", ipranges.Ingress, ipranges.Egress}
	statuses   = [5]ipranges.Status{"", ipranges.Active, ipranges.Announced, ipranges.Draining, ipranges.Retired}
)

const signedETagHeader = "X-Fixedgate-Signed-Etag"

// render builds the version of doc at now. prev (the version it replaces, or nil) lends its
// representations when the bytes are unchanged, and its Last-Modified when they changed without
// a later date in the document.
func (h *Handler) render(doc *ipranges.Document, now time.Time, prev *version) (*version, error) {
	v := &version{doc: doc, at: now}
	v.next, v.hasNext = doc.NextTransition(now)
	body, err := ipranges.Render(doc, now, ipranges.Filter{})
	if err != nil {
		return nil, err
	}
	if prev != nil && bytes.Equal(prev.json.body, body) {
		// Same bytes: same everything (the JSON holds every input of the other formats).
		v.json, v.txt, v.atom, v.sig = prev.json, prev.txt, prev.atom, prev.sig
		v.lastMod, v.lastModHdr = prev.lastMod, prev.lastModHdr
		return v, nil
	}
	v.json = newRep(body, ctJSON)
	v.txt = newRep(renderTXT(doc, now, ""), ctText)
	if prev != nil && prev.doc == doc {
		v.atom = prev.atom // the feed depends on the document only, not on the time
	} else {
		atom, err := renderAtom(doc)
		if err != nil {
			return nil, err
		}
		v.atom = newRep(atom, ctAtom)
	}
	if h.key != nil {
		v.sig = newRep(ipranges.Sign(h.key, body), ctText)
		v.sig.extraKey, v.sig.extraVal = signedETagHeader, v.json.etagHdr
	}

	lm := latestChange(doc)
	if t, ok := latestTransition(doc, now); ok && t.After(lm) {
		lm = t
	}
	if lm.After(now) {
		lm = now
	}
	lm = lm.UTC().Truncate(time.Second)
	if prev != nil && !lm.After(prev.lastMod) {
		// The bytes changed but the document's dates do not say so (a hand edit without a
		// changelog entry): it changed now, as far as any client can tell.
		lm = now.UTC().Truncate(time.Second)
		if !lm.After(prev.lastMod) {
			lm = prev.lastMod.Add(time.Second)
		}
	}
	v.lastMod = lm
	v.lastModHdr = hv(lm.Format(http.TimeFormat))
	return v, nil
}

// latestChange is the time of the latest changelog entry, or created_at when later.
func latestChange(doc *ipranges.Document) time.Time {
	t := doc.CreatedAt
	for i := range doc.Changelog {
		if doc.Changelog[i].At.After(t) {
			t = doc.Changelog[i].At
		}
	}
	return t
}

// latestTransition is the latest enabled or retired time at or before now.
func latestTransition(doc *ipranges.Document, now time.Time) (t time.Time, ok bool) {
	consider := func(c time.Time) {
		if !c.After(now) && (!ok || c.After(t)) {
			t, ok = c, true
		}
	}
	for i := range doc.Prefixes {
		p := &doc.Prefixes[i]
		consider(p.Enabled)
		if p.Retired != nil {
			consider(*p.Retired)
		}
	}
	return t, ok
}

// jsonView returns the /ip-ranges.json representation for the raw query, or a reason to refuse it.
func (v *version) jsonView(raw string) (*rep, string) {
	if raw == "" {
		return v.json, ""
	}
	d, s, msg := parseFilter(raw, true)
	if msg != "" {
		return nil, msg
	}
	if d == 0 && s == 0 {
		return v.json, ""
	}
	slot := &v.views[d][s]
	if r := slot.Load(); r != nil {
		return r, ""
	}
	body, err := ipranges.Render(v.doc, v.at, ipranges.Filter{Direction: directions[d], Status: statuses[s]})
	if err != nil {
		// The unfiltered document rendered, so a subset does too; refuse rather than panic.
		return nil, "cannot render this view: " + err.Error()
	}
	r := newRep(body, ctJSON)
	if !slot.CompareAndSwap(nil, r) {
		r = slot.Load()
	}
	return r, ""
}

// txtView returns the /ip-ranges.txt representation for the raw query (direction only).
func (v *version) txtView(raw string) (*rep, string) {
	if raw == "" {
		return v.txt, ""
	}
	d, _, msg := parseFilter(raw, false)
	if msg != "" {
		return nil, msg
	}
	if d == 0 {
		return v.txt, ""
	}
	slot := &v.txtViews[d]
	if r := slot.Load(); r != nil {
		return r, ""
	}
	r := newRep(renderTXT(v.doc, v.at, directions[d]), ctText)
	if !slot.CompareAndSwap(nil, r) {
		r = slot.Load()
	}
	return r, ""
}

// parseFilter reads ?direction= and (when withStatus) ?status= into indexes of directions and
// statuses; anything else is refused with a one-line reason.
func parseFilter(raw string, withStatus bool) (d, s int, msg string) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return 0, 0, "bad query string: " + err.Error()
	}
	for k, vals := range q {
		switch {
		case k == "direction":
		case k == "status" && withStatus:
		case withStatus:
			return 0, 0, "unknown query parameter " + quote(k) + ": " + PathJSON + " takes direction and status"
		default:
			return 0, 0, "unknown query parameter " + quote(k) + ": " + PathTXT + " takes direction"
		}
		if len(vals) != 1 {
			return 0, 0, "query parameter " + quote(k) + " given more than once"
		}
	}
	if vals, ok := q["direction"]; ok {
		switch ipranges.Direction(vals[0]) {
		case ipranges.Ingress:
			d = 1
		case ipranges.Egress:
			d = 2
		default:
			return 0, 0, "bad direction " + quote(vals[0]) + ": want ingress or egress"
		}
	}
	if vals, ok := q["status"]; ok {
		switch ipranges.Status(vals[0]) {
		case ipranges.Active:
			s = 1
		case ipranges.Announced:
			s = 2
		case ipranges.Draining:
			s = 3
		case ipranges.Retired:
			s = 4
		default:
			return 0, 0, "bad status " + quote(vals[0]) + ": want active, announced, draining or retired"
		}
	}
	return d, s, ""
}

// quote quotes s for a one-line message, cut short so a long query cannot fill the response.
func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return `"` + url.QueryEscape(s) + `"`
}

// renderTXT lists the prefixes a firewall should allow at now (active, announced and draining)
// of direction dir (empty: both), sorted and without duplicates, after one "# " comment line.
func renderTXT(doc *ipranges.Document, now time.Time, dir ipranges.Direction) []byte {
	ps := make([]netip.Prefix, 0, len(doc.Prefixes))
	for i := range doc.Prefixes {
		p := &doc.Prefixes[i]
		if (dir != "" && p.Direction != dir) || p.Status(now) == ipranges.Retired {
			continue
		}
		ps = append(ps, p.CIDR.Masked())
	}
	slices.SortFunc(ps, netip.Prefix.Compare)
	ps = slices.Compact(ps)
	which := "ingress and egress"
	if dir != "" {
		which = string(dir)
	}
	var b bytes.Buffer
	b.Grow(100 + 20*len(ps))
	b.WriteString("# fixedgate ip-ranges sync_token=")
	b.WriteString(safeToken(doc.SyncToken))
	b.WriteString(": active, announced and draining ")
	b.WriteString(which)
	b.WriteString(" prefixes, one CIDR a line\n")
	for _, p := range ps {
		b.WriteString(p.String())
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// safeToken keeps the comment line one line whatever a hand-edited sync_token holds.
func safeToken(s string) string {
	ok := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	return url.QueryEscape(s)
}
