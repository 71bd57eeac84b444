package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// guardedConn is a server-side connection whose reads go through an h2Guard.
type guardedConn struct {
	net.Conn
	r io.Reader
}

func (c *guardedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// guardServer serves HTTP/2 with x/net's server behind h2Guard on a loopback listener, as the
// TLS listeners do after ALPN (without TLS: the guard sees plain frames either way).
type guardServer struct {
	addr     string
	handled  atomic.Int32
	mu       sync.Mutex
	rejected []string
}

func startGuardServer(t *testing.T) *guardServer {
	t.Helper()
	gs := &guardServer{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs.addr = ln.Addr().String()
	srv := &http2.Server{MaxReadFrameSize: h2MaxFrameSize}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gs.handled.Add(1)
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	})
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				g := newH2Guard(c, 0, func(reason string) {
					gs.mu.Lock()
					gs.rejected = append(gs.rejected, reason)
					gs.mu.Unlock()
				})
				srv.ServeConn(&guardedConn{Conn: c, r: g}, &http2.ServeConnOpts{Handler: h,
					BaseConfig: &http.Server{ErrorLog: log.New(io.Discard, "", 0)}}) // the refusals are expected
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return gs
}

// h2client is a raw HTTP/2 client: frames are written exactly as a test wants them.
type h2client struct {
	t   *testing.T
	c   net.Conn
	fr  *http2.Framer
	enc *hpack.Encoder
	buf bytes.Buffer
}

func dialH2(t *testing.T, addr string, settings ...http2.Setting) *h2client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	hc := &h2client{t: t, c: c, fr: http2.NewFramer(c, c)}
	hc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	hc.enc = hpack.NewEncoder(&hc.buf)
	io.WriteString(c, http2.ClientPreface)
	hc.fr.WriteSettings(settings...)
	return hc
}

// block encodes fields (pseudo-fields first, as given) into one header block.
func (hc *h2client) block(fields ...string) []byte {
	hc.buf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		hc.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return append([]byte(nil), hc.buf.Bytes()...)
}

func (hc *h2client) get(stream uint32, extra ...string) {
	f := append([]string{":method", "GET", ":scheme", "https", ":authority", "a.test", ":path", "/"}, extra...)
	hc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: hc.block(f...), EndStream: true, EndHeaders: true})
}

// outcome reads frames until the stream gets its response HEADERS, a RST_STREAM, the
// connection a GOAWAY, or the connection ends; it returns what happened.
func (hc *h2client) outcome(stream uint32) string {
	hc.t.Helper()
	for {
		f, err := hc.fr.ReadFrame()
		if err != nil {
			if errors.Is(err, io.EOF) || strings.Contains(err.Error(), "reset") {
				return "closed"
			}
			hc.t.Fatalf("reading frames: %v", err)
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if f.StreamID == stream {
				return "status " + f.PseudoValue("status")
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == stream {
				return "RST_STREAM " + f.ErrCode.String()
			}
		case *http2.GoAwayFrame:
			return "GOAWAY " + f.ErrCode.String()
		case *http2.SettingsFrame:
			if !f.IsAck() {
				hc.fr.WriteSettingsAck()
			}
		}
	}
}

// TestH2GuardRefusesConnectionSpecificFields: requests that carry a connection-specific field
// or a te other than trailers end the connection with GOAWAY PROTOCOL_ERROR (x/net alone would
// answer 400), and never reach the handler, however the field is encoded: a plain block, split
// across CONTINUATION frames, with padding and priority, or after earlier requests filled the
// dynamic table. Valid requests around them are served.
func TestH2GuardRefusesConnectionSpecificFields(t *testing.T) {
	gs := startGuardServer(t)
	forbidden := [][]string{
		{"connection", "keep-alive"}, {"keep-alive", "timeout=5"}, {"proxy-connection", "keep-alive"},
		{"transfer-encoding", "chunked"}, {"upgrade", "h2c"}, {"te", "gzip"}, {"te", "trailers, deflate"},
	}
	for _, kv := range forbidden {
		for _, shape := range []string{"plain", "continuation", "padded+priority", "after two good requests"} {
			t.Run(kv[0]+"="+kv[1]+"/"+shape, func(t *testing.T) {
				before := gs.handled.Load()
				hc := dialH2(t, gs.addr)
				stream := uint32(1)
				if shape == "after two good requests" {
					for range 2 {
						hc.get(stream, "x-request", "same", "te", "trailers")
						if got := hc.outcome(stream); got != "status 200" {
							t.Fatalf("good request: %s", got)
						}
						stream += 2
					}
				}
				f := []string{":method", "GET", ":scheme", "https", ":authority", "a.test", ":path", "/", "x-request", "same", kv[0], kv[1]}
				block := hc.block(f...)
				switch shape {
				case "continuation":
					hc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: block[:len(block)-3], EndStream: true})
					hc.fr.WriteContinuation(stream, true, block[len(block)-3:])
				case "padded+priority":
					hc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: block, EndStream: true, EndHeaders: true,
						PadLength: 7, Priority: http2.PriorityParam{Weight: 15}})
				default:
					hc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: block, EndStream: true, EndHeaders: true})
				}
				if got := hc.outcome(stream); got != "GOAWAY PROTOCOL_ERROR" && got != "closed" {
					t.Fatalf("got %s, want GOAWAY PROTOCOL_ERROR", got)
				}
				want := before
				if shape == "after two good requests" {
					want += 2
				}
				if n := gs.handled.Load(); n != want {
					t.Fatalf("handler ran %d times, want %d", n-before, want-before)
				}
			})
		}
	}
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if len(gs.rejected) != len(forbidden)*4 || !strings.Contains(gs.rejected[0], "RFC 9113 section 8.2.2") {
		t.Errorf("onReject saw %d reasons (want %d): %q", len(gs.rejected), len(forbidden)*4, gs.rejected)
	}
}

// TestH2GuardRepeatedSettings: a SETTINGS frame that repeats a parameter is processed in order
// (RFC 9113 section 6.5.3): the last INITIAL_WINDOW_SIZE applies, the connection stays up.
func TestH2GuardRepeatedSettings(t *testing.T) {
	gs := startGuardServer(t)
	hc := dialH2(t, gs.addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1})
	hc.get(1)
	if got := hc.outcome(1); got != "status 200" {
		t.Fatalf("got %s, want status 200", got)
	}
	for {
		f, err := hc.fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the response body: %v", err)
		}
		if d, ok := f.(*http2.DataFrame); ok {
			if len(d.Data()) != 1 {
				t.Fatalf("first DATA frame of %d bytes; the stream window is 1", len(d.Data()))
			}
			return
		}
	}
}

func TestDedupSettings(t *testing.T) {
	enc := func(s ...http2.Setting) []byte {
		var b []byte
		for _, x := range s {
			b = binary.BigEndian.AppendUint16(b, uint16(x.ID))
			b = binary.BigEndian.AppendUint32(b, x.Val)
		}
		return b
	}
	win := func(v uint32) http2.Setting { return http2.Setting{ID: http2.SettingInitialWindowSize, Val: v} }
	push := func(v uint32) http2.Setting { return http2.Setting{ID: http2.SettingEnablePush, Val: v} }
	unknown := http2.Setting{ID: 0x99, Val: 7}
	for _, tc := range []struct {
		name    string
		in, out []byte
	}{
		{"none", enc(), enc()},
		{"one", enc(win(5)), enc(win(5))},
		{"distinct", enc(win(5), push(0), unknown), enc(win(5), push(0), unknown)},
		{"repeat keeps the last", enc(win(100), win(1)), enc(win(1))},
		{"order of last occurrences", enc(win(1), push(0), win(2), unknown, push(1)), enc(win(2), unknown, push(1))},
		{"a dropped invalid value keeps the frame", enc(win(1<<31), win(1)), enc(win(1<<31), win(1))},
		{"a last invalid value is the server's to refuse", enc(win(1), win(1<<31)), enc(win(1 << 31))},
	} {
		if got := dedupSettings(tc.in); !bytes.Equal(got, tc.out) {
			t.Errorf("%s: got %x, want %x", tc.name, got, tc.out)
		}
	}
}

// TestH2GuardPassesFramesThrough: every byte of frames the guard does not change reaches the
// server as sent, whatever sizes the reads come in.
func TestH2GuardPassesFramesThrough(t *testing.T) {
	var in bytes.Buffer
	in.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&in, nil)
	fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	var hb bytes.Buffer
	hpack.NewEncoder(&hb).WriteField(hpack.HeaderField{Name: ":method", Value: "POST"})
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true})
	fr.WriteData(1, false, bytes.Repeat([]byte("d"), 40000))
	fr.WriteData(1, true, []byte("end"))
	fr.WritePing(false, [8]byte{1})
	fr.WriteWindowUpdate(0, 1000)
	want := append([]byte(nil), in.Bytes()...)
	for _, size := range []int{1, 7, 9, 100, 4096, 1 << 20} {
		g := newH2Guard(bytes.NewReader(want), 0, nil)
		var got []byte
		p := make([]byte, size)
		for {
			n, err := g.Read(p)
			got = append(got, p[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("read size %d: %v", size, err)
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("read size %d: %d bytes out of %d in differ", size, len(got), len(want))
		}
	}
}

// TestH2GuardBoundsHeaderBlocks: a header block of CONTINUATION frames that decode to no field
// (dynamic table size updates) is refused with GOAWAY PROTOCOL_ERROR once it passes twice the
// header list limit, before the handler runs; a block just under the limit, split across many
// CONTINUATION frames, is served.
func TestH2GuardBoundsHeaderBlocks(t *testing.T) {
	gs := startGuardServer(t) // newH2Guard(c, 0, …): max header bytes 1 MiB, so the block bound is 2 MiB + 16 KiB
	const maxBlock = 2<<20 + h2MaxFrameSize
	// 0x3f 0xe1 0x1f: a table size update to 4096 (the size it already is): a valid no-op.
	update := []byte{0x3f, 0xe1, 0x1f}
	updates := bytes.Repeat(update, (h2MaxFrameSize-1)/len(update))
	for _, tc := range []struct {
		name   string
		frames int
		want   string
	}{
		{"within the bound", (maxBlock - 4096) / len(updates), "status 200"},
		{"past the bound", maxBlock/len(updates) + 2, "GOAWAY PROTOCOL_ERROR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hc := dialH2(t, gs.addr)
			before := gs.handled.Load()
			// The updates come first (RFC 7541 section 4.2: at the start of a block), the
			// request's fields after them.
			hc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: updates, EndStream: true})
			for range tc.frames - 1 {
				hc.fr.WriteContinuation(1, false, updates)
			}
			hc.fr.WriteContinuation(1, true, hc.block(":method", "GET", ":scheme", "https", ":authority", "a.test", ":path", "/"))
			if got := hc.outcome(1); got != tc.want {
				t.Fatalf("%d CONTINUATION frames (%d bytes): %s, want %s", tc.frames, tc.frames*len(updates), got, tc.want)
			}
			if refused := tc.want != "status 200"; refused && gs.handled.Load() != before {
				t.Fatal("the handler ran for a refused block")
			}
		})
	}
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if len(gs.rejected) != 1 || !strings.Contains(gs.rejected[0], "header block over") {
		t.Fatalf("rejections logged: %q", gs.rejected)
	}
}
