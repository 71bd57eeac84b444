package ipranges

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
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
// A syntax error is reported alone; otherwise every problem with a value is (up to 20).
//
// The JSON is read by go-json-experiment/json (duplicate names, invalid UTF-8 and trailing data
// are its errors); every field is taken as a raw value first, so that presence, type and meaning
// are checked here, field by field, with those messages. Parse checks the format only; the
// contract's rules are checked by Validate (Load does both).
func Parse(data []byte) (*Document, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		if len(data) == 0 {
			return nil, errors.New("the file is empty (0 bytes): that is not a contract (an empty file is never read as an empty contract)")
		}
		return nil, fmt.Errorf("the file holds only white space (%d bytes): that is not a contract", len(data))
	}
	var w wireDoc
	// Room for every entry at once, from the number of objects (a fast count that errs high),
	// so that the entries are not copied as the slices grow.
	objects := bytes.Count(data, []byte{'{'})
	w.Prefixes.items = make([]wirePrefix, 0, objects)
	w.Changelog.items = make([]wireChange, 0, objects)
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, readErr(data, err)
	}
	switch n, ok, err := intOf(w.SchemaVersion); {
	case !w.SchemaVersion.set:
		return nil, fmt.Errorf("schema_version: missing (this build reads %d)", SchemaVersion)
	case err != nil:
		return nil, fmt.Errorf("schema_version: %w", err)
	case ok && n != SchemaVersion:
		// Another schema version is reported alone: its other differences follow from it.
		return nil, fmt.Errorf("schema_version: %d is not supported by this build (it reads %d)", n, SchemaVersion)
	}
	p := &problems{}
	doc := &Document{SchemaVersion: SchemaVersion}
	for _, name := range unknownNames(w.Unknown) {
		p.add("", fmt.Errorf("unknown field %q at the top level (schema_version %d has: %s)", name, SchemaVersion, strings.Join(topFields, ", ")))
	}
	doc.SyncToken = p.str(nil, "sync_token", w.SyncToken)
	doc.CreatedAt = p.time(nil, "created_at", w.CreatedAt)
	if n, ok, err := intOf(w.NoticeDays); err != nil {
		p.add("notice_days", err)
	} else if !ok {
		p.add("notice_days", errors.New("missing"))
	} else {
		doc.NoticeDays = n
	}
	if p.array("prefixes", w.Prefixes.field) {
		doc.Prefixes = make([]Prefix, len(w.Prefixes.items))
		for i := range w.Prefixes.items {
			p.prefix(i, &w.Prefixes.items[i], &doc.Prefixes[i])
		}
	}
	if p.array("changelog", w.Changelog.field) {
		doc.Changelog = make([]Change, len(w.Changelog.items))
		for i := range w.Changelog.items {
			p.change(i, &w.Changelog.items[i], &doc.Changelog[i])
		}
	}
	if err := joinCapped(p.errs); err != nil {
		return nil, err
	}
	return doc, nil
}

// The document as read: each field's presence, JSON kind and (for strings and numbers) text,
// and the fields this version does not know gathered in Unknown.
type (
	wireDoc struct {
		SchemaVersion field            `json:"schema_version"`
		SyncToken     field            `json:"sync_token"`
		CreatedAt     field            `json:"created_at"`
		NoticeDays    field            `json:"notice_days"`
		Prefixes      list[wirePrefix] `json:"prefixes"`
		Changelog     list[wireChange] `json:"changelog"`
		Unknown       jsontext.Value   `json:",embed"`
	}
	wirePrefix struct {
		CIDR      field          `json:"cidr"`
		Class     field          `json:"class"`
		Direction field          `json:"direction"`
		Service   field          `json:"service"`
		Facility  field          `json:"facility"`
		Status    field          `json:"status"` // derived when served: accepted and ignored
		Published field          `json:"published"`
		Enabled   field          `json:"enabled"`
		Retired   field          `json:"retired"`
		Unknown   jsontext.Value `json:",embed"`
	}
	wireChange struct {
		SyncToken field          `json:"sync_token"`
		At        field          `json:"at"`
		Action    field          `json:"action"`
		CIDR      field          `json:"cidr"`
		Direction field          `json:"direction"`
		Note      field          `json:"note"`
		Unknown   jsontext.Value `json:",embed"`
	}
)

// field is one member's value as read: whether it was there, its kind, and the text of a string
// (unquoted) or a number; other values are skipped, their kind kept for the message.
type field struct {
	set  bool
	kind jsontext.Kind
	s    string
}

func (f *field) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	f.set, f.kind = true, dec.PeekKind()
	if f.kind != '"' && f.kind != '0' {
		return dec.SkipValue()
	}
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	f.s = tok.String()
	return nil
}

// list is an array member: its entries when it is an array, else only what field records.
type list[T any] struct {
	field
	items []T
}

func (l *list[T]) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	l.set, l.kind = true, dec.PeekKind()
	if l.kind != '[' {
		return dec.SkipValue()
	}
	return json.UnmarshalDecode(dec, &l.items)
}

var topFields = []string{"schema_version", "sync_token", "created_at", "notice_days", "prefixes", "changelog"}

// problems collects what is wrong with the values, each named by its entry and field.
type problems struct{ errs []error }

func (p *problems) add(where string, err error) {
	if where != "" {
		err = fmt.Errorf("%s: %w", where, err)
	}
	p.errs = append(p.errs, err)
}

// entry names the prefix or changelog entry a field belongs to; nil for the top level. The name
// is made only when a problem needs it.
type entry struct {
	list string
	i    int
	cidr field
}

func (e *entry) String() string {
	if s, ok, err := strOf(e.cidr); ok && err == nil {
		return fmt.Sprintf("%s[%d] (%s)", e.list, e.i, s)
	}
	return fmt.Sprintf("%s[%d]", e.list, e.i)
}

func at(e *entry, name string) string {
	if e == nil {
		return name
	}
	return e.String() + ": " + name
}

// str reads a required string field.
func (p *problems) str(entry *entry, name string, v field) string {
	s, ok, err := strOf(v)
	switch {
	case err != nil:
		p.add(at(entry, name), err)
	case !ok:
		p.add(at(entry, name), errors.New("missing"))
	}
	return s
}

// optStr reads a string field that may be absent.
func (p *problems) optStr(entry *entry, name string, v field) string {
	s, _, err := strOf(v)
	if err != nil {
		p.add(at(entry, name), err)
	}
	return s
}

// time reads a required RFC 3339 time field.
func (p *problems) time(entry *entry, name string, v field) time.Time {
	s, ok, err := strOf(v)
	switch {
	case err != nil:
		p.add(at(entry, name), err)
	case !ok:
		p.add(at(entry, name), errors.New("missing"))
	default:
		t, err := parseTime(s)
		if err != nil {
			p.add(at(entry, name), err)
		}
		return t
	}
	return time.Time{}
}

// array checks a required array member; it reports whether its entries were read.
func (p *problems) array(name string, f field) bool {
	switch {
	case !f.set:
		p.add(name, errors.New("missing (an array, possibly empty, is required)"))
	case f.kind == 'n':
		p.add(name, errors.New("null; an array (possibly empty) is required"))
	case f.kind != '[':
		p.add(name, fmt.Errorf("must be an array of objects, not %s", kindName(f.kind)))
	default:
		return true
	}
	return false
}

func (p *problems) unknown(e *entry, v jsontext.Value) {
	for _, name := range unknownNames(v) {
		p.add(e.String(), fmt.Errorf("unknown field %q (only the fields of schema_version %d are allowed)", name, SchemaVersion))
	}
}

func (p *problems) prefix(i int, w *wirePrefix, out *Prefix) {
	e := &entry{"prefixes", i, w.CIDR}
	p.unknown(e, w.Unknown)
	if s, ok, err := strOf(w.CIDR); err != nil {
		p.add(at(e, "cidr"), err)
	} else if !ok {
		p.add(at(e, "cidr"), errors.New("missing"))
	} else if out.CIDR, err = parseCIDR(s); err != nil { // "" too (found by FuzzParse)
		p.add(at(e, "cidr"), err)
	}
	out.Class = p.str(e, "class", w.Class)
	out.Direction = Direction(p.str(e, "direction", w.Direction))
	out.Service = p.str(e, "service", w.Service)
	out.Facility = p.str(e, "facility", w.Facility)
	out.Published = p.time(e, "published", w.Published)
	out.Enabled = p.time(e, "enabled", w.Enabled)
	if w.Retired.set && w.Retired.kind != 'n' {
		r := p.time(e, "retired", w.Retired)
		out.Retired = &r
	}
}

func (p *problems) change(i int, w *wireChange, out *Change) {
	e := &entry{"changelog", i, w.CIDR}
	p.unknown(e, w.Unknown)
	out.SyncToken = p.str(e, "sync_token", w.SyncToken)
	out.At = p.time(e, "at", w.At)
	out.Action = p.str(e, "action", w.Action)
	out.CIDR = p.str(e, "cidr", w.CIDR)
	out.Direction = Direction(p.optStr(e, "direction", w.Direction))
	out.Note = p.optStr(e, "note", w.Note)
}

// strOf reads a JSON string; ok is false when the field is absent.
func strOf(f field) (s string, ok bool, err error) {
	switch {
	case !f.set:
		return "", false, nil
	case f.kind != '"':
		return "", true, fmt.Errorf("expected a string, got %s", kindName(f.kind))
	}
	return f.s, true, nil
}

// intOf reads a JSON integer; ok is false when the field is absent.
func intOf(f field) (n int, ok bool, err error) {
	switch {
	case !f.set:
		return 0, false, nil
	case f.kind != '0':
		return 0, true, fmt.Errorf("expected an integer, got %s", kindName(f.kind))
	}
	n, err = strconv.Atoi(f.s)
	if err != nil {
		return 0, true, fmt.Errorf("expected an integer, got %s", f.s)
	}
	return n, true, nil
}

// unknownNames lists the member names of the object of unknown fields, in order.
func unknownNames(v jsontext.Value) []string {
	if len(v) == 0 {
		return nil
	}
	var m []string
	dec := jsontext.NewDecoder(bytes.NewReader(v))
	if _, err := dec.ReadToken(); err != nil { // {
		return nil
	}
	for dec.PeekKind() == '"' {
		tok, err := dec.ReadToken()
		if err != nil {
			break
		}
		m = append(m, tok.String())
		if err := dec.SkipValue(); err != nil {
			break
		}
	}
	return m
}

func kindName(k jsontext.Kind) string {
	switch k {
	case '"':
		return "a JSON string"
	case '0':
		return "a JSON number"
	case '{':
		return "a JSON object"
	case '[':
		return "a JSON array"
	case 't', 'f':
		return "a JSON boolean"
	case 'n':
		return "JSON null"
	}
	return "an invalid JSON value"
}

// readErr explains why the document could not be read: broken JSON (by line and column,
// truncation and trailing data by name) first; then a document that is not an object, or an
// entry of prefixes or changelog that is not one.
func readErr(data []byte, err error) error {
	var se *jsontext.SyntacticError
	if !errors.As(err, &se) && !jsontext.Value(data).IsValid() {
		// A semantic error can come before the JSON is seen whole: the syntax is reported first.
		_, err = jsontext.NewDecoder(bytes.NewReader(data)).ReadValue()
		if err == nil {
			err = errors.New("data after the document")
		}
	}
	if errors.As(err, &se) {
		off := int(se.ByteOffset)
		if !errors.Is(se.Err, io.ErrUnexpectedEOF) && jsontext.Value(bytes.TrimRight(data[:off], " \t\r\n")).IsValid() {
			line, col := lineCol(data, off)
			return fmt.Errorf("trailing data after the document at line %d, column %d: only one JSON object is allowed", line, col)
		}
		return syntaxErr(data, se)
	}
	var sem *json.SemanticError
	if errors.As(err, &sem) {
		ptr := string(sem.JSONPointer)
		if ptr == "" {
			return fmt.Errorf("the document must be a JSON object, not %s", kindName(sem.JSONKind))
		}
		list, i, _ := strings.Cut(strings.TrimPrefix(ptr, "/"), "/")
		if _, err := strconv.Atoi(i); err == nil && !strings.Contains(i, "/") {
			return fmt.Errorf("%s[%s]: must be an object, not %s", list, i, kindName(sem.JSONKind))
		}
		return fmt.Errorf("%s: %v", pointerPath(ptr), sem.Err)
	}
	return fmt.Errorf("read the document: %w", err)
}

// syntaxErr says where the JSON is broken, by line and column; a file that ends too early is
// reported as truncated.
func syntaxErr(data []byte, se *jsontext.SyntacticError) error {
	if errors.Is(se.Err, io.ErrUnexpectedEOF) {
		line, _ := lineCol(data, len(data))
		return fmt.Errorf("truncated JSON: the document ends at byte %d (line %d) before it is complete", len(data), line)
	}
	line, col := lineCol(data, int(se.ByteOffset))
	msg := se.Err.Error()
	if se.JSONPointer != "" {
		msg += " (at " + pointerPath(string(se.JSONPointer)) + ")"
	}
	return fmt.Errorf("invalid JSON at line %d, column %d: %s", line, col, msg)
}

// pointerPath writes a JSON pointer as the document's paths are written: /prefixes/3/cidr is
// prefixes[3].cidr.
func pointerPath(ptr string) string {
	var b strings.Builder
	for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		if _, err := strconv.Atoi(tok); err == nil && b.Len() > 0 {
			b.WriteString("[" + tok + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	return b.String()
}

// lineCol returns the 1-based line and column (in bytes) of offset off in data.
func lineCol(data []byte, off int) (int, int) {
	off = min(max(off, 0), len(data))
	line := 1 + bytes.Count(data[:off], []byte{'\n'})
	return line, off - bytes.LastIndexByte(data[:off], '\n')
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
