package ipranges

import (
	"bytes"
	stdjson "encoding/json"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Filter selects the prefixes of a served view; a zero field selects everything.
type Filter struct {
	Direction Direction
	Status    Status
}

// Render returns the document as served at now: every prefix (that f selects) with its derived
// status, in the document's order, indented, ending in a newline. The same document, time and
// filter always give the same bytes, so ETags and signatures are stable (TestGolden).
func Render(d *Document, now time.Time, f Filter) ([]byte, error) {
	return encode(d, now, f, true)
}

// Marshal returns the stored form of the document, as Save writes it: Render's layout without
// the per-prefix status (status is derived when served, never stored). The same document always
// gives the same bytes, so two versions can be compared byte for byte.
func Marshal(d *Document) ([]byte, error) {
	return encode(d, time.Time{}, Filter{}, false)
}

// The served and stored layouts, field for field in the document's order. Times are written
// by us, in UTC, so that no time zone or year range of time.Time's own encoding changes them.
type (
	outDoc struct {
		SchemaVersion int         `json:"schema_version"`
		SyncToken     string      `json:"sync_token"`
		CreatedAt     string      `json:"created_at"`
		NoticeDays    int         `json:"notice_days"`
		Prefixes      []outPrefix `json:"prefixes"`
		Changelog     []outChange `json:"changelog"`
	}
	outPrefix struct {
		CIDR      string  `json:"cidr"`
		Class     string  `json:"class"`
		Direction string  `json:"direction"`
		Service   string  `json:"service"`
		Facility  string  `json:"facility"`
		Status    string  `json:"status,omitempty"`
		Published string  `json:"published"`
		Enabled   string  `json:"enabled"`
		Retired   *string `json:"retired"`
	}
	outChange struct {
		SyncToken string `json:"sync_token"`
		At        string `json:"at"`
		Action    string `json:"action"`
		CIDR      string `json:"cidr"`
		Direction string `json:"direction,omitempty"`
		Note      string `json:"note,omitempty"`
	}
)

// encode writes the document with go-json-experiment/json in the layout encoding/json's indented
// Encoder (HTML escaping off) gives, which the contract has always had: two spaces, HTML
// characters as they are, U+2028 and U+2029 escaped (TestGolden). encoding/json itself writes
// the same bytes three times slower (it indents a compact copy).
func encode(d *Document, now time.Time, f Filter, withStatus bool) ([]byte, error) {
	out := outDoc{SchemaVersion: d.SchemaVersion, SyncToken: d.SyncToken, CreatedAt: utc(d.CreatedAt),
		NoticeDays: d.NoticeDays, Prefixes: make([]outPrefix, 0, len(d.Prefixes)), Changelog: make([]outChange, 0, len(d.Changelog))}
	valid := utf8.ValidString(d.SyncToken) // every string; else encoding/json writes it (below)
	for i := range d.Prefixes {
		p := &d.Prefixes[i]
		var st Status
		if withStatus {
			st = p.Status(now)
		}
		if (f.Direction != "" && p.Direction != f.Direction) || (f.Status != "" && st != f.Status) {
			continue
		}
		op := outPrefix{CIDR: p.CIDR.String(), Class: p.Class, Direction: string(p.Direction), Service: p.Service,
			Facility: p.Facility, Status: string(st), Published: utc(p.Published), Enabled: utc(p.Enabled)}
		valid = valid && utf8.ValidString(p.Class) && utf8.ValidString(string(p.Direction)) &&
			utf8.ValidString(p.Service) && utf8.ValidString(p.Facility)
		if p.Retired != nil {
			r := utc(*p.Retired)
			op.Retired = &r
		}
		out.Prefixes = append(out.Prefixes, op)
	}
	for i := range d.Changelog {
		c := &d.Changelog[i]
		out.Changelog = append(out.Changelog, outChange{SyncToken: c.SyncToken, At: utc(c.At), Action: c.Action,
			CIDR: c.CIDR, Direction: string(c.Direction), Note: c.Note})
		valid = valid && utf8.ValidString(c.SyncToken) && utf8.ValidString(c.Action) && utf8.ValidString(c.CIDR) &&
			utf8.ValidString(string(c.Direction)) && utf8.ValidString(c.Note)
	}
	if !valid {
		var b bytes.Buffer
		// Invalid UTF-8 (only in a document built by hand, never in one Parse read): written
		// with "\ufffd" escapes, as the contract always has been, which encoding/json does and
		// go-json-experiment does not. Same layout, slower.
		e := stdjson.NewEncoder(&b)
		e.SetEscapeHTML(false)
		e.SetIndent("", "  ")
		if err := e.Encode(out); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	}
	w := &appendWriter{b: make([]byte, 0, 1024+330*len(d.Prefixes)+220*len(d.Changelog))}
	if err := json.MarshalWrite(w, out, jsontext.WithIndent("  "), jsontext.EscapeForHTML(false), jsontext.EscapeForJS(true)); err != nil {
		return nil, err
	}
	return append(w.b, '\n'), nil
}

// appendWriter collects what the encoder writes in one slice, sized beforehand.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

func utc(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
