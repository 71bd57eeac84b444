package ipranges

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ip-ranges.json")
	d := stDoc(t)
	if err := Create(path, d); err != nil {
		t.Fatal(err)
	}
	stored, _ := os.ReadFile(path)
	loaded, err := Load(path, 14*stDay)
	if err != nil {
		t.Fatal(err)
	}
	now := stT0.Add(3 * stDay)
	a, _ := Render(d, now, Filter{})
	b, _ := Render(loaded, now, Filter{})
	if !bytes.Equal(a, b) {
		t.Fatalf("render differs after a round trip:\n%s\n%s", a, b)
	}
	if err := Save(path, loaded); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(path); !bytes.Equal(again, stored) {
		t.Fatalf("a second save changed the bytes:\n%s\n%s", stored, again)
	}
	// Render output fed back as a state file loads to the same contract.
	stWrite(t, dir, "served.json", a)
	fed, err := Load(filepath.Join(dir, "served.json"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := Render(fed, now, Filter{}); !bytes.Equal(c, a) {
		t.Fatal("served document fed back renders differently")
	}
	// The stored form is the served form without status.
	if !strings.Contains(string(a), `"status": "announced"`) || strings.Contains(string(stored), `"status"`) {
		t.Fatalf("status in the wrong place:\n%s", stored)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	valid, _ := Marshal(stDoc(t))
	handEdited := stJSON(t, stDoc(t))
	p3 := stEntry(handEdited, "prefixes", 3)
	p3["enabled"] = "2026-01-04T00:00:00Z" // a day after published
	tests := []struct {
		name   string
		data   []byte // nil: no file
		notice time.Duration
		want   []string
	}{
		{"missing", nil, 0, []string{"the file does not exist", "ipranges init"}},
		{"empty", []byte{}, 0, []string{"the file is empty (0 bytes)"}},
		{"truncated", valid[:200], 0, []string{"truncated JSON"}},
		{"invalid JSON", []byte(`{"schema_version": 1,,}`), 0, []string{"invalid JSON at line 1, column 22"}},
		{"rule", stMarshal(t, handEdited), 0, []string{"prefixes[3] (203.0.113.11/32): enabled 2026-01-04T00:00:00Z is only 1 day after published"}},
		{"notice mismatch", valid, 30 * stDay, []string{"notice_days: 14 days does not match the configured notice 30 days"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".json")
			if tc.data != nil {
				stWrite(t, dir, filepath.Base(path), tc.data)
			}
			_, err := Load(path, tc.notice)
			stWantErr(t, err, append([]string{"load contract " + path + ": "}, tc.want...)...)
			if !strings.HasPrefix(err.Error(), "load contract "+path+": ") {
				t.Fatalf("error %q does not start with the file", err)
			}
			if tc.data != nil {
				if got, _ := os.ReadFile(path); !bytes.Equal(got, tc.data) {
					t.Fatal("Load changed the file")
				}
			}
		})
	}
	if _, err := Load(dir, 0); err == nil || !strings.HasPrefix(err.Error(), "load contract "+dir+": ") {
		t.Fatalf("directory: %v", err)
	}
}

func TestSave(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.json")
	d := stDoc(t)
	if err := Save(path, d); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Fatalf("new file mode %v", fi.Mode())
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.Announce(stPfx(t, "198.51.100.21/32"), Egress, 0, "", "", stT0.Add(2*stDay)); err != nil {
		t.Fatal(err)
	}
	if err := Save(path, d); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode not kept: %v", fi.Mode())
	}
	good, _ := os.ReadFile(path)

	// An invalid document is refused and the file is untouched.
	bad := d.Clone()
	bad.Prefixes[4].Enabled = bad.Prefixes[4].Published
	stWantErr(t, Save(path, bad), "save contract "+path+": refusing to write an invalid contract", "prefixes[4] (198.51.100.21/32)")
	if got, _ := os.ReadFile(path); !bytes.Equal(got, good) {
		t.Fatal("a refused save changed the file")
	}
	// Create refuses an existing file.
	stWantErr(t, Create(path, d), "the file already exists")
	if got, _ := os.ReadFile(path); !bytes.Equal(got, good) {
		t.Fatal("a refused create changed the file")
	}
	// No temporary file is left behind.
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("directory holds %v", ents)
	}

	// Through a symlink: the link stays, its target is replaced.
	real := filepath.Join(dir, "real.json")
	if err := Save(real, d); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.json")
	if err := os.Symlink("real.json", link); err != nil {
		t.Fatal(err)
	}
	if err := d.Retire(stPfx(t, "2001:db8::10/128"), 0, RetireOptions{}, stT0.Add(3*stDay)); err != nil {
		t.Fatal(err)
	}
	if err := Save(link, d); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Lstat(link); fi.Mode()&os.ModeSymlink == 0 {
		t.Fatal("the symlink was replaced")
	}
	if got, _ := Load(real, 0); got == nil || got.Prefixes[1].Retired == nil {
		t.Fatal("the symlink's target was not updated")
	}
}

func TestUpdate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.json")
	if err := Create(path, stDoc(t)); err != nil {
		t.Fatal(err)
	}
	now := stT0.Add(20 * stDay)
	stale := filepath.Join(dir, ".c.json.tmp-123")
	stWrite(t, dir, filepath.Base(stale), []byte("{half"))

	old, nd, err := Update(path, 0, now, func(d *Document) error {
		return d.Retire(stPfx(t, "203.0.113.10/32"), 0, RetireOptions{}, now)
	})
	if err != nil {
		t.Fatal(err)
	}
	if old.Prefixes[0].Retired != nil || nd.Prefixes[0].Retired == nil {
		t.Fatal("versions mixed up")
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("Update left a stale temporary file")
	}
	saved, _ := os.ReadFile(path)

	// A change that breaks the promises is refused; the file is untouched.
	_, _, err = Update(path, 0, now, func(d *Document) error {
		d.Prefixes = d.Prefixes[1:] // drop a retired prefix before its 30 days
		return nil
	})
	stWantErr(t, err, "breaks the contract's promises", "was removed before")
	_, _, err = Update(path, 0, now, func(d *Document) error { return errors.New("operator error") })
	stWantErr(t, err, "operator error")
	_, _, err = Update(path, 0, now, func(d *Document) error { d.Prefixes[1].Service = ""; return nil })
	stWantErr(t, err, "would make the contract invalid", "service: empty")
	if got, _ := os.ReadFile(path); !bytes.Equal(got, saved) {
		t.Fatal("a refused update changed the file")
	}
	// A no-op writes nothing.
	fi1, _ := os.Stat(path)
	if _, _, err := Update(path, 0, now, func(d *Document) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if fi2, _ := os.Stat(path); !os.SameFile(fi1, fi2) {
		t.Fatal("a no-op update rewrote the file")
	}
	// 31 days later the next update prunes the retired entry.
	later := now.Add(RetainRetired + stDay)
	_, nd, err = Update(path, 0, later, func(d *Document) error { return nil })
	if err != nil || len(nd.Prefixes) != 3 || nd.Changelog[len(nd.Changelog)-1].Action != "prune" {
		t.Fatalf("prune on update: %v %+v", err, nd)
	}

	// Concurrent updates: the lock serialises them, none is lost.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			_, _, err := Update(path, 0, later, func(d *Document) error {
				return d.Announce(netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(100 + i)}), 32), Egress, 0, "", "", later)
			})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	final, err := Load(path, 0)
	if err != nil || len(final.Prefixes) != 11 {
		t.Fatalf("after concurrent updates: %v, %d prefixes", err, len(final.Prefixes))
	}
}

const crashEnv = "IPRANGES_SAVE_CRASH_PATH"

// TestHelperSaveCrash is the child of TestSaveCrashSafety: it saves a new version over the file
// named in the environment and kills itself (SIGKILL, no cleanup) between fsync and rename.
func TestHelperSaveCrash(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("helper process for TestSaveCrashSafety")
	}
	d, err := Load(path, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	if err := d.Announce(stPfx(t, "198.51.100.99/32"), Egress, 0, "", "", stT0.Add(5*stDay)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	beforeRename = func(tmp string) {
		fmt.Fprintln(os.Stderr, "temp file", tmp)
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
	Save(path, d)
	os.Exit(4) // not reached
}

func TestSaveCrashSafety(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ip-ranges.json")
	if err := Create(path, stDoc(t)); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperSaveCrash$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("child: %v\n%s", err, stderr.String())
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL at the rename: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "temp file") {
		t.Fatalf("child did not reach the rename:\n%s", stderr.String())
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(after, before) {
		t.Fatal("the state file changed although the save never completed")
	}
	if _, err := Load(path, 0); err != nil {
		t.Fatal(err)
	}
	// The synced temporary file is left beside it; the next Update removes it.
	temps, _ := filepath.Glob(filepath.Join(dir, ".ip-ranges.json.tmp-*"))
	if len(temps) != 1 {
		t.Fatalf("temporary files: %v", temps)
	}
	if _, _, err := Update(path, 0, stT0.Add(5*stDay), func(d *Document) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if temps, _ := filepath.Glob(filepath.Join(dir, ".ip-ranges.json.tmp-*")); len(temps) != 0 {
		t.Fatalf("temporary files after Update: %v", temps)
	}
}
