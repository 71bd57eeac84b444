package status

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func newObservedStore(t *testing.T, dir string) (*Store, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	s := OpenStore(dir, zap.New(core))
	t.Cleanup(s.Close)
	return s, logs
}

func errorLines(logs *observer.ObservedLogs) int {
	return logs.FilterLevelExact(zapcore.ErrorLevel).Len()
}

// TestStoreFollowsPosts drives reload by hand, as the poller does every 2 s.
func TestStoreFollowsPosts(t *testing.T) {
	dir := t.TempDir()
	s, logs := newObservedStore(t, dir)
	if s.Open() != nil || len(s.All()) != 0 || s.Err() != nil {
		t.Fatalf("a store without a file: open %v, all %v, err %v", s.Open(), s.All(), s.Err())
	}
	steps := []struct {
		state, msg string
		wantOpen   bool
		wantAll    int
		wantLatest string
	}{
		{"investigating", "Gateway errors.", true, 1, "Gateway errors."},
		{"identified", "DNS for the fleet.", true, 1, "DNS for the fleet."},
		{"resolved", "Fixed.", false, 1, "Fixed."},
		{"investigating", "Slow tunnels.", true, 2, "Slow tunnels."},
	}
	for i, st := range steps {
		mustPost(t, dir, st.state, st.msg, "", t0.Add(time.Duration(i)*time.Minute))
		s.reload()
		open, all := s.Open(), s.All()
		if (open != nil) != st.wantOpen || len(all) != st.wantAll || all[0].Latest().Message != st.wantLatest {
			t.Fatalf("after %s %q: open %v, %d incidents, newest says %q", st.state, st.msg, open, len(all), all[0].Latest().Message)
		}
		if open != nil && open.ID != all[0].ID {
			t.Errorf("Open() is %s, but the newest incident is %s", open.ID, all[0].ID)
		}
	}
	// Copies: changing what the store returned changes nothing in it.
	s.Open().Updates[0].Message = "changed"
	s.All()[0].Updates[0].Message = "changed"
	if got := s.Open().Updates[0].Message; got != "Slow tunnels." {
		t.Errorf("the store's incident was changed through a returned copy: %q", got)
	}
	if n := errorLines(logs); n != 0 {
		t.Errorf("%d error lines", n)
	}
}

// TestStorePolls checks that the goroutine picks a post up without any help.
func TestStorePolls(t *testing.T) {
	old := pollInterval
	pollInterval = 5 * time.Millisecond
	defer func() { pollInterval = old }()
	dir := t.TempDir()
	s, _ := newObservedStore(t, dir)
	mustPost(t, dir, "investigating", "Picked up by polling.", "outage", t0)
	deadline := time.Now().Add(10 * time.Second)
	for s.Open() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the post was not picked up within 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := s.Open().Impact(); got != Outage {
		t.Errorf("impact %s; want outage", got)
	}
	s.Close()
	s.Close() // twice is fine
}

func TestStoreKeepsLastGoodState(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	mustPost(t, dir, "investigating", "Good state.", "", t0)
	s, logs := newObservedStore(t, dir)
	if s.Open() == nil {
		t.Fatal("the existing incident was not loaded")
	}

	// Broken in place (same file, other size): the good state stays, one error line.
	if err := os.WriteFile(path, []byte(`{"schema_version":1,"incidents":[`), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		s.reload()
	}
	if s.Open() == nil || s.Open().Latest().Message != "Good state." {
		t.Fatalf("a broken file replaced the last good state: %v", s.Open())
	}
	if err := s.Err(); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Err() = %v; want the load error naming %s", err, path)
	}
	if n := errorLines(logs); n != 1 {
		t.Errorf("%d error lines for one broken version; want 1", n)
	}

	// Another broken version: one more error line.
	if err := os.WriteFile(path, []byte("not json at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.reload()
	s.reload()
	if n := errorLines(logs); n != 2 {
		t.Errorf("%d error lines after a second broken version; want 2", n)
	}

	// Repaired: loaded, no error.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	mustPost(t, dir, "investigating", "Repaired.", "", t0.Add(time.Minute))
	s.reload()
	if s.Err() != nil || s.Open() == nil || s.Open().Latest().Message != "Repaired." {
		t.Fatalf("after repair: err %v, open %v", s.Err(), s.Open())
	}

	// Removed: no incidents.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	s.reload()
	if s.Open() != nil || len(s.All()) != 0 {
		t.Errorf("after removal: open %v, all %v", s.Open(), s.All())
	}
}

func TestStoreStartsBroken(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, logs := newObservedStore(t, dir)
	if s.Open() != nil || s.Err() == nil || errorLines(logs) != 1 {
		t.Errorf("open %v, err %v, %d error lines; want nothing open, the error, one line", s.Open(), s.Err(), errorLines(logs))
	}
}

func TestStoreWithoutDirectory(t *testing.T) {
	for _, s := range []*Store{OpenStore("", nil), nil} {
		if s.Open() != nil || len(s.All()) != 0 || s.Err() != nil || s.Path() != "" {
			t.Errorf("store %p: open %v, all %v, err %v", s, s.Open(), s.All(), s.Err())
		}
		s.reload()
		s.Close()
	}
}
