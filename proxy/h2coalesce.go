package proxy

import (
	"sync"
	"time"
)

// h2HoldHeaders is how long a response's HEADERS may wait for its DATA (see h2Coalescer).
const h2HoldHeaders = 200 * time.Microsecond

// h2Coalescer sits between x/net's HTTP/2 server and the client's TLS connection. That server
// writes a response's HEADERS and, a moment later, its DATA in two flushes: the handler waits
// for its HEADERS to be written before it queues DATA, and the server flushes whenever its
// queue is empty. Holding a write whose last frame is HEADERS without END_STREAM for up to
// h2HoldHeaders lets the DATA join it: one TLS record and one syscall instead of two. Any other
// write, or the hold running out, sends what is held; Close drops it (the streams end anyway).
type h2Coalescer struct {
	*peekedConn               // and so ConnectionState, which the HTTP/2 server needs for r.TLS
	sendTimeout time.Duration // bounds the timer's own write, which the server does not watch
	mu          sync.Mutex
	held        []byte
	timer       *time.Timer
	err         error // a failed write of held bytes; later writes return it
}

func newH2Coalescer(c *peekedConn, sendTimeout time.Duration) *h2Coalescer {
	hc := &h2Coalescer{peekedConn: c, sendTimeout: sendTimeout}
	hc.timer = time.AfterFunc(time.Hour, hc.flushHeld)
	hc.timer.Stop()
	return hc
}

func (c *h2Coalescer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if endsWithOpenHeaders(p) && len(c.held)+len(p) <= 16<<10 {
		if len(c.held) == 0 {
			c.timer.Reset(h2HoldHeaders)
		}
		c.held = append(c.held, p...)
		return len(p), nil
	}
	if len(c.held) == 0 {
		return c.peekedConn.Write(p)
	}
	c.timer.Stop()
	c.held = append(c.held, p...)
	_, err := c.peekedConn.Write(c.held)
	c.held = c.held[:0]
	if err != nil {
		c.err = err
		return 0, err
	}
	return len(p), nil
}

// flushHeld sends held HEADERS whose DATA did not come in time (a streamed response).
func (c *h2Coalescer) flushHeld() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.held) == 0 || c.err != nil {
		return
	}
	// The server sets its own write deadline before each of its writes (WriteByteTimeout) and
	// clears it after; this one stays until the server's next write replaces it.
	c.peekedConn.SetWriteDeadline(time.Now().Add(c.sendTimeout))
	if _, err := c.peekedConn.Write(c.held); err != nil {
		c.err = err
	}
	c.held = c.held[:0]
}

// Close closes at once, so that it also ends a write stuck on a client that stopped reading.
func (c *h2Coalescer) Close() error {
	c.timer.Stop()
	return c.peekedConn.Close()
}

// endsWithOpenHeaders reports whether p is whole HTTP/2 frames, the last of them a complete
// HEADERS frame (END_HEADERS) that does not end its stream: a response whose DATA follows.
func endsWithOpenHeaders(p []byte) bool {
	const (
		frameHeaders   = 0x1
		flagEndStream  = 0x1
		flagEndHeaders = 0x4
	)
	var typ, flags byte
	for len(p) > 0 {
		if len(p) < 9 {
			return false
		}
		n := int(p[0])<<16 | int(p[1])<<8 | int(p[2])
		typ, flags = p[3], p[4]
		if len(p) < 9+n {
			return false
		}
		p = p[9+n:]
	}
	return typ == frameHeaders && flags&flagEndHeaders != 0 && flags&flagEndStream == 0
}
