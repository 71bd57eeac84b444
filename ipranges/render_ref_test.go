package ipranges

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// The encoding/json implementation of Render and Marshal that the hand-written encoder
// replaced; TestRenderMatchesReference and FuzzRender hold the two to the same bytes.

// refServedPrefix is a Prefix as served: with its status at the time of rendering.
type refServedPrefix struct {
	CIDR      string     `json:"cidr"`
	Class     string     `json:"class"`
	Direction Direction  `json:"direction"`
	Service   string     `json:"service"`
	Facility  string     `json:"facility"`
	Status    Status     `json:"status,omitempty"` // empty only in the stored form (Marshal)
	Published time.Time  `json:"published"`
	Enabled   time.Time  `json:"enabled"`
	Retired   *time.Time `json:"retired"`
}

type refServedDocument struct {
	SchemaVersion int               `json:"schema_version"`
	SyncToken     string            `json:"sync_token"`
	CreatedAt     time.Time         `json:"created_at"`
	NoticeDays    int               `json:"notice_days"`
	Prefixes      []refServedPrefix `json:"prefixes"`
	Changelog     []Change          `json:"changelog"`
}

func refEncode(d *Document, now time.Time, f Filter, withStatus bool) ([]byte, error) {
	out := refServedDocument{
		SchemaVersion: d.SchemaVersion,
		SyncToken:     d.SyncToken,
		CreatedAt:     d.CreatedAt.UTC(),
		NoticeDays:    d.NoticeDays,
		Prefixes:      make([]refServedPrefix, 0, len(d.Prefixes)),
		Changelog:     d.Changelog,
	}
	if out.Changelog == nil {
		out.Changelog = []Change{}
	}
	for i := range d.Prefixes {
		p := &d.Prefixes[i]
		var st Status
		if withStatus {
			st = p.Status(now)
		}
		if (f.Direction != "" && p.Direction != f.Direction) || (f.Status != "" && st != f.Status) {
			continue
		}
		sp := refServedPrefix{
			CIDR: p.CIDR.String(), Class: p.Class, Direction: p.Direction, Service: p.Service,
			Facility: p.Facility, Status: st, Published: p.Published.UTC(), Enabled: p.Enabled.UTC(),
		}
		if p.Retired != nil {
			r := p.Retired.UTC()
			sp.Retired = &r
		}
		out.Prefixes = append(out.Prefixes, sp)
	}
	var buf bytes.Buffer
	buf.Grow(256 + 220*len(out.Prefixes) + 120*len(out.Changelog))
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		return nil, fmt.Errorf("render contract: %w", err)
	}
	return buf.Bytes(), nil
}

// renderCases renders d both ways for a few times and filters and fails on any difference.
func checkRenderAgainstReference(t *testing.T, d *Document) {
	t.Helper()
	for _, now := range []time.Time{stT0, stT0.Add(20 * stDay), stT0.Add(400 * stDay)} {
		for _, f := range []Filter{{}, {Direction: Egress}, {Status: Announced}, {Direction: Ingress, Status: Active}, {Status: Retired}} {
			got, err1 := Render(d, now, f)
			want, err2 := refEncode(d, now, f, true)
			if err1 != nil || err2 != nil || !bytes.Equal(got, want) {
				t.Fatalf("Render at %v %+v differs (%v, %v):\n%s\nreference:\n%s", now, f, err1, err2, got, want)
			}
		}
	}
	got, _ := Marshal(d)
	want, _ := refEncode(d, time.Time{}, Filter{}, false)
	if !bytes.Equal(got, want) {
		t.Fatalf("Marshal differs:\n%s\nreference:\n%s", got, want)
	}
}

func TestRenderMatchesReference(t *testing.T) {
	d := stDoc(t)
	if err := d.Retire(stPfx(t, "2001:db8::10/128"), stDay, RetireOptions{}, stT0.Add(2*stDay)); err != nil {
		t.Fatal(err)
	}
	checkRenderAgainstReference(t, d)
	odd := "\x00\x01\x1f\"\\<>&/\b\f\n\r\t\x7f é 😀 \u2028\u2029 \xff\xfe\xc3 end"
	d.Prefixes[0].Facility = odd
	d.Prefixes[1].Service = odd
	d.Changelog[0].Note = odd
	d.Changelog[1].Direction = ""
	d.Changelog[2].Note = ""
	d.SyncToken = odd
	d.Prefixes[2].Published = d.Prefixes[2].Published.Add(123456789 * time.Nanosecond)
	checkRenderAgainstReference(t, d)
	checkRenderAgainstReference(t, &Document{SchemaVersion: 1, CreatedAt: stT0})           // nil slices
	checkRenderAgainstReference(t, &Document{Prefixes: []Prefix{}, Changelog: []Change{}}) // empty slices
	// Large: one view and the stored form (encoding/json is slow under -race).
	big := big10k(t)
	now := stT0.Add(20 * stDay)
	got, _ := Render(big, now, Filter{})
	want, _ := refEncode(big, now, Filter{}, true)
	gotM, _ := Marshal(big)
	wantM, _ := refEncode(big, time.Time{}, Filter{}, false)
	if !bytes.Equal(got, want) || !bytes.Equal(gotM, wantM) {
		t.Fatal("the 10,000-prefix contract renders differently")
	}
	// Times are always written in UTC (the encoding/json version kept a changelog time's zone).
	d.Prefixes[0].Published = d.Prefixes[0].Published.In(time.FixedZone("X", 3600))
	if out, _ := Render(d, stT0, Filter{}); !bytes.Contains(out, []byte(`"published": "2026-01-02T00:00:00Z"`)) {
		t.Fatalf("not UTC:\n%s", out)
	}
}

func FuzzRender(f *testing.F) {
	f.Add("us-east-1", "proxy", "note", "ingress")
	f.Add("\x00\u2028\xff", "\"\\", "<&>", "\x7f")
	f.Fuzz(func(t *testing.T, facility, service, note, dir string) {
		d := stDoc(t)
		d.Prefixes[0].Facility, d.Prefixes[1].Service, d.Changelog[0].Note = facility, service, note
		d.Prefixes[2].Direction, d.Changelog[1].Direction, d.Changelog[2].Action = Direction(dir), Direction(dir), note
		checkRenderAgainstReference(t, d)
	})
}
