//go:build unix

package live

import (
	"os"
	"syscall"
)

// stampOf identifies the file's current version cheaply: a rename over it (how Save writes)
// changes the inode, an edit in place the size or modification time.
func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	s := fileStamp{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino = st.Ino
	}
	return s
}
