package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fixedgate/fixedgate/proxy/policy"
)

// tunnelChunk is how many bytes one copy step moves before the idle deadline is pushed out. On
// Linux a TCP-to-TCP step is a splice(2) loop, so the size only bounds how often we look up.
const tunnelChunk = 256 << 10

// copyBufSize is one TLS record's worth: the unit a TLS leg reads and writes in.
const copyBufSize = 16 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// copyBufferPool lends ReverseProxy its copy buffers, which it would otherwise allocate (32 KiB)
// for every response.
type copyBufferPool struct{}

func (copyBufferPool) Get() []byte  { return *copyBufs.Get().(*[]byte) }
func (copyBufferPool) Put(b []byte) { copyBufs.Put(&b) }

// halfCloser is a connection whose write side can be shut while reads continue.
type halfCloser interface{ CloseWrite() error }

// deadliner is what the idle timeout needs of a connection (net.Conn and HTTP/2 streams).
type readDeadliner interface{ SetReadDeadline(time.Time) error }

// pipe moves bytes both ways between a client and an upstream until both directions end, one
// fails, or neither side sends anything for idle. EOF on one side half-closes the other.
type pipe struct {
	idle     time.Duration
	up, down atomic.Int64 // bytes client→upstream and upstream→client
}

// run copies until done and returns the first error that was not a clean end. One direction
// runs on the calling goroutine, so a tunnel costs one extra goroutine, not two.
func (p *pipe) run(client, upstream io.ReadWriter, closeBoth func()) error {
	errc := make(chan error, 1)
	go func() {
		err := p.copy(upstream, client, &p.up)
		if err != nil {
			closeBoth()
		}
		errc <- err
	}()
	down := p.copy(client, upstream, &p.down)
	if down != nil {
		closeBoth()
	}
	up := <-errc
	closeBoth()
	switch {
	case down != nil && !errors.Is(down, net.ErrClosed):
		return down
	case up != nil && !errors.Is(up, net.ErrClosed):
		return up
	case down != nil:
		return down
	}
	return up
}

// copy moves src's bytes to dst until src ends (EOF is passed on as a half-close), a call
// fails, or the tunnel is idle.
func (p *pipe) copy(dst io.Writer, src io.Reader, count *atomic.Int64) error {
	srcTCP, _ := src.(*net.TCPConn)
	dstTCP, _ := dst.(*net.TCPConn)
	if srcTCP != nil && dstTCP != nil {
		return p.copyTCP(dstTCP, srcTCP, count)
	}
	return p.copyStream(dst, src, count)
}

// copyStream is copy through a buffer, for legs that are not both TCP (TLS to the proxy,
// HTTP/2 streams).
func (p *pipe) copyStream(dst io.Writer, src io.Reader, count *atomic.Int64) error {
	rd, _ := src.(readDeadliner)
	bufp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bufp)
	w := idleWatch{p: p, rd: rd}
	w.arm()
	for {
		n, err := io.CopyBuffer(dst, &io.LimitedReader{R: src, N: tunnelChunk}, *bufp)
		p.moved(count, n)
		switch {
		case err == nil && n == tunnelChunk:
			continue
		case err == nil: // EOF from src: pass the half-close on
			halfClose(dst)
			return nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			if !w.expired(n) {
				continue
			}
			return errTunnelIdle
		default:
			return err
		}
	}
}

// moved counts n bytes moved by one step.
func (p *pipe) moved(count *atomic.Int64, n int64) {
	if n > 0 {
		count.Add(n)
	}
}

// idleWatch is one leg's read deadline: set once for the idle timeout, and when it passes,
// set again if anything moved either way since it was set (the byte counters say so: no clock
// is read per message). A tunnel is closed after between one and two idle timeouts of
// silence.
type idleWatch struct {
	p     *pipe
	rd    readDeadliner
	moved int64 // p's bytes, both ways, when the deadline was set
}

func (w *idleWatch) arm() {
	if w.rd == nil {
		return
	}
	w.moved = w.p.up.Load() + w.p.down.Load()
	w.rd.SetReadDeadline(time.Now().Add(w.p.idle))
}

// expired is called when the deadline passed: it reports whether the tunnel is idle, and
// re-arms the deadline when it is not.
func (w *idleWatch) expired(n int64) bool {
	if n == 0 && w.p.up.Load()+w.p.down.Load() == w.moved {
		return true
	}
	w.arm()
	return false
}

func halfClose(w io.Writer) {
	if hc, ok := w.(halfCloser); ok {
		hc.CloseWrite()
	}
}

var errTunnelIdle = errors.New("tunnel idle timeout")

// tunnels tracks open tunnels so shutdown can wait for them, then cut the rest, and a reload
// can close those its new settings refuse.
type tunnels struct {
	mu     sync.Mutex
	open   map[*tunnelEntry]struct{}
	wg     sync.WaitGroup
	closed bool
}

// tunnelEntry is one open tunnel: who opened it, to where, under which settings.
type tunnelEntry struct {
	principal
	target  policy.Target
	dialed  netip.AddrPort
	src     netip.Addr // the egress address it leaves from
	st      *settings  // the settings that allowed it
	close   func()
	revoked atomic.Pointer[revocation] // why the proxy closed it
}

// revocation is why the proxy itself closed a tunnel: the summary line's reason and error.
type revocation struct {
	reason string // policy_reload or egress_retired
	msg    string
}

// add registers e; it reports false when shutdown already started. A tunnel allowed under
// settings older than cur (a reload came between its checks and now) is checked against cur
// first, so that it cannot slip past the reload's revocation.
func (t *tunnels) add(e *tunnelEntry, cur *settings) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	if t.open == nil {
		t.open = map[*tunnelEntry]struct{}{}
	}
	t.open[e] = struct{}{}
	t.wg.Add(1)
	if cur != e.st {
		e.revokeIf(cur)
	}
	return true
}

func (t *tunnels) done(e *tunnelEntry) {
	t.mu.Lock()
	delete(t.open, e)
	t.mu.Unlock()
	t.wg.Done()
}

// revoke closes every open tunnel that st refuses, and returns how many it closed.
func (t *tunnels) revoke(st *settings) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for e := range t.open {
		if e.revokeIf(st) {
			n++
		}
	}
	return n
}

// revokeIf closes e when st refuses it, once, and reports whether it did.
func (e *tunnelEntry) revokeIf(st *settings) bool {
	why := st.refuses(e)
	if why == "" {
		return false
	}
	return e.revoke(&revocation{reason: "policy_reload", msg: "closed by a config reload: " + why})
}

// revoke closes e, once, for rv, and reports whether this call did.
func (e *tunnelEntry) revoke(rv *revocation) bool {
	if !e.revoked.CompareAndSwap(nil, rv) {
		return false
	}
	e.close()
	return true
}

// closeFrom closes every open tunnel that leaves from one of srcs, and returns how many.
func (t *tunnels) closeFrom(srcs []netip.Addr) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for e := range t.open {
		if e.src.IsValid() && slices.Contains(srcs, e.src) &&
			e.revoke(&revocation{reason: "egress_retired", msg: "closed at the retirement of its egress address " + e.src.String()}) {
			n++
		}
	}
	return n
}

func (t *tunnels) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.open)
}

// drain refuses new tunnels, waits for open ones until ctx ends, then closes what is left.
func (t *tunnels) drain(ctx context.Context) error {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	finished := make(chan struct{})
	go func() { t.wg.Wait(); close(finished) }()
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
	}
	t.mu.Lock()
	for e := range t.open {
		e.close()
	}
	t.mu.Unlock()
	<-finished
	return ctx.Err()
}

// tcpOf returns the *net.TCPConn under c (through our listener wrapper), so that TCP-to-TCP
// copies splice on Linux; nil when c is TLS or anything else.
func tcpOf(c net.Conn) *net.TCPConn {
	for {
		switch v := c.(type) {
		case *net.TCPConn:
			return v
		case *limitConn:
			c = v.Conn
		case *proxiedConn:
			if !v.drained() {
				return nil
			}
			c = v.Conn
		case *rawConn:
			return v.TCPConn
		default:
			return nil
		}
	}
}
