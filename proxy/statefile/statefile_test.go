package statefile

import (
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

func TestWriteAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := WriteAtomic(path, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteAtomic(path, []byte("two")); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	fi, _ := os.Stat(path)
	if string(b) != "two" || fi.Mode().Perm() != 0o600 {
		t.Fatalf("got %q mode %v, want two 0600 (the mode kept)", b, fi.Mode().Perm())
	}
	if err := WriteAtomic(path, nil); err == nil {
		t.Fatal("an empty write was accepted")
	}
	if b, _ := os.ReadFile(path); string(b) != "two" {
		t.Fatalf("a refused write changed the file: %q", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("left behind: %v", entries)
	}
	// A temporary file an interrupted writer left is removed under the lock.
	stale := filepath.Join(dir, TempPrefix("state.json")+"123")
	os.WriteFile(stale, []byte("x"), 0o644)
	RemoveStaleTemps(path)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("stale temporary file kept: %v", err)
	}
}

// TestLockSerialisesWriters: read-change-write under Lock loses no update.
func TestLockSerialisesWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "counter")
	if err := WriteAtomic(path, []byte("0")); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock, err := Lock(LockPath(path))
			if err != nil {
				t.Error(err)
				return
			}
			defer unlock()
			b, _ := os.ReadFile(path)
			n, _ := strconv.Atoi(string(b))
			if err := WriteAtomic(path, []byte(strconv.Itoa(n+1))); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if b, _ := os.ReadFile(path); string(b) != "20" {
		t.Fatalf("counter %s, want 20", b)
	}
}
