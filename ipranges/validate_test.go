package ipranges

import (
	"net/netip"
	"strconv"
	"testing"
	"time"
)

func TestValidateRules(t *testing.T) {
	ptr := func(t time.Time) *time.Time { return &t }
	tests := []struct {
		name   string
		notice time.Duration
		edit   func(d *Document)
		want   []string // nil: valid
	}{
		{"valid", 0, func(d *Document) {}, nil},
		{"valid with the configured notice", 14 * stDay, func(d *Document) {}, nil},
		{"schema", 0, func(d *Document) { d.SchemaVersion = 2 }, []string{"schema_version: 2 is not supported"}},
		{"notice_days below minimum", 0, func(d *Document) { d.NoticeDays = 7 }, []string{"notice_days: 7 is below the 14-day minimum"}},
		{"notice_days differs from config", 30 * stDay, func(d *Document) {},
			[]string{"notice_days: 14 days does not match the configured notice 30 days (ipranges.notice)"}},
		{"non-canonical cidr", 0, func(d *Document) { d.Prefixes[0].CIDR = netip.MustParsePrefix("203.0.113.10/24") },
			[]string{"prefixes[0] (203.0.113.10/24): cidr:", "host bits are set", "did you mean 203.0.113.0/24?"}},
		{"IPv4-mapped", 0, func(d *Document) { d.Prefixes[0].CIDR = netip.MustParsePrefix("::ffff:203.0.113.10/128") },
			[]string{"prefixes[0] (::ffff:203.0.113.10/128): cidr:", "IPv4-mapped IPv6 prefix; write it as 203.0.113.10/32"}},
		{"invalid cidr", 0, func(d *Document) { d.Prefixes[0].CIDR = netip.Prefix{} }, []string{"prefixes[0] (invalid Prefix): cidr: not a valid CIDR prefix"}},
		{"class", 0, func(d *Document) { d.Prefixes[1].Class = "ipv4" },
			[]string{`prefixes[1] (2001:db8::10/128): class: "ipv4" does not match the address family (want "ipv6")`}},
		{"direction", 0, func(d *Document) { d.Prefixes[2].Direction = "outbound" },
			[]string{`prefixes[2] (198.51.100.20/32): direction: "outbound" is not ingress or egress`}},
		{"service", 0, func(d *Document) { d.Prefixes[2].Service = "" }, []string{"prefixes[2] (198.51.100.20/32): service: empty"}},
		{"overlap", 0, func(d *Document) {
			d.Prefixes[3].CIDR = netip.MustParsePrefix("203.0.113.0/24")
		}, []string{"prefixes[3] (203.0.113.0/24): overlaps prefixes[0] (203.0.113.10/32), both ingress", "must not overlap"}},
		{"duplicate", 0, func(d *Document) { d.Prefixes[3].CIDR = d.Prefixes[0].CIDR },
			[]string{"prefixes[3] (203.0.113.10/32): listed twice as ingress (also prefixes[0])"}},
		{"same prefix in both directions is fine", 0, func(d *Document) { d.Prefixes[2].CIDR = d.Prefixes[0].CIDR }, nil},
		{"published before created_at", 0, func(d *Document) { d.Prefixes[3].Published = stT0.Add(-time.Hour) },
			[]string{"prefixes[3] (203.0.113.11/32): published 2026-01-01T23:00:00Z is before the contract's created_at"}},
		{"enabled before published", 0, func(d *Document) { d.Prefixes[3].Enabled = d.Prefixes[3].Published.Add(-time.Second) },
			[]string{"prefixes[3] (203.0.113.11/32): enabled", "published <= enabled"}},
		{"notice not given", 0, func(d *Document) { d.Prefixes[3].Enabled = d.Prefixes[3].Published.Add(stDay) },
			[]string{"prefixes[3] (203.0.113.11/32): enabled 2026-01-04T00:00:00Z is only 1 day after published 2026-01-03T00:00:00Z",
				"enabled >= published + notice"}},
		{"notice one second short", 0, func(d *Document) { d.Prefixes[3].Enabled = d.Prefixes[3].Enabled.Add(-time.Second) },
			[]string{"only 335h59m59s after published"}},
		{"initial set needs no notice", 0, func(d *Document) {}, nil},
		{"retired before published", 0, func(d *Document) { d.Prefixes[3].Retired = ptr(d.Prefixes[3].Published.Add(-time.Second)) },
			[]string{"prefixes[3] (203.0.113.11/32): retired 2026-01-02T23:59:59Z is before published", "retired >= published"}},
		{"withdrawal before enabled is fine", 0, func(d *Document) { d.Prefixes[3].Retired = ptr(d.Prefixes[3].Published) }, nil},
		{"sync_token not decimal", 0, func(d *Document) { d.SyncToken = "abc" }, []string{`sync_token: "abc" is not a decimal count of Unix milliseconds`}},
		{"sync_token leading zero", 0, func(d *Document) { d.SyncToken = "0" + d.SyncToken }, []string{"sync_token: \"0"}},
		{"created_at after sync_token", 0, func(d *Document) { d.SyncToken = strconv.FormatInt(stT0.UnixMilli()-1, 10) },
			[]string{"created_at: 2026-01-02T00:00:00Z is after the time of sync_token"}},
		{"changelog tokens not increasing", 0, func(d *Document) { d.Changelog[2].SyncToken = d.Changelog[1].SyncToken },
			[]string{"changelog[2] (198.51.100.20/32): sync_token", "changelog sync_tokens strictly increase"}},
		{"changelog token after document's", 0, func(d *Document) {
			d.Changelog[3].SyncToken = strconv.FormatInt(stT0.Add(10*stDay).UnixMilli(), 10)
		}, []string{"changelog[3] (203.0.113.11/32): sync_token", "is greater than the document's sync_token"}},
		{"changelog at after its token", 0, func(d *Document) { d.Changelog[3].At = d.Changelog[3].At.Add(time.Hour) },
			[]string{"changelog[3] (203.0.113.11/32): at 2026-01-03T01:00:00Z is after the time of its sync_token"}},
		{"changelog action", 0, func(d *Document) { d.Changelog[0].Action = "enable" }, []string{`changelog[0] (203.0.113.10/32): action: "enable" is not one of`}},
		{"changelog cidr", 0, func(d *Document) { d.Changelog[0].CIDR = "203.0.113.10/24" }, []string{"changelog[0] (203.0.113.10/24): cidr:", "did you mean 203.0.113.0/24"}},
		{"changelog direction", 0, func(d *Document) { d.Changelog[0].Direction = "up" }, []string{`changelog[0] (203.0.113.10/32): direction: "up"`}},
		{"empty prefixes are valid", 0, func(d *Document) { d.Prefixes = []Prefix{} }, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := stDoc(t)
			tc.edit(d)
			err := d.Validate(tc.notice)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			stWantErr(t, err, tc.want...)
		})
	}
}

// Every violation is reported, capped so a wildly wrong file stays readable.
func TestValidateReportsAllCapped(t *testing.T) {
	d := stDoc(t)
	for i := range d.Prefixes {
		d.Prefixes[i].Service = ""
	}
	err := d.Validate(0)
	stWantErr(t, err, "prefixes[0]", "prefixes[3]")
	for i := 0; i < 30; i++ {
		d.Prefixes = append(d.Prefixes, d.Prefixes[0])
	}
	stWantErr(t, d.Validate(0), "… and ")
}

func TestCheckSuccessor(t *testing.T) {
	now := stT0.Add(2 * stDay)
	ptr := func(t time.Time) *time.Time { return &t }
	retiredOld := func(d *Document) { d.Prefixes[2].Retired = ptr(stT0.Add(stDay)) } // egress retired a day in
	tests := []struct {
		name string
		old  func(d *Document) // optional edit of the version in force
		new  func(t *testing.T, d *Document)
		now  time.Time
		want []string // nil: accepted
	}{
		{"identical", nil, func(t *testing.T, d *Document) {}, now, nil},
		{"announce", nil, func(t *testing.T, d *Document) {
			if err := d.Announce(stPfx(t, "198.51.100.21/32"), Egress, 0, "", "", now); err != nil {
				t.Fatal(err)
			}
		}, now, nil},
		{"same token, other content", nil, func(t *testing.T, d *Document) { d.Prefixes[0].Facility = "eu" }, now,
			[]string{"sync_token: still", "content changed"}},
		{"token backwards", nil, func(t *testing.T, d *Document) { d.SyncToken = d.Changelog[0].SyncToken }, now,
			[]string{"sync_token: went backwards"}},
		{"created_at changed", nil, func(t *testing.T, d *Document) { d.CreatedAt = d.CreatedAt.Add(time.Second); d.bump(now) }, now,
			[]string{"created_at: changed from"}},
		{"notice shrinks", func(d *Document) { d.NoticeDays = 30 }, func(t *testing.T, d *Document) { d.NoticeDays = 14; d.bump(now) }, now,
			[]string{"notice_days: went down from 30 to 14"}},
		{"notice grows", nil, func(t *testing.T, d *Document) { d.NoticeDays = 30; d.bump(now) }, now, nil},
		{"active prefix dropped", nil, func(t *testing.T, d *Document) { d.Prefixes = d.Prefixes[1:]; d.bump(now) }, now,
			[]string{"203.0.113.10/32 (ingress, active at 2026-01-04T00:00:00Z) was removed without being retired"}},
		{"announced prefix dropped", nil, func(t *testing.T, d *Document) { d.Prefixes = d.Prefixes[:3]; d.bump(now) }, now,
			[]string{"203.0.113.11/32 (ingress, announced at", "removed without being retired"}},
		{"retired prefix dropped too early", retiredOld, func(t *testing.T, d *Document) {
			d.Prefixes = append(d.Prefixes[:2], d.Prefixes[3])
			d.bump(now)
		}, now, []string{"198.51.100.20/32 (egress, retired 2026-01-03T00:00:00Z) was removed before 2026-02-02T00:00:00Z"}},
		{"retired prefix dropped after 30 days", retiredOld, func(t *testing.T, d *Document) {
			d.Prefixes = append(d.Prefixes[:2], d.Prefixes[3])
			d.bump(now)
		}, stT0.Add(31 * stDay), nil},
		{"published moves earlier", nil, func(t *testing.T, d *Document) {
			d.Prefixes[3].Published = d.Prefixes[3].Published.Add(-time.Hour)
			d.bump(now)
		}, now, []string{"prefixes[3] (203.0.113.11/32): published moved earlier"}},
		{"enabled moves earlier", nil, func(t *testing.T, d *Document) {
			d.Prefixes[3].Enabled = d.Prefixes[3].Enabled.Add(-time.Hour)
			d.bump(now)
		}, now, []string{"prefixes[3] (203.0.113.11/32): enabled moved earlier", "shorten the notice"}},
		{"enabled of an announced prefix moves later", nil, func(t *testing.T, d *Document) {
			d.Prefixes[3].Enabled = d.Prefixes[3].Enabled.Add(stDay)
			d.bump(now)
		}, now, nil},
		{"passed enabled moves later", nil, func(t *testing.T, d *Document) {
			d.Prefixes[0].Enabled = now.Add(stDay)
			d.Prefixes[0].Published = d.Prefixes[0].Enabled
			d.bump(now)
		}, now, []string{"prefixes[0] (203.0.113.10/32): enabled 2026-01-02T00:00:00Z has passed and may not change"}},
		{"passed retirement undone", retiredOld, func(t *testing.T, d *Document) { d.Prefixes[2].Retired = nil; d.bump(now) }, now,
			[]string{"prefixes[2] (198.51.100.20/32): retired 2026-01-03T00:00:00Z has passed and may not be undone"}},
		{"passed retirement moved", retiredOld, func(t *testing.T, d *Document) { d.Prefixes[2].Retired = ptr(now.Add(stDay)); d.bump(now) }, now,
			[]string{"has passed and may not change (to 2026-01-05T00:00:00Z)"}},
		{"draining prefix kept after all", func(d *Document) { d.Prefixes[2].Retired = ptr(now.Add(stDay)) },
			func(t *testing.T, d *Document) { d.Prefixes[2].Retired = nil; d.bump(now) }, now, nil},
		{"addition posing as initial set", nil, func(t *testing.T, d *Document) {
			d.Prefixes = append(d.Prefixes, Prefix{CIDR: stPfx(t, "198.51.100.99/32"), Class: "ipv4", Direction: Egress,
				Service: "proxy", Published: d.CreatedAt, Enabled: d.CreatedAt})
			d.bump(now)
		}, now, []string{"prefixes[4] (198.51.100.99/32): added with enabled 2026-01-02T00:00:00Z only 0s after published", "at least the notice (14 days)"}},
		{"backdated announcement", nil, func(t *testing.T, d *Document) {
			pub := now.Add(-36 * time.Hour) // before the last change (the announce at stT0+1d)
			d.Prefixes = append(d.Prefixes, Prefix{CIDR: stPfx(t, "198.51.100.99/32"), Class: "ipv4", Direction: Egress,
				Service: "proxy", Published: pub, Enabled: pub.Add(14 * stDay)})
			d.bump(now)
		}, now, []string{"prefixes[4] (198.51.100.99/32): added with published 2026-01-02T12:00:00Z, before the previous version's last change (2026-01-03T00:00:00Z)",
			"cannot be backdated"}},
		{"announcement in the same second as the last change", nil, func(t *testing.T, d *Document) {
			pub := stT0.Add(stDay) // the second of the previous token
			d.Prefixes = append(d.Prefixes, Prefix{CIDR: stPfx(t, "198.51.100.99/32"), Class: "ipv4", Direction: Egress,
				Service: "proxy", Published: pub, Enabled: pub.Add(14 * stDay)})
			d.bump(now)
		}, now, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			old := stDoc(t)
			if tc.old != nil {
				tc.old(old)
			}
			nd := old.Clone()
			tc.new(t, nd)
			err := CheckSuccessor(old, nd, tc.now)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			stWantErr(t, err, tc.want...)
		})
	}
	stWantErr(t, CheckSuccessor(nil, stDoc(t), now), "both versions are required")
}

func TestConfig(t *testing.T) {
	if err := Defaults().Validate(); err != nil {
		t.Fatal(err)
	}
	if d := Defaults(); d.Notice != 336*time.Hour || d.MaxAge != 5*time.Minute {
		t.Fatalf("defaults %+v", d)
	}
	tests := []struct {
		edit func(c *Config)
		want string
	}{
		{func(c *Config) { c.Notice = 72 * time.Hour }, "notice: 72h is below the 336h (14 days) minimum the contract promises"},
		{func(c *Config) { c.Notice = 340 * time.Hour }, "notice: 340h is not a whole number of days"},
		{func(c *Config) { c.MaxAge = -time.Second }, "max_age: -1s is negative"},
		{func(c *Config) { c.MaxAge = 1500 * time.Millisecond }, "max_age: 1.5s is not a whole number of seconds"},
		{func(c *Config) { c.SigningKey = "k.pem" }, "signing_key: set, but state is empty"},
	}
	for _, tc := range tests {
		c := Defaults()
		tc.edit(&c)
		stWantErr(t, c.Validate(), tc.want)
	}
	c := Defaults()
	c.State, c.SigningKey, c.Notice, c.MaxAge = "/x", "k.pem", 30*stDay, 0
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}
