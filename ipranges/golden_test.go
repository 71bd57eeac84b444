package ipranges

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/golden from the current output")

// TestGolden: the stored form (Marshal) and the served form (Render, all and filtered) of a
// contract are byte for byte what they were when the golden files were written (by the
// hand-written encoder that came before go-json-experiment/json): ETags, signatures and the files on
// disk depend on the bytes, not only on the meaning. The document has strings that need
// escaping (quotes, control characters, U+2028, invalid UTF-8, HTML characters) and times in
// another zone.
func TestGolden(t *testing.T) {
	d := stDoc(t)
	d.Prefixes[0].Facility = "us-east-1 \"a\" <&> \u2028 \t\x01 \xff é"
	d.Changelog[0].Note = "line\nbreak \\ back"
	for _, tc := range []struct {
		file string
		out  func() ([]byte, error)
	}{
		{"stored.json", func() ([]byte, error) { return Marshal(d) }},
		{"served.json", func() ([]byte, error) { return Render(d, stT0.Add(3*stDay), Filter{}) }},
		{"served-egress-active.json", func() ([]byte, error) {
			return Render(d, stT0.Add(40*stDay), Filter{Direction: Egress, Status: Active})
		}},
		{"empty.json", func() ([]byte, error) {
			return Marshal(&Document{SchemaVersion: 1, SyncToken: "1", CreatedAt: stT0, NoticeDays: 14, Prefixes: []Prefix{}, Changelog: []Change{}})
		}},
	} {
		got, err := tc.out()
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		path := filepath.Join("testdata", "golden", tc.file)
		if *updateGolden {
			os.MkdirAll(filepath.Dir(path), 0o755)
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%s differs from the golden file:\ngot:\n%s\nwant:\n%s", tc.file, got, want)
		}
	}
}
