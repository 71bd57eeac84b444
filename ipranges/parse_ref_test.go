package ipranges

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// The raw types mirror the stored JSON with every field as a pointer or a string, so that Parse
// can tell a missing field from a wrong one and name both, and report a bad time or CIDR with
// the entry it belongs to rather than encoding/json's generic message.
type refRawDocument struct {
	SchemaVersion *int            `json:"schema_version"`
	SyncToken     *string         `json:"sync_token"`
	CreatedAt     *string         `json:"created_at"`
	NoticeDays    *int            `json:"notice_days"`
	Prefixes      *[]refRawPrefix `json:"prefixes"`
	Changelog     *[]refRawChange `json:"changelog"`
}

type refRawPrefix struct {
	CIDR      *string `json:"cidr"`
	Class     *string `json:"class"`
	Direction *string `json:"direction"`
	Service   *string `json:"service"`
	Facility  *string `json:"facility"`
	// Status is accepted and ignored: it is derived from the dates when served, so a document
	// printed by `ipranges show` (or fetched from /ip-ranges.json) can be fed back as a state file.
	Status    json.RawMessage `json:"status"`
	Published *string         `json:"published"`
	Enabled   *string         `json:"enabled"`
	Retired   *string         `json:"retired"` // null or absent: not retired
}

type refRawChange struct {
	SyncToken *string `json:"sync_token"`
	At        *string `json:"at"`
	Action    *string `json:"action"`
	CIDR      *string `json:"cidr"`
	Direction *string `json:"direction"`
	Note      *string `json:"note"`
}

// refParse is the encoding/json implementation Parse replaced: the oracle of
// TestParseMatchesReference and FuzzParse.
func refParse(data []byte) (*Document, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		if len(data) == 0 {
			return nil, errors.New("the file is empty (0 bytes): that is not a contract (an empty file is never read as an empty contract)")
		}
		return nil, fmt.Errorf("the file holds only white space (%d bytes): that is not a contract", len(data))
	}
	var raw refRawDocument
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return nil, refExplainDecode(data, err)
	}
	off := int(dec.InputOffset())
	if rest := bytes.TrimLeft(data[off:], " \t\r\n"); len(rest) > 0 {
		line, col := refLineCol(data, len(data)-len(rest))
		return nil, fmt.Errorf("trailing data after the document at line %d, column %d: only one JSON object is allowed", line, col)
	}
	return raw.document()
}

// refExplainDecode turns an encoding/json error into one that says where and what.
func refExplainDecode(data []byte, err error) error {
	var se *json.SyntaxError
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		line, _ := refLineCol(data, len(data))
		return fmt.Errorf("truncated JSON: the document ends at byte %d (line %d) before it is complete", len(data), line)
	case errors.As(err, &se):
		line, col := refLineCol(data, int(se.Offset)-1)
		return fmt.Errorf("invalid JSON at line %d, column %d: %s", line, col, strings.TrimPrefix(se.Error(), "json: "))
	}
	if lerr := refLocate(data); lerr != nil {
		return lerr
	}
	return fmt.Errorf("decode: %w", err)
}

// refLocate re-decodes a syntactically valid document piece by piece to find the field or entry
// that made the strict decode fail. It only runs on the error path.
func refLocate(data []byte) error {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return fmt.Errorf("the document must be a JSON object, not %s", refJsonKind(data))
	}
	if v, ok := top["schema_version"]; ok {
		var n int
		if json.Unmarshal(v, &n) == nil && n != SchemaVersion {
			return fmt.Errorf("schema_version: %d is not supported by this build (it reads %d)", n, SchemaVersion)
		}
	}
	known := refKnownFields(reflect.TypeFor[refRawDocument]())
	keys := make([]string, 0, len(top))
	for k := range top {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(known, k) {
			return fmt.Errorf("unknown field %q at the top level (schema_version %d has: %s)", k, SchemaVersion, strings.Join(known, ", "))
		}
	}
	var probe refRawDocument
	for _, k := range []string{"schema_version", "sync_token", "created_at", "notice_days"} {
		if v, ok := top[k]; ok {
			one := append(append([]byte(`{"`+k+`":`), v...), '}')
			if err := refStrictDecode(one, &probe); err != nil {
				return fmt.Errorf("%s: %s", k, refFieldError(err, true))
			}
		}
	}
	if err := refLocateArray[refRawPrefix](top, "prefixes"); err != nil {
		return err
	}
	return refLocateArray[refRawChange](top, "changelog")
}

func refLocateArray[T any](top map[string]json.RawMessage, key string) error {
	v, ok := top[key]
	if !ok || string(bytes.TrimSpace(v)) == "null" {
		return nil
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(v, &elems); err != nil {
		return fmt.Errorf("%s: must be an array of objects, not %s", key, refJsonKind(v))
	}
	for i, e := range elems {
		var t T
		if err := refStrictDecode(e, &t); err != nil {
			return fmt.Errorf("%s[%d]%s: %s", key, i, refCidrHint(e), refFieldError(err, false))
		}
	}
	return nil
}

func refStrictDecode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// refFieldError words an unknown-field or type error of one object.
func refFieldError(err error, topLevel bool) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		want := refDescribeType(te.Type)
		if te.Field == "" || topLevel {
			return fmt.Sprintf("expected %s, got a JSON %s", want, te.Value)
		}
		return fmt.Sprintf("%s: expected %s, got a JSON %s", te.Field, want, te.Value)
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if strings.HasPrefix(msg, "unknown field") {
		return msg + " (only the fields of schema_version 1 are allowed)"
	}
	return msg
}

func refDescribeType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int64:
		return "an integer"
	case reflect.Slice:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return t.String()
}

func refKnownFields(t reflect.Type) []string {
	var names []string
	for f := range t.Fields() {
		names = append(names, strings.Split(f.Tag.Get("json"), ",")[0])
	}
	return names
}

// refCidrHint returns " (CIDR)" when the raw entry has a string cidr, for error messages.
func refCidrHint(e json.RawMessage) string {
	var probe struct {
		CIDR any `json:"cidr"`
	}
	if json.Unmarshal(e, &probe) == nil {
		if s, ok := probe.CIDR.(string); ok && s != "" {
			return " (" + s + ")"
		}
	}
	return ""
}

func refJsonKind(data []byte) string {
	b := bytes.TrimSpace(data)
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// refLineCol returns the 1-based line and column of byte offset off in data.
func refLineCol(data []byte, off int) (line, col int) {
	off = max(0, min(off, len(data)))
	line = 1 + bytes.Count(data[:off], []byte{'\n'})
	col = off - bytes.LastIndexByte(data[:off], '\n')
	return line, col
}

// document converts the raw decode into a Document, checking presence and formats.
func (r *refRawDocument) document() (*Document, error) {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	d := &Document{}
	switch {
	case r.SchemaVersion == nil:
		return nil, errors.New("schema_version: missing (this build reads 1)")
	case *r.SchemaVersion != SchemaVersion:
		return nil, fmt.Errorf("schema_version: %d is not supported by this build (it reads %d)", *r.SchemaVersion, SchemaVersion)
	}
	d.SchemaVersion = *r.SchemaVersion
	if r.SyncToken == nil {
		fail("sync_token: missing")
	} else {
		d.SyncToken = *r.SyncToken
	}
	if r.CreatedAt == nil {
		fail("created_at: missing")
	} else if t, err := parseTime(*r.CreatedAt); err != nil {
		fail("created_at: %v", err)
	} else {
		d.CreatedAt = t
	}
	if r.NoticeDays == nil {
		fail("notice_days: missing")
	} else {
		d.NoticeDays = *r.NoticeDays
	}
	if r.Prefixes == nil {
		fail("prefixes: missing (an array, possibly empty, is required)")
	} else {
		d.Prefixes = make([]Prefix, len(*r.Prefixes))
		for i := range *r.Prefixes {
			if err := (*r.Prefixes)[i].prefix(&d.Prefixes[i]); err != nil {
				name := fmt.Sprintf("prefixes[%d]", i)
				if c := (*r.Prefixes)[i].CIDR; c != nil {
					name += " (" + *c + ")"
				}
				fail("%s: %v", name, err)
			}
		}
	}
	if r.Changelog == nil {
		fail("changelog: missing (an array, possibly empty, is required)")
	} else {
		d.Changelog = make([]Change, len(*r.Changelog))
		for i := range *r.Changelog {
			if err := (*r.Changelog)[i].change(&d.Changelog[i]); err != nil {
				name := fmt.Sprintf("changelog[%d]", i)
				if c := (*r.Changelog)[i].CIDR; c != nil && *c != "" {
					name += " (" + *c + ")"
				}
				fail("%s: %v", name, err)
			}
		}
	}
	if err := joinCapped(errs); err != nil {
		return nil, err
	}
	return d, nil
}

func (r *refRawPrefix) prefix(p *Prefix) error {
	var errs []error
	req := func(name string, s *string) string {
		if s == nil {
			errs = append(errs, fmt.Errorf("%s: missing", name))
			return ""
		}
		return *s
	}
	if c := req("cidr", r.CIDR); r.CIDR != nil {
		pfx, err := parseCIDR(c)
		if err != nil {
			errs = append(errs, fmt.Errorf("cidr: %v", err))
		}
		p.CIDR = pfx
	}
	p.Class = req("class", r.Class)
	p.Direction = Direction(req("direction", r.Direction))
	p.Service = req("service", r.Service)
	p.Facility = req("facility", r.Facility)
	for _, f := range []struct {
		name string
		raw  *string
		dst  *time.Time
	}{{"published", r.Published, &p.Published}, {"enabled", r.Enabled, &p.Enabled}} {
		if s := req(f.name, f.raw); f.raw != nil {
			t, err := parseTime(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %v", f.name, err))
			}
			*f.dst = t
		}
	}
	if r.Retired != nil {
		t, err := parseTime(*r.Retired)
		if err != nil {
			errs = append(errs, fmt.Errorf("retired: %v", err))
		}
		p.Retired = &t
	}
	return errors.Join(errs...)
}

func (r *refRawChange) change(c *Change) error {
	var errs []error
	req := func(name string, s *string) string {
		if s == nil {
			errs = append(errs, fmt.Errorf("%s: missing", name))
			return ""
		}
		return *s
	}
	c.SyncToken = req("sync_token", r.SyncToken)
	if s := req("at", r.At); r.At != nil {
		t, err := parseTime(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("at: %v", err))
		}
		c.At = t
	}
	c.Action = req("action", r.Action)
	c.CIDR = req("cidr", r.CIDR)
	if r.Direction != nil {
		c.Direction = Direction(*r.Direction)
	}
	if r.Note != nil {
		c.Note = *r.Note
	}
	return errors.Join(errs...)
}

// checkAgainstReference compares Parse with refParse (encoding/json) on data. Parse is stricter
// in three ways, each allowed here: a field given twice, invalid UTF-8 in a string, and nesting
// deeper than maxDepth are errors (encoding/json keeps the last value, substitutes U+FFFD, and
// allows 10,000 levels). Otherwise both accept or both refuse, agree on whether the JSON itself is
// broken, and accepted documents are identical.
// objectKey finds the keys of JSON objects (a quoted string followed by a colon).
var objectKey = regexp.MustCompile(`"((?:[^"\\]|\\.)*)"\s*:`)

// caseFoldedKey reports whether data names a field in another case ("Schema_Version"):
// encoding/json matches field names case-insensitively, Parse only exactly, by design.
func caseFoldedKey(data []byte) bool {
	var known []string
	for _, t := range []reflect.Type{reflect.TypeFor[refRawDocument](), reflect.TypeFor[refRawPrefix](), reflect.TypeFor[refRawChange]()} {
		known = append(known, refKnownFields(t)...)
	}
	for _, m := range objectKey.FindAllSubmatch(data, -1) {
		var k string
		if json.Unmarshal(append(append([]byte{'"'}, m[1]...), '"'), &k) != nil {
			continue
		}
		for _, f := range known {
			if k != f && strings.EqualFold(k, f) {
				return true
			}
		}
	}
	return false
}

func checkAgainstReference(t *testing.T, data []byte) {
	t.Helper()
	got, err := Parse(data)
	want, refErr := refParse(data)
	stricter := err != nil && (strings.Contains(err.Error(), "appears twice") ||
		strings.Contains(err.Error(), "invalid UTF-8") || strings.Contains(err.Error(), "nested more than") ||
		caseFoldedKey(data))
	switch {
	case err == nil && refErr != nil:
		t.Fatalf("Parse accepts what encoding/json refuses (%v):\n%q", refErr, data)
	case err != nil && refErr == nil && !stricter:
		t.Fatalf("Parse refuses what encoding/json accepts: %v\n%q", err, data)
	case err == nil:
		a, _ := Marshal(got)
		b, _ := Marshal(want)
		if !bytes.Equal(a, b) {
			t.Fatalf("documents differ:\n%s\n%s\ninput %q", a, b, data)
		}
	case !stricter:
		syntax := func(e error) bool {
			s := e.Error()
			return strings.HasPrefix(s, "invalid JSON") || strings.HasPrefix(s, "truncated JSON") ||
				strings.HasPrefix(s, "trailing data") || strings.HasPrefix(s, "the file")
		}
		if syntax(err) != syntax(refErr) && json.Valid(data) == syntax(err) {
			t.Fatalf("disagree on the JSON syntax:\nParse: %v\nencoding/json: %v\ninput %q", err, refErr, data)
		}
	}
}

func TestParseMatchesReference(t *testing.T) {
	valid, _ := Marshal(stDoc(t))
	served, _ := Render(stDoc(t), stT0, Filter{})
	inputs := [][]byte{valid, served}
	// Every truncation and every single-byte deletion of a valid document.
	for i := range valid {
		inputs = append(inputs, valid[:i], append(append([]byte{}, valid[:i]...), valid[i+1:]...))
	}
	for _, s := range []string{
		`{}`, `[]`, `null`, `1`, `"x"`, `{"schema_version":1}`, `{"schema_version":1.0}`, `{"schema_version":"1"}`,
		`{"schema_version":1e0}`, `{"schema_version":-0}`, `{"schema_version":01}`, `{"schema_version":1,}`,
		`{"schema_version":1 "x":2}`, `{"schema_version":1}{}`, `{"schema_version":1} x`, "{\"a\":\"\x01\"}",
		`{"a":"\u00e9\ud83d\ude00\ud800x\udc00"}`, `{"a":"\x"}`, `{"a":"\u12"}`, `{"a":"\u12g4"}`, `{"a":tru}`, `{"a":nul}`,
		`{"a":[1,2,]}`, "\"0", "null0", `{"a":{"b":[{"c":null}]}}`, `{"schema_version":99999999999999999999}`,
	} {
		inputs = append(inputs, []byte(s))
	}
	// Times: the fast path for "YYYY-MM-DDTHH:MM:SSZ" must agree with time.Parse.
	for _, ts := range []string{"2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z", "2000-02-29T12:00:00Z",
		"1900-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z", "2026-01-32T00:00:00Z",
		"2026-04-31T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T00:60:00Z", "2026-01-01T00:00:60Z",
		"2026-01-01t00:00:00z", "2026-01-01T00:00:00+00:00", "2026-01-01T00:00:00.5Z", "0000-01-01T00:00:00Z",
		"2026-1-01T00:00:00Z", "2026-01-01T00:00:0xZ", "+026-01-01T00:00:00Z"} {
		inputs = append(inputs, bytes.Replace(valid, []byte(`"created_at": "2026-01-02T00:00:00Z"`), []byte(`"created_at": "`+ts+`"`), 1))
	}
	for _, in := range inputs {
		checkAgainstReference(t, in)
	}
}

func FuzzParse(f *testing.F) {
	valid, _ := Marshal(stDoc(f))
	served, _ := Render(stDoc(f), stT0, Filter{})
	f.Add(valid)
	f.Add(served)
	f.Add([]byte(`{"schema_version":1,"sync_token":"1","created_at":"2026-01-02T00:00:00Z","notice_days":14,"prefixes":[],"changelog":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkAgainstReference(t, data)
	})
}
