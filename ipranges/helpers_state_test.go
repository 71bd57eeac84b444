package ipranges

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// stT0 is the tests' epoch: the contract is created then.
var stT0 = time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)

const stDay = 24 * time.Hour

func stPfx(t testing.TB, s string) netip.Prefix {
	t.Helper()
	p, err := netip.ParsePrefix(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func stPfxs(t testing.TB, ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, stPfx(t, s))
	}
	return out
}

// stDoc returns a valid contract: created at stT0 with two ingress and one egress prefix, and
// 203.0.113.11/32 announced a day later (enabled 15 days after stT0).
func stDoc(t testing.TB) *Document {
	t.Helper()
	d, err := Init(stPfxs(t, "203.0.113.10/32", "2001:db8::10/128"), stPfxs(t, "198.51.100.20/32"),
		InitOptions{Facility: "us-east-1"}, stT0)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Announce(stPfx(t, "203.0.113.11/32"), Ingress, 0, "us-east-1", "", stT0.Add(stDay)); err != nil {
		t.Fatal(err)
	}
	return d
}

// stJSON returns the stored form of d as a generic value, for hand-edit style mutations.
func stJSON(t testing.TB, d *Document) map[string]any {
	t.Helper()
	b, err := Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func stMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func stWrite(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// stWantErr fails unless err is non-nil and contains every part.
func stWantErr(t testing.TB, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q\ndoes not contain %q", err, p)
		}
	}
}

func stPrefixes(m map[string]any) []any { return m["prefixes"].([]any) }

func stEntry(m map[string]any, key string, i int) map[string]any {
	return m[key].([]any)[i].(map[string]any)
}
