//go:build unix

package statefile

import (
	"errors"
	"os"
	"syscall"
)

// Lock takes an exclusive flock on the lock file at path (creating it), waiting for another
// holder to finish. The lock file stays (removing it would race with a waiting locker); it is
// empty. flock locks belong to the open file, so goroutines of one process exclude each other
// too.
func Lock(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// SyncDir flushes a directory entry change (a rename) to stable storage. Some file systems
// cannot sync a directory; that is not a failed write.
func SyncDir(dir string) error {
	df, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer df.Close()
	if err := df.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return err
	}
	return nil
}
