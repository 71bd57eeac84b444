package status

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// readIncidents loads dir's incidents file, failing the test if it does not load.
func readIncidents(t *testing.T, dir string) *incidentFile {
	t.Helper()
	f, err := loadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// mustPost posts and fails the test on error.
func mustPost(t *testing.T, dir, state, msg, impact string, now time.Time) *Incident {
	t.Helper()
	inc, err := Post(dir, state, msg, impact, now)
	if err != nil {
		t.Fatalf("Post(%s, %q): %v", state, msg, err)
	}
	return inc
}

func TestPostLifecycle(t *testing.T) {
	dir := t.TempDir()
	type step struct {
		state, msg, impact string
		at                 time.Duration // after t0
		wantID             string
		wantUpdates        int
		wantImpact         State
		wantResolved       bool
	}
	steps := []step{
		{"investigating", "Gateway requests fail for some customers.", "", 0, "20260314T120000Z", 1, Degraded, false},
		{"identified", "A backend fleet lost its DNS name.", "outage", 10 * time.Minute, "20260314T120000Z", 2, Outage, false},
		{"monitoring", "Fixed; watching.", "", 40 * time.Minute, "20260314T120000Z", 3, Outage, false}, // impact kept
		{"monitoring", "Looks good.", "degraded", 50 * time.Minute, "20260314T120000Z", 4, Degraded, false},
		{"resolved", "Resolved.", "", time.Hour, "20260314T120000Z", 5, Degraded, true},
		{"investigating", "Slow CONNECT.", "", 2 * time.Hour, "20260314T140000Z", 1, Degraded, false}, // a new one
	}
	for _, s := range steps {
		inc := mustPost(t, dir, s.state, s.msg, s.impact, t0.Add(s.at).Add(300*time.Millisecond))
		if inc.ID != s.wantID || len(inc.Updates) != s.wantUpdates || inc.Impact() != s.wantImpact || inc.Resolved() != s.wantResolved {
			t.Fatalf("after %s %q: id %s, %d updates, impact %s, resolved %v; want %s, %d, %s, %v",
				s.state, s.msg, inc.ID, len(inc.Updates), inc.Impact(), inc.Resolved(), s.wantID, s.wantUpdates, s.wantImpact, s.wantResolved)
		}
		latest := inc.Latest()
		if !latest.At.Equal(t0.Add(s.at)) || latest.At.Location() != time.UTC || latest.Message != s.msg || string(latest.State) != s.state {
			t.Fatalf("latest update %+v; want at %s (UTC, whole seconds), %s, %q", latest, t0.Add(s.at), s.state, s.msg)
		}
	}
	f := readIncidents(t, dir)
	if len(f.Incidents) != 2 || len(f.Incidents[0].Updates) != 5 || !f.Incidents[0].Resolved() || f.open() == nil || f.open().ID != "20260314T140000Z" {
		t.Fatalf("file holds %+v", f.Incidents)
	}
	data, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"schema_version": 1`, `"at": "2026-03-14T12:10:00Z"`, `"impact": "outage"`} {
		if !bytes.Contains(data, []byte(want)) {
			t.Errorf("the file lacks %s:\n%s", want, data)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, FileName)); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("file mode: %v, %v; want 0644", fi.Mode(), err)
	}
}

func TestPostMessageNormalised(t *testing.T) {
	dir := t.TempDir()
	inc := mustPost(t, dir, "investigating", "  \r\nLine one.\r\nLine two.\n\n", "", t0)
	if got := inc.Latest().Message; got != "Line one.\nLine two." {
		t.Errorf("message %q; want CRLF as LF and surrounding space trimmed", got)
	}
}

func TestPostRefuses(t *testing.T) {
	tests := []struct {
		name, state, msg, impact string
		wantErr                  string
	}{
		{"unknown state", "fixed", "m", "", `state: "fixed" is not one of investigating, identified, monitoring, resolved`},
		{"empty state", "", "m", "", `state: "" is not one of`},
		{"resolve without an open incident", "resolved", "All good.", "", "there is no open incident to resolve"},
		{"unknown impact", "investigating", "m", "major", `impact: "major" is not degraded or outage`},
		{"empty message", "investigating", "", "", "message: empty"},
		{"blank message", "investigating", " \n\t ", "", "message: empty"},
		{"NUL", "investigating", "a\x00b", "", "message: control character U+0000 at byte 1"},
		{"tab", "investigating", "a\tb", "", "message: control character U+0009"},
		{"bare CR", "investigating", "a\rb", "", "message: control character U+000D"},
		{"escape sequence", "investigating", "a\x1b[31mred", "", "message: control character U+001B"},
		{"C1 control", "investigating", "a\u0085b", "", "message: control character U+0085"},
		{"invalid UTF-8", "investigating", "a\xffb", "", "message: not valid UTF-8"},
		{"too long", "investigating", strings.Repeat("é", MaxMessageLen+1), "", "message: 2001 characters, more than the 2000 allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := Post(dir, tt.state, tt.msg, tt.impact, t0)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Post() error = %v; want one containing %q", err, tt.wantErr)
			}
			if _, err := os.Stat(filepath.Join(dir, FileName)); !os.IsNotExist(err) {
				t.Errorf("a refused post created the file (stat: %v)", err)
			}
		})
	}
	t.Run("no directory", func(t *testing.T) {
		if _, err := Post("", "investigating", "m", "", t0); err == nil || !strings.Contains(err.Error(), "no state directory") {
			t.Errorf("Post(\"\") error = %v", err)
		}
	})
	t.Run("longest message", func(t *testing.T) {
		if _, err := Post(t.TempDir(), "investigating", strings.Repeat("é", MaxMessageLen), "", t0); err != nil {
			t.Errorf("a message of exactly %d characters: %v", MaxMessageLen, err)
		}
	})
	t.Run("resolve after resolved", func(t *testing.T) {
		dir := t.TempDir()
		mustPost(t, dir, "investigating", "m", "", t0)
		mustPost(t, dir, "resolved", "done", "", t0.Add(time.Minute))
		before, _ := os.ReadFile(filepath.Join(dir, FileName))
		if _, err := Post(dir, "resolved", "again", "", t0.Add(2*time.Minute)); err == nil || !strings.Contains(err.Error(), "no open incident") {
			t.Fatalf("resolving twice: %v", err)
		}
		if after, _ := os.ReadFile(filepath.Join(dir, FileName)); !bytes.Equal(before, after) {
			t.Error("a refused post changed the file")
		}
	})
}

// TestPostCorruptFile: a file that does not load is an error naming it, and stays as it is.
func TestPostCorruptFile(t *testing.T) {
	upd := func(at, state, impact, msg string) string {
		return fmt.Sprintf(`{"at":%q,"state":%q,"impact":%q,"message":%q}`, at, state, impact, msg)
	}
	open := `{"id":"a","updates":[` + upd("2026-03-14T12:00:00Z", "investigating", "degraded", "m") + `]}`
	closed := `{"id":"b","updates":[` + upd("2026-03-14T12:00:00Z", "investigating", "degraded", "m") + "," + upd("2026-03-14T12:05:00Z", "resolved", "degraded", "ok") + `]}`
	tests := []struct {
		name, content, wantErr string
	}{
		{"empty", "", "the file is empty"},
		{"truncated", `{"schema_version":1,"incidents":[`, "not a valid incidents file"},
		{"not JSON", "hello", "not a valid incidents file"},
		{"unknown field", `{"schema_version":1,"incidents":[],"extra":1}`, `unknown field "extra"`},
		{"second document", `{"schema_version":1,"incidents":[]} {}`, "data after the document"},
		{"schema version", `{"schema_version":2,"incidents":[]}`, "schema_version: 2, want 1"},
		{"two open", `{"schema_version":1,"incidents":[` + open + `,{"id":"c","updates":[` + upd("2026-03-14T13:00:00Z", "investigating", "degraded", "m") + `]}]}`, "only the last incident may be open"},
		{"update after resolved", `{"schema_version":1,"incidents":[{"id":"b","updates":[` + upd("2026-03-14T12:00:00Z", "resolved", "degraded", "ok") + "," + upd("2026-03-14T12:05:00Z", "monitoring", "degraded", "m") + `]}]}`, "resolved, but updates follow"},
		{"bad impact", `{"schema_version":1,"incidents":[{"id":"a","updates":[` + upd("2026-03-14T12:00:00Z", "investigating", "minor", "m") + `]}]}`, `impact: "minor"`},
		{"bad state", `{"schema_version":1,"incidents":[{"id":"a","updates":[` + upd("2026-03-14T12:00:00Z", "fixing", "degraded", "m") + `]}]}`, `state: "fixing"`},
		{"bad message", `{"schema_version":1,"incidents":[{"id":"a","updates":[` + strings.Replace(upd("2026-03-14T12:00:00Z", "investigating", "degraded", "aBEL"), "BEL", `\u0007`, 1) + `]}]}`, "control character U+0007"},
		{"no updates", `{"schema_version":1,"incidents":[{"id":"a","updates":[]}]}`, "no updates"},
		{"duplicate id", `{"schema_version":1,"incidents":[` + closed + "," + closed + `]}`, `id "b" is used twice`},
		{"bad id", `{"schema_version":1,"incidents":[` + strings.Replace(open, `"a"`, `"a b"`, 1) + `]}`, "id: "},
		{"time goes back", `{"schema_version":1,"incidents":[{"id":"a","updates":[` + upd("2026-03-14T12:00:00Z", "investigating", "degraded", "m") + "," + upd("2026-03-14T11:00:00Z", "identified", "degraded", "m") + `]}]}`, "before the previous update"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, FileName)
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, state := range []string{"investigating", "resolved"} {
				_, err := Post(dir, state, "Something is wrong.", "", t0)
				if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Post(%s) error = %v; want one naming %s and saying %q", state, err, path, tt.wantErr)
				}
			}
			after, err := os.ReadFile(path)
			if err != nil || string(after) != tt.content {
				t.Fatalf("the corrupt file was changed: %q, %v", after, err)
			}
			if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
				t.Errorf("mode changed to %v", fi.Mode())
			}
		})
	}
}

func TestPostConcurrent(t *testing.T) {
	dir := t.TempDir()
	const n = 24
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := Post(dir, "investigating", fmt.Sprintf("update %d", i), "", t0.Add(time.Duration(i)*time.Second))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	f := readIncidents(t, dir)
	if len(f.Incidents) != 1 {
		t.Fatalf("%d incidents; want the first post to open one and the others to append to it", len(f.Incidents))
	}
	seen := map[string]bool{}
	for _, u := range f.Incidents[0].Updates {
		seen[u.Message] = true
	}
	for i := range n {
		if !seen[fmt.Sprintf("update %d", i)] {
			t.Errorf("update %d was lost", i)
		}
	}
	if len(f.Incidents[0].Updates) != n {
		t.Errorf("%d updates; want %d", len(f.Incidents[0].Updates), n)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

func TestPostKeepsLastIncidents(t *testing.T) {
	dir := t.TempDir()
	now := t0
	var ids []string
	for i := range MaxIncidents + 5 {
		inc := mustPost(t, dir, "investigating", fmt.Sprintf("incident %d", i), "", now)
		ids = append(ids, inc.ID)
		mustPost(t, dir, "resolved", "done", "", now.Add(time.Minute))
		now = now.Add(time.Hour)
	}
	f := readIncidents(t, dir)
	if len(f.Incidents) != MaxIncidents {
		t.Fatalf("%d incidents kept; want %d", len(f.Incidents), MaxIncidents)
	}
	if f.Incidents[0].ID != ids[5] || f.Incidents[MaxIncidents-1].ID != ids[len(ids)-1] {
		t.Errorf("kept %s … %s; want the newest, %s … %s", f.Incidents[0].ID, f.Incidents[MaxIncidents-1].ID, ids[5], ids[len(ids)-1])
	}
}

func TestPostTimesAndIDs(t *testing.T) {
	dir := t.TempDir()
	a := mustPost(t, dir, "investigating", "one", "", t0)
	// The clock steps back: the update is not dated before the previous one.
	b := mustPost(t, dir, "identified", "two", "", t0.Add(-time.Hour))
	if !b.Latest().At.Equal(t0) {
		t.Errorf("update after a clock step back dated %s; want %s", b.Latest().At, t0)
	}
	mustPost(t, dir, "resolved", "three", "", t0)
	// A new incident in the same second gets its own id.
	c := mustPost(t, dir, "investigating", "four", "", t0)
	if a.ID != "20260314T120000Z" || c.ID != "20260314T120000Z-2" {
		t.Errorf("ids %s and %s; want 20260314T120000Z and 20260314T120000Z-2", a.ID, c.ID)
	}
	if f := readIncidents(t, dir); len(f.Incidents) != 2 {
		t.Errorf("%d incidents; want 2", len(f.Incidents))
	}
}

func TestPostRemovesStaleTemps(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "."+FileName+".tmp-12345")
	if err := os.WriteFile(stale, []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustPost(t, dir, "investigating", "m", "", t0)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temporary file still there (stat: %v)", err)
	}
}

func TestPostMaxUpdates(t *testing.T) {
	dir := t.TempDir()
	f := &incidentFile{SchemaVersion: 1, Incidents: []Incident{{ID: "a"}}}
	for i := range MaxUpdates {
		f.Incidents[0].Updates = append(f.Incidents[0].Updates, Update{At: t0.Add(time.Duration(i) * time.Second), State: Monitoring, Impact: Degraded, Message: "m"})
	}
	data, err := marshalFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, FileName), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Post(dir, "monitoring", "one more", "", t0.Add(time.Hour)); err == nil || !strings.Contains(err.Error(), "resolve it and open a new one") {
		t.Errorf("update %d: %v", MaxUpdates+1, err)
	}
	// Resolving stays possible, so a long incident can always be closed.
	if inc := mustPost(t, dir, "resolved", "done", "", t0.Add(time.Hour)); len(inc.Updates) != MaxUpdates+1 || !inc.Resolved() {
		t.Errorf("resolving a full incident: %d updates, resolved %v", len(inc.Updates), inc.Resolved())
	}
	readIncidents(t, dir)
}
