//go:build !unix

package statefile

import "sync"

// postMu serialises writers within this process where flock is unavailable; concurrent
// writers in several processes are then the operators' to avoid.
var postMu sync.Mutex

// Lock holds a process-wide mutex: there is no flock here.
func Lock(path string) (unlock func(), err error) {
	postMu.Lock()
	return postMu.Unlock, nil
}

// SyncDir is a no-op: directories cannot be synced here.
func SyncDir(dir string) error { return nil }
