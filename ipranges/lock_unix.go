//go:build unix

package ipranges

import (
	"os"
	"syscall"
)

// lockFile takes an exclusive flock on path's lock file, waiting for another holder to finish.
// The lock file stays (removing it would race with a waiting locker); it is empty.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(lockPath(path), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
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
