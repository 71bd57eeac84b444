//go:build !unix

package live

import "os"

// stampOf identifies the file's current version by size and modification time.
func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{size: fi.Size(), mtime: fi.ModTime()}
}
