//go:build !linux

package proxy

import "net"

// rawConn exists only on Linux (rawio_linux.go); elsewhere connections stay as they are.
type rawConn struct{ *net.TCPConn }

func newRawConn(c net.Conn) net.Conn { return c }
