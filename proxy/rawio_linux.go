package proxy

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// rawConn is a TCP connection whose reads and writes are raw system calls on its non-blocking
// socket (waiting, when the socket is not ready, through Go's poller as usual, deadlines
// included). The difference from net.TCPConn: the runtime does not mark the goroutine as in a
// system call. A loopback or LAN write runs the peer's receive path inside the call, and on a
// busy core it can outlast the scheduler monitor's 20 µs tick; the runtime then hands the P to
// another thread and back, a context switch or two per request for nothing, since the call
// never blocks.
type rawConn struct {
	*net.TCPConn
	rc syscall.RawConn
	r  rawOp // guarded by its mutex: net.Conn allows concurrent Reads (and Writes)
	w  rawOp
}

// rawOp is one direction's call state, kept in the connection so that the function handed to
// syscall.RawConn is made once, not per call.
type rawOp struct {
	mu    sync.Mutex
	p     []byte
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

func newRawConn(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	rw := &rawConn{TCPConn: tc, rc: rc}
	rw.r.fn = rw.r.read
	rw.w.fn = rw.w.write
	return rw
}

func (o *rawOp) read(fd uintptr) bool {
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&o.p[0])), uintptr(len(o.p)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		o.n, o.errno = int(r), e
		return true
	}
}

func (o *rawOp) write(fd uintptr) bool {
	for o.n < len(o.p) {
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&o.p[o.n])), uintptr(len(o.p)-o.n))
		switch e {
		case 0:
			o.n += int(r)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			o.errno = e
			return true
		}
	}
	return true
}

func (c *rawConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, errno, err := c.do(&c.r, p, false)
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (c *rawConn) Write(p []byte) (int, error) {
	n, errno, err := c.do(&c.w, p, true)
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case errno != 0:
		return n, c.opError("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

// do runs one direction's call on p through the poller (which waits for readiness and
// deadlines) and returns what it did.
func (c *rawConn) do(o *rawOp, p []byte, write bool) (int, syscall.Errno, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.p, o.n, o.errno = p, 0, 0
	var err error
	if write {
		err = c.rc.Write(o.fn)
	} else {
		err = c.rc.Read(o.fn)
	}
	o.p = nil
	return o.n, o.errno, err
}

func (c *rawConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
