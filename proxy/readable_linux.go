package proxy

import (
	"net"
	"syscall"
	"unsafe"
)

// waitReadable blocks (honouring the read deadline) until c has bytes to read, EOF or an error,
// and returns how many bytes are queued (0 at EOF). Splicing only what is queued means a copy
// never waits inside splice(2), where Go holds a pipe pair from its pool: an idle plain tunnel
// then costs its two sockets and no pipes (6 descriptors per tunnel become 2).
func waitReadable(c *net.TCPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var avail int
	var opErr error
	err = rc.Read(func(fd uintptr) bool {
		for {
			var b byte
			n, _, e := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b)), 1,
				syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
			switch {
			case e == syscall.EINTR:
				continue
			case e == syscall.EAGAIN:
				return false
			case e != 0:
				opErr = e
				return true
			case n == 0:
				return true
			}
			var q int32
			if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&q))); e != 0 {
				opErr = e
				return true
			}
			avail = int(q)
			return true
		}
	})
	if err != nil {
		return 0, err
	}
	if opErr != nil {
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: opErr}
	}
	return avail, nil
}
