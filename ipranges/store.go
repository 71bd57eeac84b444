package ipranges

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Load reads, parses and validates the state file at path (see Parse and Validate; notice is
// the configured ipranges.notice, or 0 to accept the document's own). Every error starts with
// `load contract PATH: ` and says what is wrong: a missing, empty, truncated or malformed file,
// or the entry and rule violated. Load never writes to the file: a contract that does not load
// stays byte-for-byte as it is, and nothing ever substitutes an empty contract for it.
func Load(path string, notice time.Duration) (*Document, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("load contract %s: the file does not exist (create it with `fixedgate ipranges init`)", path)
		}
		return nil, fmt.Errorf("load contract %s: %w", path, err)
	}
	d, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load contract %s: %w", path, err)
	}
	if err := d.Validate(notice); err != nil {
		return nil, fmt.Errorf("load contract %s: %w", path, err)
	}
	return d, nil
}

// syncFile flushes a file (or directory) to stable storage; tests that save thousands of
// versions and do not test durability replace it.
var syncFile = (*os.File).Sync

// beforeRename, when set (by tests), is called with the temporary file's name after it has been
// written and synced and before it is renamed over the target.
var beforeRename func(tmp string)

// Save validates d and writes it (in Marshal's stored form) to path atomically: a temporary file
// in the same directory (mode 0644, or the existing file's mode), written, synced, renamed over
// path, and the directory synced. Readers see the old file or the new one, never a mix; an
// invalid document is refused before anything is written, so a valid file is never replaced by
// a broken or empty one. If path is a symlink, the file it points to is replaced.
//
// A crash between writing and renaming leaves a `.NAME.tmp-*` file beside the target and the
// target untouched; Save does not clean such files up (another Save may be writing one right
// now), Update does, under its lock.
func Save(path string, d *Document) error {
	return save(path, d, true)
}

// Create is Save for a state file that must not exist yet (`ipranges init`): the synced
// temporary file is hard-linked to path, which fails if path exists, so a concurrent Create or
// an existing contract is never overwritten.
func Create(path string, d *Document) error {
	return save(path, d, false)
}

func save(path string, d *Document, replace bool) error {
	if err := d.Validate(0); err != nil {
		return fmt.Errorf("save contract %s: refusing to write an invalid contract: %w", path, err)
	}
	data, err := Marshal(d)
	if err != nil {
		return fmt.Errorf("save contract %s: %w", path, err)
	}
	return writeAtomic(path, data, replace)
}

// writeAtomic writes data, the stored form of a validated document, to path (see Save).
func writeAtomic(path string, data []byte, replace bool) (err error) {
	if len(data) == 0 { // cannot happen; the guarantee is worth a line
		return fmt.Errorf("save contract %s: refusing to write an empty file", path)
	}
	target := path
	mode := fs.FileMode(0o644)
	if replace {
		if real, err := filepath.EvalSymlinks(path); err == nil {
			target = real
		}
		if fi, err := os.Stat(target); err == nil {
			mode = fi.Mode().Perm()
		}
	}
	dir, base := filepath.Split(target)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, tempPrefix(base)+"*")
	if err != nil {
		return fmt.Errorf("save contract %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(mode); err != nil {
		return fmt.Errorf("save contract %s: %w", path, err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("save contract %s: write %s: %w", path, tmp, err)
	}
	if err = syncFile(f); err != nil {
		return fmt.Errorf("save contract %s: sync %s: %w", path, tmp, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("save contract %s: %w", path, err)
	}
	if beforeRename != nil {
		beforeRename(tmp)
	}
	if replace {
		if err = os.Rename(tmp, target); err != nil {
			return fmt.Errorf("save contract %s: %w", path, err)
		}
	} else {
		if err = os.Link(tmp, target); err != nil {
			if errors.Is(err, fs.ErrExist) {
				err = fmt.Errorf("save contract %s: the file already exists; a contract is created only once", path)
				return err
			}
			return fmt.Errorf("save contract %s: %w", path, err)
		}
		os.Remove(tmp)
	}
	if err = syncDir(dir); err != nil {
		return fmt.Errorf("save contract %s: the new version is in place but syncing %s failed: %w", path, dir, err)
	}
	return nil
}

func tempPrefix(base string) string { return "." + base + ".tmp-" }

func syncDir(dir string) error {
	df, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer df.Close()
	if err := syncFile(df); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return err // some file systems cannot sync a directory; that is not a failed save
	}
	return nil
}

// removeStaleTemps deletes temporary files that an interrupted Save of path left behind.
// Callers hold path's lock, so no Save of path is in flight.
func removeStaleTemps(path string) {
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
		if strings.HasPrefix(e.Name(), tempPrefix(base)) && e.Type().IsRegular() {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// Update is one change to the contract at path, the way every mutating CLI command makes it:
// under an exclusive lock (a `.NAME.lock` file beside it, so two operators cannot lose each
// other's change), Load with notice, remove temporary files a crashed Save left behind, apply
// change to a copy, Prune at now, CheckSuccessor(old, new, now), and Save. It returns both
// versions; when change and Prune alter nothing, nothing is written and new equals old.
// An error from any step leaves the file as it was.
func Update(path string, notice time.Duration, now time.Time, change func(d *Document) error) (old, new *Document, err error) {
	unlock, err := lockFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("lock contract %s: %w", path, err)
	}
	defer unlock()
	old, err = Load(path, notice)
	if err != nil {
		return nil, nil, err
	}
	removeStaleTemps(path)
	new = old.Clone()
	if err := change(new); err != nil {
		return old, nil, err
	}
	new.Prune(now)
	if err := new.Validate(notice); err != nil {
		return old, nil, fmt.Errorf("the change would make the contract invalid: %w", err)
	}
	if err := CheckSuccessor(old, new, now); err != nil {
		return old, nil, fmt.Errorf("the change breaks the contract's promises: %w", err)
	}
	oldData, err1 := Marshal(old)
	newData, err2 := Marshal(new)
	if err := errors.Join(err1, err2); err != nil {
		return old, nil, fmt.Errorf("save contract %s: %w", path, err)
	}
	if bytes.Equal(oldData, newData) {
		return old, new, nil
	}
	if err := writeAtomic(path, newData, true); err != nil {
		return old, nil, err
	}
	return old, new, nil
}

// lockPath is the lock file Update holds while it changes path.
func lockPath(path string) string {
	dir, base := filepath.Split(path)
	return filepath.Join(dir, "."+base+".lock")
}
