//go:build !unix

package status

import "sync"

// postMu serialises Posts within this process where flock is unavailable; concurrent posts
// from several processes are then the operators' to avoid.
var postMu sync.Mutex

// lockFile holds a process-wide mutex: there is no flock here.
func lockFile(path string) (unlock func(), err error) {
	postMu.Lock()
	return postMu.Unlock, nil
}

// syncDir is a no-op: directories cannot be synced here.
func syncDir(dir string) error { return nil }
