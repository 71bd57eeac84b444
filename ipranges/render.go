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
		SyncToken     text        `json:"sync_token"`
		CreatedAt     text        `json:"created_at"`
		NoticeDays    int         `json:"notice_days"`
		Prefixes      []outPrefix `json:"prefixes"`
		Changelog     []outChange `json:"changelog"`
	}
	outPrefix struct {
		CIDR      text  `json:"cidr"`
		Class     text  `json:"class"`
		Direction text  `json:"direction"`
		Service   text  `json:"service"`
		Facility  text  `json:"facility"`
		Status    text  `json:"status,omitempty"`
		Published text  `json:"published"`
		Enabled   text  `json:"enabled"`
		Retired   *text `json:"retired"`
	}
	outChange struct {
		SyncToken text `json:"sync_token"`
		At        text `json:"at"`
		Action    text `json:"action"`
		CIDR      text `json:"cidr"`
		Direction text `json:"direction,omitempty"`
		Note      text `json:"note,omitempty"`
	}
)

// encode writes the document with go-json-experiment/json in the layout encoding/json's indented
// Encoder (HTML escaping off) gives, which the contract has always had: two spaces, HTML
// characters as they are, invalid UTF-8 replaced by U+FFFD, U+2028 and U+2029 escaped.
// (encoding/json itself writes the same bytes ten times slower: it indents a compact copy.)
func encode(d *Document, now time.Time, f Filter, withStatus bool) ([]byte, error) {
	out := outDoc{SchemaVersion: d.SchemaVersion, SyncToken: text(d.SyncToken), CreatedAt: utc(d.CreatedAt),
		NoticeDays: d.NoticeDays, Prefixes: make([]outPrefix, 0, len(d.Prefixes)), Changelog: make([]outChange, 0, len(d.Changelog))}
	for i := range d.Prefixes {
		p := &d.Prefixes[i]
		var st Status
		if withStatus {
			st = p.Status(now)
		}
		if (f.Direction != "" && p.Direction != f.Direction) || (f.Status != "" && st != f.Status) {
			continue
		}
		op := outPrefix{CIDR: text(p.CIDR.String()), Class: text(p.Class), Direction: text(p.Direction), Service: text(p.Service),
			Facility: text(p.Facility), Status: text(st), Published: utc(p.Published), Enabled: utc(p.Enabled)}
		if p.Retired != nil {
			r := utc(*p.Retired)
			op.Retired = &r
		}
		out.Prefixes = append(out.Prefixes, op)
	}
	for i := range d.Changelog {
		c := &d.Changelog[i]
		out.Changelog = append(out.Changelog, outChange{SyncToken: text(c.SyncToken), At: utc(c.At), Action: text(c.Action),
			CIDR: text(c.CIDR), Direction: text(c.Direction), Note: text(c.Note)})
	}
	var b bytes.Buffer
	b.Grow(256 + 300*len(d.Prefixes) + 200*len(d.Changelog))
	if err := json.MarshalWrite(&b, out, jsontext.WithIndent("  "), jsontext.EscapeForHTML(false),
		jsontext.EscapeForJS(true), jsontext.PreserveRawStrings(true)); err != nil {
		return nil, err
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}

func utc(t time.Time) text { return text(t.UTC().Format(time.RFC3339Nano)) }

// text is a string of the document as written out. Valid UTF-8 (every string Parse accepts) is
// encoded by go-json-experiment; a string with invalid bytes (possible only from a hand-built
// document) is escaped by encoding/json, whose "\ufffd" escapes the contract has always had.
type text string

func (s text) MarshalJSONTo(enc *jsontext.Encoder) error {
	if utf8.ValidString(string(s)) {
		return enc.WriteToken(jsontext.String(string(s)))
	}
	var b bytes.Buffer
	e := stdjson.NewEncoder(&b)
	e.SetEscapeHTML(false)
	if err := e.Encode(string(s)); err != nil {
		return err
	}
	return enc.WriteValue(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
}
