//go:build !linux

package proxy

import (
	"net"
	"sync/atomic"
)

// copyTCP is copyStream where the raw relay and splice(2) do not exist.
func (p *pipe) copyTCP(dst, src *net.TCPConn, count *atomic.Int64) error {
	return p.copyStream(dst, src, count)
}
