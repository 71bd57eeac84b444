package proxy

import (
	"net"
	"sync"
)

// limitListener bounds the connections one listener holds open; Accept waits for a free slot,
// so a flood queues in the kernel backlog instead of exhausting file descriptors. The bound can
// change while it runs (limits.max_conns_per_listener on a reload): a lower one lets open
// connections finish and admits new ones as they fall below it.
type limitListener struct {
	net.Listener
	mu        sync.Mutex
	open, max int
	freed     chan struct{} // a slot came free or the bound rose
	done      chan struct{}
	closeOnce sync.Once
}

func newLimitListener(l net.Listener, n int) *limitListener {
	return &limitListener{Listener: l, max: n, freed: make(chan struct{}, 1), done: make(chan struct{})}
}

func (l *limitListener) acquire() bool {
	for {
		l.mu.Lock()
		if l.open < l.max {
			l.open++
			l.mu.Unlock()
			return true
		}
		l.mu.Unlock()
		select {
		case <-l.freed:
		case <-l.done:
			return false
		}
	}
}

func (l *limitListener) release() {
	l.mu.Lock()
	l.open--
	l.mu.Unlock()
	l.wake()
}

func (l *limitListener) wake() {
	select {
	case l.freed <- struct{}{}:
	default:
	}
}

// setMax changes the bound for the connections accepted from now on.
func (l *limitListener) setMax(n int) {
	l.mu.Lock()
	l.max = n
	l.mu.Unlock()
	l.wake()
}

func (l *limitListener) Accept() (net.Conn, error) {
	if !l.acquire() {
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		l.release()
		return nil, err
	}
	return &limitConn{Conn: newRawConn(c), release: l.release}, nil
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitConn releases its listener slot on Close; NetConn exposes the connection beneath so
// hijacked tunnels can splice (tcpOf).
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

func (c *limitConn) NetConn() net.Conn { return c.Conn }

// CloseWrite lets the HTTP/1.x server half-close before it closes (so an error reply such as
// 431 reaches the client instead of being lost to a reset).
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
