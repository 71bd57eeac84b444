package ipranges

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// Filter selects the prefixes of a served view; a zero field selects everything.
type Filter struct {
	Direction Direction
	Status    Status
}

// Render returns the document as served at now: every prefix (that f selects) with its derived
// status, in the document's order, indented, ending in a newline. The same document, time and
// filter always give the same bytes, so ETags and signatures are stable.
func Render(d *Document, now time.Time, f Filter) ([]byte, error) {
	return encode(d, now, f, true)
}

// Marshal returns the stored form of the document, as Save writes it: Render's layout without
// the per-prefix status (status is derived when served, never stored). The same document always
// gives the same bytes, so two versions can be compared byte for byte.
func Marshal(d *Document) ([]byte, error) {
	return encode(d, time.Time{}, Filter{}, false)
}

// encode writes the document the way encoding/json's indented Encoder (with HTML escaping off)
// would write the served structure — same layout, field order and escaping, which
// TestRenderMatchesReference checks — but without reflection: about ten times faster, which
// matters for a contract of 10,000 prefixes (`show`, and each re-render when a status changes).
// Times are written in UTC.
func encode(d *Document, now time.Time, f Filter, withStatus bool) ([]byte, error) {
	b := make([]byte, 0, 256+300*len(d.Prefixes)+200*len(d.Changelog))
	b = append(b, "{\n  \"schema_version\": "...)
	b = strconv.AppendInt(b, int64(d.SchemaVersion), 10)
	b = append(b, ",\n  \"sync_token\": "...)
	b = appendString(b, d.SyncToken)
	b = append(b, ",\n  \"created_at\": "...)
	b = appendTime(b, d.CreatedAt)
	b = append(b, ",\n  \"notice_days\": "...)
	b = strconv.AppendInt(b, int64(d.NoticeDays), 10)
	b = append(b, ",\n  \"prefixes\": ["...)
	n := 0
	for i := range d.Prefixes {
		p := &d.Prefixes[i]
		var st Status
		if withStatus {
			st = p.Status(now)
		}
		if (f.Direction != "" && p.Direction != f.Direction) || (f.Status != "" && st != f.Status) {
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = append(b, "\n    {\n      \"cidr\": "...)
		b = appendString(b, p.CIDR.String())
		b = append(b, ",\n      \"class\": "...)
		b = appendString(b, p.Class)
		b = append(b, ",\n      \"direction\": "...)
		b = appendString(b, string(p.Direction))
		b = append(b, ",\n      \"service\": "...)
		b = appendString(b, p.Service)
		b = append(b, ",\n      \"facility\": "...)
		b = appendString(b, p.Facility)
		if st != "" {
			b = append(b, ",\n      \"status\": "...)
			b = appendString(b, string(st))
		}
		b = append(b, ",\n      \"published\": "...)
		b = appendTime(b, p.Published)
		b = append(b, ",\n      \"enabled\": "...)
		b = appendTime(b, p.Enabled)
		b = append(b, ",\n      \"retired\": "...)
		if p.Retired != nil {
			b = appendTime(b, *p.Retired)
		} else {
			b = append(b, "null"...)
		}
		b = append(b, "\n    }"...)
	}
	if n > 0 {
		b = append(b, "\n  "...)
	}
	b = append(b, "],\n  \"changelog\": ["...)
	for i := range d.Changelog {
		c := &d.Changelog[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, "\n    {\n      \"sync_token\": "...)
		b = appendString(b, c.SyncToken)
		b = append(b, ",\n      \"at\": "...)
		b = appendTime(b, c.At)
		b = append(b, ",\n      \"action\": "...)
		b = appendString(b, c.Action)
		b = append(b, ",\n      \"cidr\": "...)
		b = appendString(b, c.CIDR)
		if c.Direction != "" {
			b = append(b, ",\n      \"direction\": "...)
			b = appendString(b, string(c.Direction))
		}
		if c.Note != "" {
			b = append(b, ",\n      \"note\": "...)
			b = appendString(b, c.Note)
		}
		b = append(b, "\n    }"...)
	}
	if len(d.Changelog) > 0 {
		b = append(b, "\n  "...)
	}
	b = append(b, "]\n}\n"...)
	return b, nil
}

func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string escaped exactly as encoding/json does with HTML
// escaping off: quote, backslash and control characters escaped (\b \f \n \r \t by name),
// invalid UTF-8 replaced by \ufffd, and U+2028 and U+2029 escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
