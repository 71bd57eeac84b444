package ipranges

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Parse decodes a stored contract strictly: one JSON object and nothing after it, schema_version
// 1, every field present and of its type, no field twice, and no field this version does not
// know — except a per-prefix "status", which is accepted and ignored (it is derived when
// served), so that the output of `fixedgate ipranges show` or a fetched /ip-ranges.json can be
// fed back. "retired" may be null or absent. Times are RFC 3339 (any offset, converted to UTC).
// Strings must be valid UTF-8.
//
// Errors say where: a JSON syntax problem by line and column (a truncated file says so), a
// problem with a value by its path and entry, e.g. `prefixes[3] (203.0.113.11/32): enabled: …`.
// A syntax error is reported alone; otherwise every problem is (up to 20).
//
// Parse checks the format only; the contract's rules are checked by Validate (Load does both).
// It is a single pass written for this schema: encoding/json needs about 60 ms for a contract of
// 10,000 prefixes, this about a quarter of that (BenchmarkLoad10k), and `show` and a reload
// must stay well under 100 ms.
func Parse(data []byte) (*Document, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		if len(data) == 0 {
			return nil, errors.New("the file is empty (0 bytes): that is not a contract (an empty file is never read as an empty contract)")
		}
		return nil, fmt.Errorf("the file holds only white space (%d bytes): that is not a contract", len(data))
	}
	dec := &decoder{data: data}
	d, err := dec.document()
	if err != nil {
		return nil, err
	}
	if err := joinCapped(dec.errs); err != nil {
		return nil, err
	}
	return d, nil
}

// maxDepth bounds the nesting of ignored values (a per-prefix status), so a hostile file cannot
// exhaust the stack.
const maxDepth = 256

// decoder is a one-pass JSON reader for the contract's schema. Syntax errors stop it and are
// returned; problems with values are collected in errs and decoding goes on, so one run
// reports them all.
type decoder struct {
	data      []byte
	pos       int
	depth     int
	errs      []error
	entryCIDR string // the cidr of the prefix or changelog entry being read, to name it in errors
	interned  map[string]string
}

// internedValue reads a string that repeats across entries (class, direction, service,
// facility, action) and returns one shared copy, saving an allocation per entry.
func (d *decoder) internedValue(name string) (string, bool, error) {
	if d.eof() || d.data[d.pos] != '"' {
		return d.stringValue(name, false)
	}
	start := d.pos + 1
	end := bytes.IndexByte(d.data[start:], '"')
	if end < 0 || end > 64 || bytes.IndexByte(d.data[start:start+end], '\\') >= 0 {
		return d.stringValue(name, false)
	}
	raw := d.data[start : start+end]
	if s, ok := d.interned[string(raw)]; ok {
		d.pos = start + end + 1
		return s, true, nil
	}
	s, ok, err := d.stringValue(name, false)
	if ok {
		if d.interned == nil {
			d.interned = make(map[string]string)
		}
		if len(d.interned) < 1024 {
			d.interned[s] = s
		}
	}
	return s, ok, err
}

type syntaxError struct{ msg string }

func (e *syntaxError) Error() string { return e.msg }

func (d *decoder) problem(format string, args ...any) {
	d.errs = append(d.errs, fmt.Errorf(format, args...))
}

func (d *decoder) eof() bool { return d.pos >= len(d.data) }

// syntax returns the syntax error at the current position; at the end of the data, the file is
// truncated.
func (d *decoder) syntax(format string, args ...any) error {
	if d.eof() {
		line, _ := lineCol(d.data, len(d.data))
		return &syntaxError{fmt.Sprintf("truncated JSON: the document ends at byte %d (line %d) before it is complete", len(d.data), line)}
	}
	line, col := lineCol(d.data, d.pos)
	return &syntaxError{fmt.Sprintf("invalid JSON at line %d, column %d: %s", line, col, fmt.Sprintf(format, args...))}
}

// found describes the byte at the current position for syntax errors.
func (d *decoder) found() string {
	if d.eof() {
		return "the end of the file"
	}
	r, _ := utf8.DecodeRune(d.data[d.pos:])
	return strconv.QuoteRune(r)
}

func (d *decoder) ws() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// kind names the JSON type of the value at the current position, for type errors.
func (d *decoder) kind() string {
	if d.eof() {
		return "nothing"
	}
	switch c := d.data[d.pos]; {
	case c == '{':
		return "a JSON object"
	case c == '[':
		return "a JSON array"
	case c == '"':
		return "a JSON string"
	case c == 't' || c == 'f':
		return "a JSON boolean"
	case c == 'n':
		return "JSON null"
	case c == '-' || (c >= '0' && c <= '9'):
		return "a JSON number"
	}
	return "an invalid value"
}

// lineCol returns the 1-based line and column of byte offset off in data.
func lineCol(data []byte, off int) (line, col int) {
	off = max(0, min(off, len(data)))
	line = 1 + bytes.Count(data[:off], []byte{'\n'})
	col = off - bytes.LastIndexByte(data[:off], '\n')
	return line, col
}

// object reads an object at the current position (a '{'), calling field with the position at
// each value; field must consume the value.
func (d *decoder) object(field func(key string) error) error {
	d.depth++
	defer func() { d.depth-- }()
	if d.depth > maxDepth {
		return d.syntax("nested more than %d deep", maxDepth)
	}
	d.pos++ // '{'
	d.ws()
	if !d.eof() && d.data[d.pos] == '}' {
		d.pos++
		return nil
	}
	for {
		d.ws()
		if d.eof() || d.data[d.pos] != '"' {
			return d.syntax("expected a field name in quotes, found %s", d.found())
		}
		key, err := d.str()
		if err != nil {
			return err
		}
		d.ws()
		if d.eof() || d.data[d.pos] != ':' {
			return d.syntax("expected ':' after the field name %q, found %s", key, d.found())
		}
		d.pos++
		d.ws()
		if err := field(key); err != nil {
			return err
		}
		d.ws()
		if d.eof() {
			return d.syntax("")
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case '}':
			d.pos++
			return nil
		default:
			return d.syntax("expected ',' or '}' after the value of %q, found %s", key, d.found())
		}
	}
}

// array reads an array at the current position (a '['), calling elem with the position at each
// element; elem must consume it.
func (d *decoder) array(elem func(i int) error) error {
	d.depth++
	defer func() { d.depth-- }()
	if d.depth > maxDepth {
		return d.syntax("nested more than %d deep", maxDepth)
	}
	d.pos++ // '['
	d.ws()
	if !d.eof() && d.data[d.pos] == ']' {
		d.pos++
		return nil
	}
	for i := 0; ; i++ {
		d.ws()
		if err := elem(i); err != nil {
			return err
		}
		d.ws()
		if d.eof() {
			return d.syntax("")
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case ']':
			d.pos++
			return nil
		default:
			return d.syntax("expected ',' or ']' after an array element, found %s", d.found())
		}
	}
}

// str reads a string at the current position (a '"').
func (d *decoder) str() (string, error) {
	d.pos++ // '"'
	start := d.pos
	ascii := true
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			s := d.data[start:d.pos]
			if !ascii && !utf8.Valid(s) {
				d.pos = start + invalidUTF8(s)
				return "", d.syntax("invalid UTF-8 in a string")
			}
			d.pos++
			return string(s), nil
		case c == '\\':
			return d.strEscaped(start)
		case c < 0x20:
			return "", d.syntax("control character %#02x in a string (write it as an escape)", c)
		case c >= utf8.RuneSelf:
			ascii = false
		}
		d.pos++
	}
	return "", d.syntax("")
}

func invalidUTF8(s []byte) int {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return 0
}

// strEscaped finishes a string that has escapes, from its first backslash. Escapes decode as in
// encoding/json: a lone or mismatched UTF-16 surrogate becomes U+FFFD.
func (d *decoder) strEscaped(start int) (string, error) {
	buf := append([]byte(nil), d.data[start:d.pos]...)
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			d.pos++
			if !utf8.Valid(buf) {
				d.pos = start
				return "", d.syntax("invalid UTF-8 in a string")
			}
			return string(buf), nil
		case c < 0x20:
			return "", d.syntax("control character %#02x in a string (write it as an escape)", c)
		case c != '\\':
			buf = append(buf, c)
			d.pos++
			continue
		}
		d.pos++ // '\\'
		if d.eof() {
			return "", d.syntax("")
		}
		e := d.data[d.pos]
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, err := d.hex4(d.pos + 1)
			if err != nil {
				return "", err
			}
			d.pos += 4
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if d.pos+6 < len(d.data) && d.data[d.pos+1] == '\\' && d.data[d.pos+2] == 'u' {
					if v, ok := hexRune(d.data[d.pos+3 : d.pos+7]); ok {
						r2 = v
					}
				}
				if dr := utf16.DecodeRune(r, r2); dr != unicode.ReplacementChar {
					r = dr
					d.pos += 6
				} else {
					r = unicode.ReplacementChar
				}
			}
			buf = utf8.AppendRune(buf, r)
		default:
			return "", d.syntax("invalid escape %s in a string", strconv.Quote(`\`+string(rune(e))))
		}
		d.pos++
	}
	return "", d.syntax("")
}

// hex4 reads the four hex digits of a \u escape starting at i.
func (d *decoder) hex4(i int) (rune, error) {
	for j := i; j < i+4; j++ {
		if j >= len(d.data) {
			d.pos = len(d.data)
			return 0, d.syntax("")
		}
		if _, ok := hexRune(d.data[j : j+1]); !ok {
			d.pos = j
			return 0, d.syntax("invalid \\u escape: %s is not a hex digit", d.found())
		}
	}
	r, _ := hexRune(d.data[i : i+4])
	return r, nil
}

func hexRune(b []byte) (rune, bool) {
	var r rune
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r*16 + rune(c)
	}
	return r, true
}

// number reads a number at the current position and returns its text.
func (d *decoder) number() (string, error) {
	start := d.pos
	digits := func() error {
		if d.eof() {
			return d.syntax("")
		}
		if c := d.data[d.pos]; c < '0' || c > '9' {
			return d.syntax("invalid number: expected a digit, found %s", d.found())
		}
		for d.pos < len(d.data) && d.data[d.pos] >= '0' && d.data[d.pos] <= '9' {
			d.pos++
		}
		return nil
	}
	if d.data[d.pos] == '-' {
		d.pos++
	}
	if !d.eof() && d.data[d.pos] == '0' {
		d.pos++
	} else if err := digits(); err != nil {
		return "", err
	}
	if !d.eof() && d.data[d.pos] == '.' {
		d.pos++
		if err := digits(); err != nil {
			return "", err
		}
	}
	if !d.eof() && (d.data[d.pos] == 'e' || d.data[d.pos] == 'E') {
		d.pos++
		if !d.eof() && (d.data[d.pos] == '+' || d.data[d.pos] == '-') {
			d.pos++
		}
		if err := digits(); err != nil {
			return "", err
		}
	}
	return string(d.data[start:d.pos]), nil
}

func (d *decoder) literal(word string) error {
	for i := 0; i < len(word); i++ {
		if d.eof() {
			return d.syntax("")
		}
		if d.data[d.pos] != word[i] {
			return d.syntax("invalid literal: expected %q, found %s", word, d.found())
		}
		d.pos++
	}
	return nil
}

// skip reads and discards any value.
func (d *decoder) skip() error {
	if d.eof() {
		return d.syntax("")
	}
	switch c := d.data[d.pos]; {
	case c == '"':
		_, err := d.str()
		return err
	case c == '{':
		return d.object(func(string) error { return d.skip() })
	case c == '[':
		return d.array(func(int) error { return d.skip() })
	case c == 't':
		return d.literal("true")
	case c == 'f':
		return d.literal("false")
	case c == 'n':
		return d.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		_, err := d.number()
		return err
	}
	return d.syntax("expected a value, found %s", d.found())
}

// isNull consumes a null at the current position and reports whether there was one.
func (d *decoder) isNull() (bool, error) {
	if !d.eof() && d.data[d.pos] == 'n' {
		return true, d.literal("null")
	}
	return false, nil
}

// stringValue reads a string for field name; another type is a problem (and skipped), and so is
// null unless nullOK. ok reports whether s holds the string.
func (d *decoder) stringValue(name string, nullOK bool) (s string, ok bool, err error) {
	if !d.eof() && d.data[d.pos] == '"' {
		s, err = d.str()
		return s, err == nil, err
	}
	if null, err := d.isNull(); null || err != nil {
		if null && !nullOK {
			d.problem("%s: null; a string is required", name)
		}
		return "", false, err
	}
	d.problem("%s: expected a string, got %s", name, d.kind())
	return "", false, d.skip()
}

// intValue reads an integer for field name; anything else is a problem (and skipped).
func (d *decoder) intValue(name string) (n int, ok bool, err error) {
	if d.eof() {
		return 0, false, d.syntax("")
	}
	if c := d.data[d.pos]; c != '-' && (c < '0' || c > '9') {
		d.problem("%s: expected an integer, got %s", name, d.kind())
		return 0, false, d.skip()
	}
	text, err := d.number()
	if err != nil {
		return 0, false, err
	}
	v, perr := strconv.Atoi(text)
	if perr != nil {
		d.problem("%s: %s is not an integer", name, text)
		return 0, false, nil
	}
	return v, true, nil
}

// timeValue reads an RFC 3339 time for field name; ok is false for null and for problems
// (recorded).
func (d *decoder) timeValue(name string, nullOK bool) (t time.Time, ok bool, err error) {
	// The form fixedgate writes, "2026-01-02T00:00:00Z", is read straight from the bytes.
	if e := d.pos + 21; e < len(d.data) && d.data[d.pos] == '"' && d.data[e] == '"' {
		if t, ok := fastTime(d.data[d.pos+1 : e]); ok {
			d.pos = e + 1
			return t, true, nil
		}
	}
	s, ok, err := d.stringValue(name, nullOK)
	if !ok || err != nil {
		return time.Time{}, false, err
	}
	v, perr := parseTime(s)
	if perr != nil {
		d.problem("%s: %v", name, perr)
		return time.Time{}, false, nil
	}
	return v, true, nil
}

// fastTime parses exactly "YYYY-MM-DDTHH:MM:SSZ"; anything else (or an invalid date, which
// time.Parse then words) reports false.
func fastTime(b []byte) (time.Time, bool) {
	if len(b) != 20 || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' || b[19] != 'Z' {
		return time.Time{}, false
	}
	num := func(i, n int) int {
		v := 0
		for _, c := range b[i : i+n] {
			if c < '0' || c > '9' {
				return -1
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	year, mon, day, h, m, s := num(0, 4), num(5, 2), num(8, 2), num(11, 2), num(14, 2), num(17, 2)
	if year < 0 || mon < 1 || mon > 12 || day < 1 || h < 0 || h > 23 || m < 0 || m > 59 || s < 0 || s > 59 {
		return time.Time{}, false
	}
	dim := [...]int{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}[mon-1]
	if mon == 2 && year%4 == 0 && (year%100 != 0 || year%400 == 0) {
		dim = 29
	}
	if day > dim {
		return time.Time{}, false
	}
	return time.Date(year, time.Month(mon), day, h, m, s, 0, time.UTC), true
}

// fieldSet tracks which fields of one object were seen, for duplicates and missing fields.
type fieldSet struct {
	names []string
	seen  uint32
}

func (f *fieldSet) index(key string) int {
	for i, n := range f.names {
		if n == key {
			return i
		}
	}
	return -1
}

// see marks key as seen and reports a duplicate as a problem.
func (d *decoder) see(f *fieldSet, i int) {
	if f.seen&(1<<i) != 0 {
		d.problem("field %q appears twice", f.names[i])
	}
	f.seen |= 1 << i
}

func (d *decoder) missing(f *fieldSet, required ...string) {
	for _, name := range required {
		if f.seen&(1<<f.index(name)) == 0 {
			d.problem("%s: missing", name)
		}
	}
}

var (
	topFields    = []string{"schema_version", "sync_token", "created_at", "notice_days", "prefixes", "changelog"}
	prefixFields = []string{"cidr", "class", "direction", "service", "facility", "status", "published", "enabled", "retired"}
	changeFields = []string{"sync_token", "at", "action", "cidr", "direction", "note"}
)

func (d *decoder) document() (*Document, error) {
	d.ws()
	if c := d.data[d.pos]; c != '{' {
		if strings.IndexByte(`["tfn-0123456789`, c) < 0 {
			return nil, d.syntax("expected a JSON object, found %s", d.found())
		}
		kind := d.kind()
		if err := d.skip(); err != nil {
			return nil, err // broken JSON is reported as such first
		}
		if err := d.trailing(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("the document must be a JSON object, not %s", kind)
	}
	doc := &Document{}
	fs := fieldSet{names: topFields}
	schema := -1
	var prefixes, changelog bool
	err := d.object(func(key string) error {
		i := fs.index(key)
		if i < 0 {
			d.problem("unknown field %q at the top level (schema_version %d has: %s)", key, SchemaVersion, strings.Join(topFields, ", "))
			return d.skip()
		}
		d.see(&fs, i)
		var err error
		switch key {
		case "schema_version":
			var ok bool
			if schema, ok, err = d.intValue(key); ok {
				doc.SchemaVersion = schema
			}
		case "sync_token":
			doc.SyncToken, _, err = d.stringValue(key, false)
		case "created_at":
			doc.CreatedAt, _, err = d.timeValue(key, false)
		case "notice_days":
			doc.NoticeDays, _, err = d.intValue(key)
		case "prefixes":
			prefixes = true
			// Capacity hints (a fast count; a note mentioning the word only over-allocates).
			doc.Prefixes = make([]Prefix, 0, bytes.Count(d.data, []byte(`"enabled"`)))
			err = d.entries(key, func() error {
				doc.Prefixes = append(doc.Prefixes, Prefix{})
				return d.prefix(&doc.Prefixes[len(doc.Prefixes)-1])
			})
			if doc.Prefixes == nil {
				doc.Prefixes = []Prefix{}
			}
		case "changelog":
			changelog = true
			doc.Changelog = make([]Change, 0, bytes.Count(d.data, []byte(`"action"`)))
			err = d.entries(key, func() error {
				doc.Changelog = append(doc.Changelog, Change{})
				return d.change(&doc.Changelog[len(doc.Changelog)-1])
			})
			if doc.Changelog == nil {
				doc.Changelog = []Change{}
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := d.trailing(); err != nil {
		return nil, err
	}
	// A document of another schema version is reported as that alone: its other differences
	// follow from it.
	switch {
	case fs.seen&1 == 0:
		return nil, fmt.Errorf("schema_version: missing (this build reads %d)", SchemaVersion)
	case schema != -1 && schema != SchemaVersion:
		return nil, fmt.Errorf("schema_version: %d is not supported by this build (it reads %d)", schema, SchemaVersion)
	}
	d.missing(&fs, "sync_token", "created_at", "notice_days")
	if !prefixes {
		d.problem("prefixes: missing (an array, possibly empty, is required)")
	}
	if !changelog {
		d.problem("changelog: missing (an array, possibly empty, is required)")
	}
	return doc, nil
}

// trailing refuses anything but white space after the document.
func (d *decoder) trailing() error {
	d.ws()
	if !d.eof() {
		line, col := lineCol(d.data, d.pos)
		return &syntaxError{fmt.Sprintf("trailing data after the document at line %d, column %d: only one JSON object is allowed", line, col)}
	}
	return nil
}

// entries reads the array of prefixes or changelog entries; element reads one object and
// reports its problems, which entries prefixes with `key[i] (cidr)`.
func (d *decoder) entries(key string, element func() error) error {
	if null, err := d.isNull(); null || err != nil {
		if null {
			d.problem("%s: null; an array (possibly empty) is required", key)
		}
		return err
	}
	if d.eof() || d.data[d.pos] != '[' {
		d.problem("%s: must be an array of objects, not %s", key, d.kind())
		return d.skip()
	}
	return d.array(func(i int) error {
		if d.eof() || d.data[d.pos] != '{' {
			d.problem("%s[%d]: must be an object, not %s", key, i, d.kind())
			return d.skip()
		}
		mark := len(d.errs)
		d.entryCIDR = ""
		if err := element(); err != nil {
			return err
		}
		if len(d.errs) > mark {
			name := fmt.Sprintf("%s[%d]", key, i)
			if d.entryCIDR != "" {
				name += " (" + d.entryCIDR + ")"
			}
			for j := mark; j < len(d.errs); j++ {
				d.errs[j] = fmt.Errorf("%s: %w", name, d.errs[j])
			}
		}
		return nil
	})
}

func (d *decoder) prefix(p *Prefix) error {
	fs := fieldSet{names: prefixFields}
	err := d.object(func(key string) error {
		i := fs.index(key)
		if i < 0 {
			d.problem("unknown field %q (only the fields of schema_version %d are allowed)", key, SchemaVersion)
			return d.skip()
		}
		d.see(&fs, i)
		var err error
		var s string
		var ok bool
		switch key {
		case "cidr":
			if s, ok, err = d.stringValue(key, false); ok {
				d.entryCIDR = s
				var perr error
				if p.CIDR, perr = parseCIDR(s); perr != nil {
					d.problem("cidr: %v", perr)
				}
			}
		case "class":
			p.Class, _, err = d.internedValue(key)
		case "direction":
			s, _, err = d.internedValue(key)
			p.Direction = Direction(s)
		case "service":
			p.Service, _, err = d.internedValue(key)
		case "facility":
			p.Facility, _, err = d.internedValue(key)
		case "status":
			err = d.skip() // derived when served; accepted and ignored
		case "published":
			p.Published, _, err = d.timeValue(key, false)
		case "enabled":
			p.Enabled, _, err = d.timeValue(key, false)
		case "retired":
			var t time.Time
			if t, ok, err = d.timeValue(key, true); ok {
				p.Retired = &t
			}
		}
		return err
	})
	if err != nil {
		return err
	}
	d.missing(&fs, "cidr", "class", "direction", "service", "facility", "published", "enabled")
	return nil
}

func (d *decoder) change(c *Change) error {
	fs := fieldSet{names: changeFields}
	err := d.object(func(key string) error {
		i := fs.index(key)
		if i < 0 {
			d.problem("unknown field %q (only the fields of schema_version %d are allowed)", key, SchemaVersion)
			return d.skip()
		}
		d.see(&fs, i)
		var err error
		switch key {
		case "sync_token":
			c.SyncToken, _, err = d.stringValue(key, false)
		case "at":
			c.At, _, err = d.timeValue(key, false)
		case "action":
			c.Action, _, err = d.internedValue(key)
		case "cidr":
			var ok bool
			if c.CIDR, ok, err = d.stringValue(key, false); ok {
				d.entryCIDR = c.CIDR
			}
		case "direction":
			var s string
			s, _, err = d.stringValue(key, true)
			c.Direction = Direction(s)
		case "note":
			c.Note, _, err = d.stringValue(key, true)
		}
		return err
	})
	if err != nil {
		return err
	}
	d.missing(&fs, "sync_token", "at", "action", "cidr")
	return nil
}

// parseTime reads an RFC 3339 time and returns it in UTC.
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time (e.g. 2026-01-02T00:00:00Z)", s)
	}
	return t.UTC(), nil
}

// parseCIDR reads a prefix as written in the document. Canonical form (no host bits, no
// IPv4-mapped IPv6) is a rule checked by Validate, so a hand-edited file gets the rule's message.
func parseCIDR(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		if a, aerr := netip.ParseAddr(s); aerr == nil {
			return netip.Prefix{}, fmt.Errorf("%q has no prefix length; write %s/%d", s, a.WithZone(""), a.BitLen())
		}
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix: %v", s, strings.TrimPrefix(err.Error(), "netip.ParsePrefix("+strconv.Quote(s)+"): "))
	}
	return p, nil
}

// maxReported bounds how many problems one error lists, so a wildly wrong file stays readable.
const maxReported = 20

func joinCapped(errs []error) error {
	if len(errs) > maxReported {
		errs = append(errs[:maxReported:maxReported], fmt.Errorf("… and %d more problems", len(errs)-maxReported))
	}
	return errors.Join(errs...)
}
