package ipranges

import (
	"net/netip"
	"strconv"
	"testing"
	"time"
)

func TestInit(t *testing.T) {
	now := stT0.Add(1234 * time.Millisecond).In(time.FixedZone("X", 3600))
	d, err := Init(stPfxs(t, "203.0.113.10/32"), stPfxs(t, "198.51.100.20/32", "2001:db8::/64"), InitOptions{Facility: "fra"}, now)
	if err != nil {
		t.Fatal(err)
	}
	at := stT0.Add(time.Second)
	if !d.CreatedAt.Equal(at) || d.CreatedAt.Location() != time.UTC || d.NoticeDays != 14 || d.SchemaVersion != 1 {
		t.Fatalf("document %+v", d)
	}
	for _, p := range d.Prefixes {
		if !p.Published.Equal(at) || !p.Enabled.Equal(at) || p.Service != "proxy" || p.Facility != "fra" || p.Status(now) != Active {
			t.Fatalf("prefix %+v", p)
		}
	}
	if d.Prefixes[2].Class != "ipv6" || d.Prefixes[2].Direction != Egress || d.Prefixes[0].Direction != Ingress {
		t.Fatalf("prefixes %+v", d.Prefixes)
	}
	if len(d.Changelog) != 3 || d.Changelog[0].Action != "init" || d.SyncToken != d.Changelog[2].SyncToken ||
		d.Changelog[0].SyncToken != strconv.FormatInt(now.UnixMilli(), 10) {
		t.Fatalf("changelog %+v token %s", d.Changelog, d.SyncToken)
	}

	refusals := []struct {
		name            string
		ingress, egress []string
		opts            InitOptions
		want            string
	}{
		{"empty", nil, nil, InitOptions{}, "no prefixes"},
		{"non-canonical", []string{"203.0.113.10/24"}, nil, InitOptions{}, "did you mean 203.0.113.0/24?"},
		{"mapped", []string{"::ffff:203.0.113.10/128"}, nil, InitOptions{}, "write it as 203.0.113.10/32"},
		{"overlap", []string{"203.0.113.0/24", "203.0.113.10/32"}, nil, InitOptions{}, "203.0.113.10/32 overlaps 203.0.113.0/24 (both ingress)"},
		{"duplicate", nil, []string{"198.51.100.20/32", "198.51.100.20/32"}, InitOptions{}, "198.51.100.20/32 is given twice as egress"},
		{"short notice", []string{"203.0.113.10/32"}, nil, InitOptions{Notice: 72 * time.Hour}, "notice 72h is below the 336h (14 days) minimum"},
		{"notice not in days", []string{"203.0.113.10/32"}, nil, InitOptions{Notice: 340 * time.Hour}, "not a whole number of days"},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Init(stPfxs(t, tc.ingress...), stPfxs(t, tc.egress...), tc.opts, stT0)
			stWantErr(t, err, tc.want)
		})
	}
	d, err = Init(stPfxs(t, "203.0.113.10/32"), stPfxs(t, "203.0.113.10/32"), InitOptions{Notice: 30 * stDay, Service: "api"}, stT0)
	if err != nil || d.NoticeDays != 30 || d.Prefixes[0].Service != "api" {
		t.Fatalf("same address both ways, 30 days: %v %+v", err, d)
	}
}

func TestAnnounce(t *testing.T) {
	d := stDoc(t)
	now := stT0.Add(5*stDay + 500*time.Millisecond)
	if err := d.Announce(stPfx(t, "198.51.100.22/32"), Egress, 20*stDay+time.Millisecond, "fra", "", now); err != nil {
		t.Fatal(err)
	}
	p := d.Prefixes[len(d.Prefixes)-1]
	pub := stT0.Add(5 * stDay)
	if !p.Published.Equal(pub) || !p.Enabled.Equal(pub.Add(20*stDay+time.Second)) || p.Facility != "fra" || p.Service != "proxy" || p.Class != "ipv4" {
		t.Fatalf("announced %+v", p)
	}
	c := d.Changelog[len(d.Changelog)-1]
	if c.Action != "announce" || c.CIDR != "198.51.100.22/32" || c.Direction != Egress || !c.At.Equal(pub) || c.SyncToken != d.SyncToken {
		t.Fatalf("changelog %+v", c)
	}
	if err := d.Validate(0); err != nil {
		t.Fatal(err)
	}
	for _, at := range []time.Time{now, p.Enabled.Add(-time.Second)} {
		if d.InUse(netip.MustParseAddr("198.51.100.22"), Egress, at) {
			t.Fatalf("in use at %v, before enabled %v", at, p.Enabled)
		}
	}
	if !d.InUse(netip.MustParseAddr("198.51.100.22"), Egress, p.Enabled) {
		t.Fatal("not in use at enabled")
	}

	// Refusals.
	retired := stDoc(t)
	if err := retired.Retire(stPfx(t, "203.0.113.10/32"), 0, RetireOptions{}, stT0.Add(20*stDay)); err != nil {
		t.Fatal(err)
	}
	announced := stDoc(t)
	if err := announced.Announce(stPfx(t, "198.51.100.40/32"), Egress, 0, "", "", stT0.Add(20*stDay)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		d    *Document
		cidr string
		dir  Direction
		n    time.Duration
		want string
	}{
		{"short notice", stDoc(t), "198.51.100.30/32", Egress, 72 * time.Hour, "notice 72h is below the 336h (14 days) minimum the contract promises"},
		{"one second short", stDoc(t), "198.51.100.30/32", Egress, MinNotice - time.Second, "below the 336h"},
		{"active", stDoc(t), "203.0.113.10/32", Ingress, 0, "203.0.113.10/32 is already listed as ingress (active, enabled 2026-01-02T00:00:00Z)"},
		{"announced", announced, "198.51.100.40/32", Egress, 0, "is already listed as egress (announced, enabled 2026-02-05T00:00:00Z)"},
		{"overlap", stDoc(t), "203.0.113.0/28", Ingress, 0, "203.0.113.0/28 overlaps 203.0.113.10/32, listed as ingress"},
		{"retired still listed", retired, "203.0.113.10/32", Ingress, 0,
			"(retired, retired 2026-01-22T00:00:00Z); it can be announced again after 2026-02-21T00:00:00Z, when it is pruned"},
		{"non-canonical", stDoc(t), "198.51.100.33/24", Egress, 0, "did you mean 198.51.100.0/24?"},
		{"direction", stDoc(t), "198.51.100.30/32", "sideways", 0, `direction "sideways" is not ingress or egress`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := Marshal(tc.d)
			err := tc.d.Announce(stPfx(t, tc.cidr), tc.dir, tc.n, "", "", stT0.Add(21*stDay))
			stWantErr(t, err, tc.want)
			if after, _ := Marshal(tc.d); string(after) != string(before) {
				t.Fatal("a refused announce changed the document")
			}
		})
	}
	// A contract with a longer notice refuses announcements below it.
	long, _ := Init(stPfxs(t, "203.0.113.10/32"), nil, InitOptions{Notice: 30 * stDay}, stT0)
	stWantErr(t, long.Announce(stPfx(t, "203.0.113.12/32"), Ingress, MinNotice, "", "", stT0), "below the 720h (30 days) minimum")
	if err := long.Announce(stPfx(t, "203.0.113.12/32"), Ingress, 0, "", "", stT0); err != nil || !long.Prefixes[1].Enabled.Equal(stT0.Add(30*stDay)) {
		t.Fatalf("default notice: %v %+v", err, long.Prefixes[1])
	}
}

func TestRetire(t *testing.T) {
	now := stT0.Add(20 * stDay)
	d := stDoc(t) // 203.0.113.11/32 is active from stT0+15d
	if err := d.Retire(stPfx(t, "203.0.113.10/32"), 14*stDay, RetireOptions{}, now); err != nil {
		t.Fatal(err)
	}
	p := d.Prefixes[0]
	if p.Retired == nil || !p.Retired.Equal(now.Add(14*stDay)) || p.Status(now) != Draining || !p.InUse(now) {
		t.Fatalf("retired %+v", p)
	}
	if p.Status(*p.Retired) != Retired || p.InUse(*p.Retired) || !p.InUse(p.Retired.Add(-time.Second)) {
		t.Fatal("status at the retirement date")
	}
	if c := d.Changelog[len(d.Changelog)-1]; c.Action != "retire" || c.CIDR != "203.0.113.10/32" || c.Note != "retired 2026-02-05T00:00:00Z" {
		t.Fatalf("changelog %+v", c)
	}
	if err := d.Validate(0); err != nil {
		t.Fatal(err)
	}
	stWantErr(t, d.Retire(stPfx(t, "203.0.113.10/32"), 0, RetireOptions{}, now), "already draining; it retires at 2026-02-05T00:00:00Z")
	stWantErr(t, d.Retire(stPfx(t, "203.0.113.10/32"), 0, RetireOptions{}, now.Add(15*stDay)), "already retired at 2026-02-05T00:00:00Z; it leaves the contract after 2026-03-07T00:00:00Z")
	stWantErr(t, d.Retire(stPfx(t, "203.0.113.99/32"), 0, RetireOptions{}, now), "retire 203.0.113.99/32: not in the contract")
	stWantErr(t, d.Retire(stPfx(t, "203.0.113.0/24"), 0, RetireOptions{}, now), "not in the contract; it overlaps 203.0.113.10/32 (ingress)")
	stWantErr(t, d.Retire(stPfx(t, "198.51.100.20/32"), 0, RetireOptions{Direction: Ingress}, now), "not in the contract as ingress")
	stWantErr(t, d.Retire(stPfx(t, "2001:db8::10/128"), -time.Second, RetireOptions{}, now), "after -1s is negative")

	// The last egress address: refused unless forced.
	before, _ := Marshal(d)
	stWantErr(t, d.Retire(stPfx(t, "198.51.100.20/32"), 0, RetireOptions{}, now),
		"it is the last egress address in service", "unable to dial out", "announce a replacement first")
	if after, _ := Marshal(d); string(after) != string(before) {
		t.Fatal("a refused retire changed the document")
	}
	if err := d.Retire(stPfx(t, "198.51.100.20/32"), 0, RetireOptions{Force: true}, now); err != nil {
		t.Fatal(err)
	}
	// Ingress: 203.0.113.10 drains, 2001:db8::10 and 203.0.113.11 remain; retiring one of them is fine,
	// retiring the second is not.
	if err := d.Retire(stPfx(t, "2001:db8::10/128"), 0, RetireOptions{}, now); err != nil {
		t.Fatal(err)
	}
	stWantErr(t, d.Retire(stPfx(t, "203.0.113.11/32"), stDay, RetireOptions{}, now), "the last ingress address in service", "unreachable")

	// A replacement counts only if it is enabled by the retirement date.
	r := stDoc(t)
	if err := r.Announce(stPfx(t, "198.51.100.21/32"), Egress, 0, "", "", now); err != nil {
		t.Fatal(err)
	}
	stWantErr(t, r.Retire(stPfx(t, "198.51.100.20/32"), stDay, RetireOptions{}, now), "last egress address")
	if err := r.Retire(stPfx(t, "198.51.100.20/32"), 14*stDay, RetireOptions{}, now); err != nil {
		t.Fatal(err)
	}

	// Withdrawing the replacement a retirement relies on would leave a gap: refused too.
	stWantErr(t, r.Retire(stPfx(t, "198.51.100.21/32"), 0, RetireOptions{}, now),
		"retire 198.51.100.21/32: it is the last egress address in service: no other egress address would be in use from 2026-02-05T00:00:00Z")
	// A gap in the middle counts as well: the replacement is enabled only after the retirement.
	g := stDoc(t)
	if err := g.Announce(stPfx(t, "198.51.100.21/32"), Egress, 20*stDay, "", "", now); err != nil {
		t.Fatal(err)
	}
	stWantErr(t, g.Retire(stPfx(t, "198.51.100.20/32"), 14*stDay, RetireOptions{}, now), "no other egress address would be in use from 2026-02-05T00:00:00Z")

	// The same CIDR both ways needs a direction.
	both, _ := Init(stPfxs(t, "203.0.113.10/32", "203.0.113.20/32"), stPfxs(t, "203.0.113.10/32", "203.0.113.21/32"), InitOptions{}, stT0)
	stWantErr(t, both.Retire(stPfx(t, "203.0.113.10/32"), 0, RetireOptions{}, now), "listed as both ingress and egress")
	if err := both.Retire(stPfx(t, "203.0.113.10/32"), 0, RetireOptions{Direction: Egress}, now); err != nil || both.Prefixes[2].Retired == nil || both.Prefixes[0].Retired != nil {
		t.Fatalf("retire egress: %v", err)
	}
}

// Retiring an announcement before its enabled date withdraws it: it is never in use.
func TestRetireWithdrawsAnnouncement(t *testing.T) {
	d := stDoc(t) // 203.0.113.11/32: published stT0+1d, enabled stT0+15d
	now := stT0.Add(3 * stDay)
	if err := d.Retire(stPfx(t, "203.0.113.11/32"), 0, RetireOptions{}, now); err != nil {
		t.Fatal(err)
	}
	p := d.Prefixes[3]
	if c := d.Changelog[len(d.Changelog)-1]; c.Note != "announcement withdrawn; never enabled" {
		t.Fatalf("note %q", c.Note)
	}
	for _, at := range []time.Time{now, p.Enabled, p.Enabled.Add(stDay)} {
		if st := p.Status(at); st != Retired || d.InUse(netip.MustParseAddr("203.0.113.11"), Ingress, at) {
			t.Fatalf("status at %v: %s", at, st)
		}
	}
	if err := d.Validate(0); err != nil {
		t.Fatal(err)
	}
	// An explicit --after beyond the enabled date is honoured: active for a while, then retired.
	e := stDoc(t)
	if err := e.Retire(stPfx(t, "203.0.113.11/32"), 20*stDay, RetireOptions{}, now); err != nil {
		t.Fatal(err)
	}
	if st := e.Prefixes[3].Status(stT0.Add(16 * stDay)); st != Draining {
		t.Fatalf("status %s", st)
	}
}

func TestPrune(t *testing.T) {
	d := stDoc(t)
	now := stT0.Add(20 * stDay)
	if n := d.Prune(now); n != 0 {
		t.Fatalf("pruned %d", n)
	}
	tok := d.SyncToken
	if err := d.Retire(stPfx(t, "203.0.113.10/32"), stDay, RetireOptions{}, now); err != nil {
		t.Fatal(err)
	}
	gone := now.Add(stDay + RetainRetired)
	if n := d.Prune(gone.Add(-time.Second)); n != 0 {
		t.Fatalf("pruned %d a second early", n)
	}
	before := d.Clone()
	if n := d.Prune(gone); n != 1 || len(d.Prefixes) != 3 || d.Lookup(netip.MustParseAddr("203.0.113.10"), Ingress) != nil {
		t.Fatalf("pruned %d: %+v", n, d.Prefixes)
	}
	c := d.Changelog[len(d.Changelog)-1]
	if c.Action != "prune" || c.CIDR != "203.0.113.10/32" || c.SyncToken == tok {
		t.Fatalf("changelog %+v", c)
	}
	if err := d.Validate(0); err != nil {
		t.Fatal(err)
	}
	if err := CheckSuccessor(before, d, gone); err != nil {
		t.Fatal(err)
	}
	// Pruned: the address can be announced again (with the full notice).
	if err := d.Announce(stPfx(t, "203.0.113.10/32"), Ingress, 0, "", "", gone); err != nil {
		t.Fatal(err)
	}
}

func TestStatusOverTime(t *testing.T) {
	pub := stT0
	en := pub.Add(14 * stDay)
	ret := en.Add(10 * stDay)
	p := Prefix{CIDR: netip.MustParsePrefix("203.0.113.11/32"), Direction: Ingress, Published: pub, Enabled: en}
	d := &Document{Prefixes: []Prefix{p}}
	addr := netip.MustParseAddr("203.0.113.11")
	check := func(at time.Time, want Status) {
		t.Helper()
		if got := d.Prefixes[0].Status(at); got != want {
			t.Fatalf("status at %v = %s, want %s", at, got, want)
		}
		inUse := want == Active || want == Draining
		if d.InUse(addr, Ingress, at) != inUse || d.InUse(netip.AddrFrom16(addr.As16()), Ingress, at) != inUse {
			t.Fatalf("InUse at %v != %v", at, inUse)
		}
		if d.InUse(addr, Egress, at) {
			t.Fatal("in use as egress")
		}
	}
	check(pub, Announced)
	check(en.Add(-time.Nanosecond), Announced)
	check(en, Active)
	check(ret.Add(100*stDay), Active)
	if next, ok := d.NextTransition(pub); !ok || !next.Equal(en) {
		t.Fatalf("next transition %v %v", next, ok)
	}
	d.Prefixes[0].Retired = &ret
	check(en, Draining)
	check(ret.Add(-time.Nanosecond), Draining)
	check(ret, Retired)
	if next, ok := d.NextTransition(en); !ok || !next.Equal(ret) {
		t.Fatalf("next transition %v %v", next, ok)
	}
	if _, ok := d.NextTransition(ret); ok {
		t.Fatal("a transition after retirement")
	}
}

// sync_token strictly grows and recorded times never go back, even when the clock does.
func TestSyncTokenClockBackwards(t *testing.T) {
	now := stT0.Add(10 * stDay)
	d, err := Init(stPfxs(t, "203.0.113.10/32"), stPfxs(t, "198.51.100.20/32"), InitOptions{}, now)
	if err != nil {
		t.Fatal(err)
	}
	prevTok, _ := ParseSyncToken(d.SyncToken)
	clocks := []time.Duration{-time.Hour, -time.Millisecond, 0, 0, -stDay, time.Second, -2 * time.Second}
	for i, step := range clocks {
		now = now.Add(step)
		old := d.Clone()
		if err := d.Announce(netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(20 + i)}), 32), Ingress, 0, "", "", now); err != nil {
			t.Fatal(err)
		}
		tok, _ := ParseSyncToken(d.SyncToken)
		if tok <= prevTok {
			t.Fatalf("step %d: token %d after %d", i, tok, prevTok)
		}
		prevTok = tok
		if err := d.Validate(0); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if err := CheckSuccessor(old, d, now); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if p := d.Prefixes[len(d.Prefixes)-1]; p.Published.Before(d.CreatedAt) {
			t.Fatalf("published %v before created_at", p.Published)
		}
	}
}

func TestClone(t *testing.T) {
	d := stDoc(t)
	if err := d.Retire(stPfx(t, "2001:db8::10/128"), stDay, RetireOptions{}, stT0.Add(2*stDay)); err != nil {
		t.Fatal(err)
	}
	c := d.Clone()
	*c.Prefixes[1].Retired = stT0
	c.Prefixes[0].Facility = "x"
	c.Changelog[0].Note = "x"
	if d.Prefixes[1].Retired.Equal(stT0) || d.Prefixes[0].Facility == "x" || d.Changelog[0].Note == "x" {
		t.Fatal("the clone shares memory with the original")
	}
}
