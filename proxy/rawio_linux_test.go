package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// rawPair returns a rawConn and the other end of a real loopback TCP connection.
func rawPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	if peer == nil {
		t.Fatal("accept failed")
	}
	rc := newRawConn(c)
	if _, ok := rc.(*rawConn); !ok {
		t.Fatalf("newRawConn returned %T", rc)
	}
	t.Cleanup(func() { rc.Close(); peer.Close() })
	return rc, peer
}

func TestRawConn(t *testing.T) {
	t.Run("bytes both ways, large writes whole, EOF after the peer's half-close", func(t *testing.T) {
		c, peer := rawPair(t)
		big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB: more than socket buffers
		got := make(chan []byte, 1)
		go func() { b, _ := io.ReadAll(peer); got <- b }()
		if n, err := c.Write(big); n != len(big) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		c.(*rawConn).CloseWrite()
		if b := <-got; !bytes.Equal(b, big) {
			t.Fatalf("peer got %d bytes, want %d", len(b), len(big))
		}
		peer.Write([]byte("pong"))
		peer.(*net.TCPConn).CloseWrite()
		b, err := io.ReadAll(c)
		if err != nil || string(b) != "pong" {
			t.Fatalf("ReadAll = %q, %v", b, err)
		}
	})
	t.Run("read deadline gives a timeout net.Error", func(t *testing.T) {
		c, _ := rawPair(t)
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, err := c.Read(make([]byte, 10))
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read past the deadline: %v", err)
		}
	})
	t.Run("closed connection gives net.ErrClosed", func(t *testing.T) {
		c, _ := rawPair(t)
		c.Close()
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read after Close: %v", err)
		}
		if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Write after Close: %v", err)
		}
	})
	t.Run("write to a reset peer fails", func(t *testing.T) {
		c, peer := rawPair(t)
		peer.(*net.TCPConn).SetLinger(0)
		peer.Close()
		var err error
		for i := 0; i < 100 && err == nil; i++ { // the reset arrives after a write or two
			_, err = c.Write(bytes.Repeat([]byte("x"), 4096))
		}
		if err == nil {
			t.Fatal("writes to a reset connection kept succeeding")
		}
	})
	t.Run("tunnels still find the TCP connection", func(t *testing.T) {
		c, _ := rawPair(t)
		if tcpOf(&limitConn{Conn: c}) == nil {
			t.Fatal("tcpOf did not unwrap limitConn{rawConn}")
		}
	})
}

// BenchmarkRawConnWriteRead is one small write and its read back over loopback: the raw calls
// must not allocate.
func BenchmarkRawConnWriteRead(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c)
		c.Close()
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	c := newRawConn(nc)
	defer c.Close()
	msg, buf := []byte("ping"), make([]byte, 4)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
}
