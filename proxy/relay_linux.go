package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// copyTCP relays between two TCP sockets, choosing the way per read. A tunnel mostly carries
// small messages (API calls inside a TLS session), and for those the cheapest relay is one
// read and one write: it waits for the socket through the runtime's poller without holding a
// buffer, reads what is there into a pooled buffer, writes it on and gives the buffer back, so
// an idle tunnel holds its two sockets and nothing else. When a read fills the buffer a bulk
// transfer is under way: the leg moves to splice(2), which copies in the kernel, and back when
// a step moves less than a buffer.
func (p *pipe) copyTCP(dst, src *net.TCPConn, count *atomic.Int64) error {
	srcRC, err := src.SyscallConn()
	if err != nil {
		return err
	}
	dstRC, err := dst.SyscallConn()
	if err != nil {
		return err
	}
	leg := &rawLeg{}
	leg.readFn, leg.writeFn = leg.read, leg.write
	w := idleWatch{p: p, rd: src}
	w.arm()
	bulk, small := false, 0 // splicing; and how many steps in a row moved less than a buffer
	for {
		var n int64
		if bulk {
			n, err = p.spliceStep(dst, src)
			// A download has short steps too (the reader was quicker than the sender): only a
			// few in a row mean the stream turned chatty.
			if n < copyBufSize {
				small++
			} else {
				small = 0
			}
			bulk = err == nil && small < 4
		} else {
			n, err = leg.relay(srcRC, dstRC)
			bulk, small = err == nil && leg.full, 0
		}
		p.moved(count, n)
		switch {
		case err == nil && n > 0:
			continue
		case err == nil: // EOF from src: pass the half-close on
			dst.CloseWrite()
			return nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			if !w.expired(n) {
				continue
			}
			return errTunnelIdle
		default:
			return &net.OpError{Op: "relay", Net: "tcp", Source: src.LocalAddr(), Addr: src.RemoteAddr(), Err: err}
		}
	}
}

// spliceStep moves what src has queued (up to tunnelChunk) with splice(2).
func (p *pipe) spliceStep(dst, src *net.TCPConn) (int64, error) {
	avail, err := waitReadable(src)
	if err != nil {
		return 0, err
	}
	if avail <= 0 || avail > tunnelChunk {
		avail = tunnelChunk
	}
	n, err := io.CopyN(dst, src, int64(avail))
	if err == io.EOF {
		err = nil
	}
	return n, err
}

// rawLeg is one direction's state for the read-and-write relay; its functions are made once
// per tunnel, not per message.
type rawLeg struct {
	buf             *[]byte // from copyBufs while a message is in hand
	n, off          int
	errno           syscall.Errno
	full            bool // the last read filled the buffer
	readFn, writeFn func(fd uintptr) bool
}

// relay waits until src is readable, reads what is there and writes it all to dst. It returns
// the bytes moved (0 at EOF).
func (l *rawLeg) relay(src, dst syscall.RawConn) (int64, error) {
	l.n, l.off, l.errno, l.full = 0, 0, 0, false
	if err := src.Read(l.readFn); err != nil {
		return 0, err
	}
	if l.errno != 0 {
		return 0, os.NewSyscallError("read", l.errno)
	}
	if l.n == 0 {
		return 0, nil
	}
	defer func() {
		copyBufs.Put(l.buf)
		l.buf = nil
	}()
	l.full = l.n == len(*l.buf)
	err := dst.Write(l.writeFn)
	switch {
	case err != nil:
		return int64(l.off), err
	case l.errno != 0:
		return int64(l.off), os.NewSyscallError("write", l.errno)
	}
	return int64(l.n), nil
}

// read is the poller's read callback: a buffer is taken only for a read that finds data.
func (l *rawLeg) read(fd uintptr) bool {
	bp := copyBufs.Get().(*[]byte)
	b := *bp
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			copyBufs.Put(bp)
			return false
		case 0:
			if r == 0 {
				copyBufs.Put(bp) // EOF
			} else {
				l.buf, l.n = bp, int(r)
			}
			return true
		}
		copyBufs.Put(bp)
		l.errno = e
		return true
	}
}

// write is the poller's write callback: it writes the rest of the message.
func (l *rawLeg) write(fd uintptr) bool {
	b := (*l.buf)[:l.n]
	for l.off < len(b) {
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[l.off])), uintptr(len(b)-l.off))
		switch e {
		case 0:
			l.off += int(r)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			l.errno = e
			return true
		}
	}
	return true
}
