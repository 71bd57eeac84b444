package ipranges

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

func TestParseErrors(t *testing.T) {
	valid := stMarshal(t, stJSON(t, stDoc(t)))
	edit := func(f func(m map[string]any)) []byte {
		m := stJSON(t, stDoc(t))
		f(m)
		return stMarshal(t, m)
	}
	tests := []struct {
		name string
		data []byte
		want []string // substrings; nil: Parse succeeds
	}{
		{"valid", valid, nil},
		{"empty", []byte{}, []string{"empty (0 bytes)"}},
		{"white space", []byte(" \n\t"), []string{"only white space"}},
		{"truncated", valid[:len(valid)/2], []string{"truncated JSON", "before it is complete"}},
		{"invalid JSON", []byte(strings.Replace(string(valid), `"notice_days": 14,`, `"notice_days": 14`, 1)),
			[]string{"invalid JSON at line", "column"}},
		{"trailing data", append(append([]byte{}, valid...), []byte("\n{}")...), []string{"trailing data after the document at line"}},
		{"trailing white space is fine", append(append([]byte{}, valid...), []byte("\n\n")...), nil},
		{"not an object", []byte(`[1,2]`), []string{"the document must be a JSON object, not a JSON array"}},
		{"schema 2", edit(func(m map[string]any) { m["schema_version"] = 2; m["new_field"] = 1 }),
			[]string{"schema_version: 2 is not supported by this build (it reads 1)"}},
		{"schema missing", edit(func(m map[string]any) { delete(m, "schema_version") }), []string{"schema_version: missing"}},
		{"unknown top-level field", edit(func(m map[string]any) { m["extra"] = true }),
			[]string{`unknown field "extra" at the top level`}},
		{"unknown prefix field", edit(func(m map[string]any) { stEntry(m, "prefixes", 3)["colour"] = "red" }),
			[]string{`prefixes[3] (203.0.113.11/32): unknown field "colour"`}},
		{"status accepted and ignored", edit(func(m map[string]any) { stEntry(m, "prefixes", 3)["status"] = "active" }), nil},
		{"retired absent accepted", edit(func(m map[string]any) { delete(stEntry(m, "prefixes", 0), "retired") }), nil},
		{"unknown changelog field", edit(func(m map[string]any) { stEntry(m, "changelog", 1)["who"] = "bob" }),
			[]string{`changelog[1] (2001:db8::10/128): unknown field "who"`}},
		{"wrong type top", edit(func(m map[string]any) { m["notice_days"] = "14" }),
			[]string{"notice_days: expected an integer, got a JSON string"}},
		{"wrong type prefix", edit(func(m map[string]any) { stEntry(m, "prefixes", 2)["enabled"] = 5 }),
			[]string{"prefixes[2] (198.51.100.20/32): enabled: expected a string, got a JSON number"}},
		{"prefixes not an array", edit(func(m map[string]any) { m["prefixes"] = map[string]any{} }),
			[]string{"prefixes: must be an array of objects, not a JSON object"}},
		{"prefixes null", edit(func(m map[string]any) { m["prefixes"] = nil }), []string{"prefixes: null; an array (possibly empty) is required"}},
		{"changelog missing", edit(func(m map[string]any) { delete(m, "changelog") }), []string{"changelog: missing"}},
		{"bad time", edit(func(m map[string]any) { stEntry(m, "prefixes", 0)["published"] = "yesterday" }),
			[]string{`prefixes[0] (203.0.113.10/32): published: "yesterday" is not an RFC 3339 time`}},
		{"bad created_at", edit(func(m map[string]any) { m["created_at"] = "2026-01-02" }),
			[]string{`created_at: "2026-01-02" is not an RFC 3339 time`}},
		{"bad retired", edit(func(m map[string]any) { stEntry(m, "prefixes", 1)["retired"] = "soon" }),
			[]string{`prefixes[1] (2001:db8::10/128): retired: "soon" is not an RFC 3339 time`}},
		{"bad cidr", edit(func(m map[string]any) { stEntry(m, "prefixes", 0)["cidr"] = "203.0.113.300/32" }),
			[]string{`prefixes[0] (203.0.113.300/32): cidr: "203.0.113.300/32" is not a CIDR prefix`}},
		{"bare IP", edit(func(m map[string]any) { stEntry(m, "prefixes", 0)["cidr"] = "203.0.113.10" }),
			[]string{"has no prefix length; write 203.0.113.10/32"}},
		{"missing field", edit(func(m map[string]any) { delete(stEntry(m, "prefixes", 0), "enabled") }),
			[]string{"prefixes[0] (203.0.113.10/32): enabled: missing"}},
		{"missing changelog field", edit(func(m map[string]any) { delete(stEntry(m, "changelog", 0), "action") }),
			[]string{"changelog[0] (203.0.113.10/32): action: missing"}},
		{"bad changelog time", edit(func(m map[string]any) { stEntry(m, "changelog", 0)["at"] = "noon" }),
			[]string{`changelog[0] (203.0.113.10/32): at: "noon" is not an RFC 3339 time`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Parse(tc.data)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if err := d.Validate(0); err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			stWantErr(t, err, tc.want...)
		})
	}
}

// The output of show (Render, with status) is accepted as a state file and means the same.
func TestParseAcceptsRenderOutput(t *testing.T) {
	d := stDoc(t)
	served, err := Render(d, stT0.Add(3*stDay), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(served)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := Marshal(d)
	b, _ := Marshal(back)
	if string(a) != string(b) {
		t.Fatalf("stored forms differ:\n%s\n%s", a, b)
	}
	if strings.Contains(string(a), `"status"`) {
		t.Fatalf("the stored form carries a status:\n%s", a)
	}
}

// Times with offsets and fractions are read and converted to UTC.
func TestParseTimeOffsets(t *testing.T) {
	m := stJSON(t, stDoc(t))
	stEntry(m, "prefixes", 3)["published"] = "2026-01-03T01:00:00.5+01:00"
	d, err := Parse(stMarshal(t, m))
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Prefixes[3].Published; got.Location().String() != "UTC" || got.Format("15:04:05.0") != "00:00:00.5" {
		t.Fatalf("published = %v", got)
	}
}

// FuzzParse: whatever the bytes, Parse returns a document or an error, never panics; a document
// it accepts writes out (Marshal) to bytes that read back to the same document, byte for byte.
// The checked-in corpus (testdata/fuzz/FuzzParse) is replayed by every go test.
func FuzzParse(f *testing.F) {
	valid, _ := Marshal(stDoc(f))
	served, _ := Render(stDoc(f), stT0, Filter{})
	f.Add(valid)
	f.Add(served)
	f.Add([]byte(`{"schema_version":1,"sync_token":"1","created_at":"2026-01-02T00:00:00Z","notice_days":14,"prefixes":[],"changelog":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse(data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		out, err := Marshal(d)
		if err != nil {
			t.Fatalf("Marshal of a parsed document: %v", err)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("the written form does not read back: %v\n%s", err, out)
		}
		if again, _ := Marshal(back); string(again) != string(out) {
			t.Fatalf("round trip changed the bytes:\n%s\n%s", out, again)
		}
	})
}

// FuzzRender: any strings in a document write out as valid JSON, which reads back to the same
// strings when they are valid UTF-8.
func FuzzRender(f *testing.F) {
	f.Add("us-east-1", "proxy", "note", "ingress")
	f.Add("\x00\u2028\xff", "\"\\", "<&>", "\x7f")
	f.Fuzz(func(t *testing.T, facility, service, note, dir string) {
		d := stDoc(t)
		d.Prefixes[0].Facility, d.Prefixes[1].Service, d.Changelog[0].Note = facility, service, note
		d.Prefixes[2].Direction, d.Changelog[1].Direction = Direction(dir), Direction(dir)
		out, err := Render(d, stT0, Filter{})
		if err != nil {
			t.Fatal(err)
		}
		if !jsontext.Value(out).IsValid() {
			t.Fatalf("invalid JSON:\n%s", out)
		}
		for _, s := range []string{facility, service, note, dir} {
			if !utf8.ValidString(s) {
				return
			}
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("served form does not parse: %v", err)
		}
		if back.Prefixes[0].Facility != facility || back.Prefixes[1].Service != service || back.Changelog[0].Note != note ||
			string(back.Prefixes[2].Direction) != dir {
			t.Fatal("strings changed on the way")
		}
	})
}
