// Package statefile writes the small state files the proxy keeps beside its contract (probe
// history, status incidents) so that a crash or a concurrent writer never leaves a torn or empty
// file: a temporary file in the same directory, fsync, rename, fsync of the directory, and an
// flock for writers that read, change and write back.
package statefile

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// WriteAtomic writes data to path: a temporary file in the same directory (mode 0644, or the
// existing file's), written, synced, renamed over path, and the directory synced. Readers see
// the old file or the new one. If path is a symlink, the file it points to is replaced.
func WriteAtomic(path string, data []byte) (err error) {
	if len(data) == 0 {
		return fmt.Errorf("write %s: refusing to write an empty file", path)
	}
	target := path
	if real, err := filepath.EvalSymlinks(path); err == nil {
		target = real
	}
	mode := fs.FileMode(0o644)
	if fi, err := os.Stat(target); err == nil {
		mode = fi.Mode().Perm()
	}
	dir, base := filepath.Split(target)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, TempPrefix(base)+"*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: sync %s: %w", path, tmp, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(tmp, target); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = SyncDir(dir); err != nil {
		return fmt.Errorf("write %s: the update is in place but syncing %s failed: %w", path, dir, err)
	}
	return nil
}

// TempPrefix is the name prefix of WriteAtomic's temporary files for a file named base.
func TempPrefix(base string) string { return "." + base + ".tmp-" }

// LockPath is the lock file a writer holds (Lock) while it reads, changes and writes path.
func LockPath(path string) string {
	dir, base := filepath.Split(path)
	return filepath.Join(dir, "."+base+".lock")
}

// RemoveStaleTemps deletes temporary files an interrupted WriteAtomic left beside path. The
// caller holds path's lock (Lock), so no writer is writing one.
func RemoveStaleTemps(path string) {
	target := path
	if real, err := filepath.EvalSymlinks(path); err == nil {
		target = real
	}
	dir, base := filepath.Split(target)
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), TempPrefix(base)) && e.Type().IsRegular() {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}
