package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// frames builds real HTTP/2 frames with x/net's Framer.
func frames(t *testing.T, write func(fr *http2.Framer) error) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := write(http2.NewFramer(&buf, nil)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestEndsWithOpenHeaders(t *testing.T) {
	var hb bytes.Buffer
	hpack.NewEncoder(&hb).WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
	block := hb.Bytes()
	headers := func(endStream, endHeaders bool) func(fr *http2.Framer) error {
		return func(fr *http2.Framer) error {
			return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndStream: endStream, EndHeaders: endHeaders})
		}
	}
	open := frames(t, headers(false, true))
	settingsAck := frames(t, func(fr *http2.Framer) error { return fr.WriteSettingsAck() })
	data := frames(t, func(fr *http2.Framer) error { return fr.WriteData(1, true, []byte("{}")) })
	for _, tc := range []struct {
		name string
		p    []byte
		want bool
	}{
		{"response HEADERS, DATA to follow", open, true},
		{"after other frames in the same write", append(append([]byte{}, settingsAck...), open...), true},
		{"HEADERS that end the stream", frames(t, headers(true, true)), false},
		{"HEADERS continued in CONTINUATION", frames(t, headers(false, false)), false},
		{"HEADERS then its DATA", append(append([]byte{}, open...), data...), false},
		{"DATA", data, false},
		{"SETTINGS ack", settingsAck, false},
		{"a cut frame", open[:len(open)-1], false},
		{"less than a frame header", open[:5], false},
		{"empty", nil, false},
	} {
		if got := endsWithOpenHeaders(tc.p); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

// h2CoalescedServer serves handler over HTTP/2 on real loopback TLS, with h2Coalescer between
// x/net's server and the connection as in production; it returns an HTTP/2 client for it.
func h2CoalescedServer(t *testing.T, handler http.Handler) (*http.Client, string) {
	t.Helper()
	certSrc := httptest.NewUnstartedServer(nil) // only for its certificate and a client that trusts it
	certSrc.EnableHTTP2 = true
	certSrc.StartTLS()
	t.Cleanup(certSrc.Close)
	cfg := certSrc.TLS.Clone()
	cfg.NextProtos = []string{"h2"}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	h2 := &http2.Server{WriteByteTimeout: 10 * time.Second}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				tc := c.(*tls.Conn)
				if tc.Handshake() != nil {
					tc.Close()
					return
				}
				hc := newH2Coalescer(&peekedConn{Conn: tc, r: bufio.NewReader(tc)}, 10*time.Second)
				h2.ServeConn(hc, &http2.ServeConnOpts{Handler: handler})
				hc.Close()
			}()
		}
	}()
	tr := &http2.Transport{TLSClientConfig: certSrc.Client().Transport.(*http.Transport).TLSClientConfig.Clone()}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}, "https://" + ln.Addr().String()
}

// Held HEADERS go out on their own when no DATA follows (a stream that waits): the client gets
// the response headers while the handler still holds its body back; small responses arrive
// whole; the TLS state reaches the handler through the coalescer.
func TestH2CoalescerDelivers(t *testing.T) {
	gotHeaders := make(chan struct{})
	c, base := h2CoalescedServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			http.Error(w, "no TLS state", 500)
			return
		}
		if r.URL.Path == "/stream" {
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			select {
			case <-gotHeaders:
			case <-time.After(15 * time.Second):
				return // the client fails on its own
			}
		}
		io.WriteString(w, "body of "+r.URL.Path)
	}))
	for i := range 20 {
		resp, err := c.Get(base + "/small")
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || string(b) != "body of /small" || resp.ProtoMajor != 2 {
			t.Fatalf("request %d: %s %q %v", i, resp.Status, b, err)
		}
	}
	resp, err := c.Get(base + "/stream") // returns when the HEADERS frame arrives
	if err != nil {
		t.Fatalf("headers of a held-back stream never arrived: %v", err)
	}
	close(gotHeaders)
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(b) != "body of /stream" {
		t.Fatalf("stream body %q, %v", b, err)
	}
}
