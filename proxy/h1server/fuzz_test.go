package h1server

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzServeConn feeds arbitrary bytes to the server as one client connection and checks what
// a hostile client must never get: a crash, a connection the server keeps after the client has
// left, or bytes that do not start with an HTTP/1.x status line. Real loopback TCP, so
// half-close and resets behave as in production.
func FuzzServeConn(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n",
		"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
		"GET http://a/x HTTP/1.1\r\nHost: b\r\nHost: c\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("x", 5000) + "\r\n\r\n",
		"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
	} {
		f.Add([]byte(s))
	}
	logBuf := &syncBuffer{}
	srv := &Server{
		ReadHeaderTimeout: 2 * time.Second,
		MaxHeaderBytes:    4096,
		ErrorLog:          log.New(logBuf, "", 0),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n, _ := io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
			w.Header().Set("X-Read", strings.Repeat("n", int(n%7)))
			if r.URL.Path == "/b" {
				w.(http.Flusher).Flush()
			}
			io.WriteString(w, r.Method+" "+r.URL.Path)
		}),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { ln.Close() })
	served := make(chan struct{}, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			srv.ServeConn(context.Background(), c, nil)
			served <- struct{}{}
		}
	}()
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > 64<<10 {
			return
		}
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			c.Write(raw)
			c.(*net.TCPConn).CloseWrite()
		}()
		out, _ := io.ReadAll(bufio.NewReader(c))
		if len(out) > 0 && !bytes.HasPrefix(out, []byte("HTTP/1.1 ")) && !bytes.HasPrefix(out, []byte("HTTP/1.0 ")) {
			t.Fatalf("response does not start with a status line: %.80q", out)
		}
		if len(out) > 0 {
			if _, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil); err != nil {
				t.Fatalf("first response does not parse: %v in %.200q", err, out)
			}
		}
		c.Close()
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Fatal("server kept the connection after the client left")
		}
		if logBuf.String() != "" {
			t.Fatalf("server logged a panic: %s", logBuf.String())
		}
	})
}
