//go:build !linux

package egress

import "syscall"

func bindNoPort(network, address string, c syscall.RawConn) error { return nil }
