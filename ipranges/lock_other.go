//go:build !unix

package ipranges

// lockFile is a no-op where flock is unavailable: concurrent Updates of one file are then the
// operator's to avoid.
func lockFile(path string) (unlock func(), err error) { return func() {}, nil }
