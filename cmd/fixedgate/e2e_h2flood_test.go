package main

// HTTP/2 floods against the real binary's gateway door: rapid reset (CVE-2023-44487), the
// CONTINUATION flood (CVE-2024-27316 class), SETTINGS and PING floods, and a client that opens
// streams for large responses and never reads them. Each flood is driven with raw frames over
// TLS from loopback while a well-behaved HTTP/2 client on another connection keeps making
// requests; the test samples the proxy's resident memory (/proc/PID/status) and its goroutines
// (go_goroutines on the admin /metrics) before, during and after.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	gotls "crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

const (
	// floodFor bounds every flood loop in time (each also has a frame budget).
	floodFor = 3 * time.Second
	// floodHold bounds how long the never-reading client holds its streams open.
	floodHold = 8 * time.Second
	// floodBigPath is a backend path that sends floodBigSize bytes (with a Content-Length): a
	// download large enough that no buffer on the way can hold all of it.
	floodBigPath = "/flood/big"
	floodBigSize = 64 << 20
)

// floodCase is one flood: drive writes its frames on a fresh connection (past the preface and
// the client's SETTINGS) within fc's budget; wantEnd, if set, is a substring the description
// of how the connection ended must contain; maxGrowthMiB bounds the proxy's peak RSS growth.
type floodCase struct {
	name         string
	read         bool // a goroutine reads (and discards) everything the proxy sends meanwhile
	paced        bool // with read: the flood keeps pace with the proxy (floodConn.pace)
	maxFrames    int
	drive        func(t *testing.T, fc *floodConn)
	settle       func(t *testing.T) // after the connection closed, before "after" is measured
	wantEnd      string
	maxGrowthMiB float64
	perStreamMiB float64 // if set, bounds floodConn.perStream
}

// TestHTTP2Floods proves that no HTTP/2 flood of one connection takes the proxy down, starves
// other clients, or makes it buffer without bound: for each flood, driven with raw frames, the
// proxy is alive and serves a normal request afterwards, every request another HTTP/2 client
// made meanwhile succeeded, and the proxy's resident memory grew by less than a bound that
// buffering what the flood sent (or what it asked for and never read) would clearly exceed;
// for a client that never reads, the proxy also read no more than a bound ahead per stream.
// Where the protocol or x/net's server says the connection must end (a header block far over
// the header list size), it ends with GOAWAY. Latency is logged ("flood:" lines), never
// asserted: these machines are shared.
//
// The memory bounds are on growth over the RSS before the flood, and are wide: under go test
// -race the binary is built with -race, whose shadow memory multiplies every allocation's
// footprint several times over, and the Go runtime returns freed memory to the OS lazily. A
// flood that made the proxy buffer what it sends would grow RSS by at least the bytes sent;
// the never-reading client asks for floodBigSize bytes on each of up to 250 streams, which no
// bound here could hold.
func TestHTTP2Floods(t *testing.T) {
	f := newFixture(t)
	fl := startFleet(t, 4)
	f.dns.Set(fleetName, 60, fl.addrs(0, 4)...)
	big := addFloodBig(fl)

	// The header block of a request, with the pseudo-fields a gateway request needs; with
	// unindexed, nothing enters the HPACK dynamic table.
	reqBlock := func(fc *floodConn, path string, unindexed ...bool) []byte {
		fc.hbuf.Reset()
		for _, hf := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", gwHost}, {":path", path}} {
			fc.enc.WriteField(hpack.HeaderField{Name: hf[0], Value: hf[1], Sensitive: len(unindexed) > 0})
		}
		return fc.hbuf.Bytes()
	}
	// continuation sends one HEADERS without END_HEADERS and then CONTINUATION frames of the
	// full frame size, never END_HEADERS, with fragments from src.
	continuation := func(src blockSource) func(t *testing.T, fc *floodConn) {
		return func(t *testing.T, fc *floodConn) {
			// Unindexed: dynamic table size updates (below) are valid only while the table is empty.
			block := slices.Clone(reqBlock(fc, "/", true))
			if !fc.send(func() error {
				return fc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndStream: true})
			}) {
				return
			}
			frag := make([]byte, 0, h2FrameSize)
			for fc.more() {
				frag = src.next(frag[:0])
				if !fc.send(func() error { return fc.fr.WriteContinuation(1, false, frag) }) {
					return
				}
			}
			// Budget spent with the connection up: the rest of the last representation, and
			// END_HEADERS. If the proxy followed the whole block (and kept its HPACK state in
			// step), stream 1 is an ordinary GET, and answered.
			fc.watch1 = true
			rest := src.rest()
			fc.send(func() error { return fc.fr.WriteContinuation(1, true, rest) })
		}
	}
	// Literal header fields (never indexed, so no dynamic table churn) with random values.
	fieldsSrc := func() blockSource {
		var pending bytes.Buffer
		enc := hpack.NewEncoder(&pending)
		val := make([]byte, 600)
		return blockSource{
			next: func(frag []byte) []byte {
				for pending.Len() < h2FrameSize {
					rand.Read(val)
					enc.WriteField(hpack.HeaderField{Name: "x-flood", Value: fmt.Sprintf("%x", val), Sensitive: true})
				}
				return append(frag, pending.Next(h2FrameSize)...)
			},
			rest: pending.Bytes,
		}
	}
	// Dynamic table size updates (RFC 7541 section 6.3): valid at any point of a block while the
	// table is empty, and they emit no field, so a header list limit that counts decoded fields
	// never trips on them; only a server that buffered the block would grow. Each is the value
	// 31 spread over 10 bytes (0x3f, eight 0x80 continuation bytes, 0x00; x/net's decoder takes
	// varints up to that length): ten times fewer decoder steps per byte than 0x20, so the
	// flood sends more bytes. 5 frames hold a whole number of them (8192); the others end
	// within one, which the decoders must carry over to the next frame.
	updatesSrc := func() blockSource {
		update := append(append([]byte{0x3f}, bytes.Repeat([]byte{0x80}, 8)...), 0x00)
		updates := bytes.Repeat(update, 5*h2FrameSize/len(update))
		off := 0
		return blockSource{
			next: func(frag []byte) []byte {
				frag = append(frag, updates[off:off+h2FrameSize]...)
				off = (off + h2FrameSize) % len(updates)
				return frag
			},
			rest: func() []byte { return updates[off : off+(len(update)-off%len(update))%len(update)] },
		}
	}

	settingsFlood := func(t *testing.T, fc *floodConn) {
		for i := uint32(0); fc.more(); i++ {
			// INITIAL_WINDOW_SIZE twice (h2guard keeps the last value; x/net alone would hang up
			// on the repeat), and values that make the server redo work each time.
			s := []http2.Setting{
				{ID: http2.SettingInitialWindowSize, Val: 1 << 20},
				{ID: http2.SettingHeaderTableSize, Val: 4096 - i%2*1024},
				{ID: http2.SettingMaxFrameSize, Val: h2FrameSize + i%2*h2FrameSize},
				{ID: http2.SettingInitialWindowSize, Val: 65535 + i%2},
			}
			if !fc.send(func() error { return fc.fr.WriteSettings(s...) }) {
				return
			}
		}
	}
	pingFlood := func(t *testing.T, fc *floodConn) {
		var data [8]byte
		for i := uint64(0); fc.more(); i++ {
			data = [8]byte{byte(i >> 56), byte(i >> 48), byte(i >> 40), byte(i >> 32), byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
			if !fc.send(func() error { return fc.fr.WritePing(false, data) }) {
				return
			}
		}
	}
	// neverRead opens streams (as many as the proxy allows, or n), each asking for
	// floodBigSize bytes, never reads, and holds on until the backends have stopped sending:
	// every buffer on the way is full. It notes in fc.perStream the most the backends sent on
	// one of its streams: what the proxy read ahead for it (and the little that went out on the
	// client's window, and into buffers of the backend's own).
	neverRead := func(bigWindow bool, n uint32) func(t *testing.T, fc *floodConn) {
		return func(t *testing.T, fc *floodConn) {
			fc.noDrain = true
			sent0 := big.sent.Load()
			big.maxStream.Store(0) // the previous case's streams have all ended (bigDone)
			if bigWindow {
				const maxWindow = 1<<31 - 1
				fc.send(func() error {
					return fc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: maxWindow})
				})
				fc.send(func() error { return fc.fr.WriteWindowUpdate(0, maxWindow-65535) })
			}
			streams := min(fc.maxStreams, uint32(fc.budget))
			if n > 0 {
				streams = min(streams, n)
			}
			for i := range streams {
				block := reqBlock(fc, floodBigPath)
				if !fc.send(func() error {
					return fc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 2*i + 1, BlockFragment: block, EndStream: true, EndHeaders: true})
				}) {
					return
				}
			}
			if fc.flush() != nil {
				return
			}
			// Nothing signals "every buffer is full": watch the backends' byte count settle (1 s
			// without a byte), for at most floodHold.
			var last int64 = -1
			settled := time.Time{}
			for end := time.Now().Add(floodHold); time.Now().Before(end); {
				n := big.sent.Load()
				if n != last {
					last, settled = n, time.Now()
				} else if time.Since(settled) > time.Second {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			fc.perStream = big.maxStream.Load()
			fc.note = fmt.Sprintf("%d streams; backends sent %.1f MiB that the client never read, at most %.2f MiB on one stream",
				streams, float64(big.sent.Load()-sent0)/(1<<20), float64(fc.perStream)/(1<<20))
		}
	}

	// The proxy cancels the backend requests of the streams of a connection that closed.
	bigDone := func(t *testing.T) {
		waitFor(t, 60*time.Second, "the backends' streams for the closed connection end", func() bool { return big.active.Load() == 0 })
	}
	// Bounds on the proxy's RSS growth (MiB, without -race; see floodBound). Measured here
	// without -race: 4-16 MiB for the control-frame floods; 155-185 MiB for the never-reading
	// client with the upstream HTTP/2 window at 512 KiB per stream (250 streams × that window
	// and the 256 KiB copy buffer of proxy/gateway.go's bigReads; upstreamH2StreamWindow), and
	// about 1050 MiB with net/http's default of 4 MiB per stream. Under -race: 10-40 and
	// 490-565 MiB.
	// perStreamBound (MiB, any build) is on what the backends sent on one never-read stream:
	// 0.75-1.25 MiB with a 512 KiB window (the window, bigReads' 256 KiB, a copy buffer and the
	// backend's own), 4-5 MiB with net/http's default window.
	const controlBound, neverReadBound, perStreamBound = 128, 384, 2
	cases := []floodCase{
		// x/net runs at most MAX_CONCURRENT_STREAMS handlers and hangs up (GOAWAY
		// ENHANCE_YOUR_CALM) when more than 4 times that wait; whether they wait depends on how
		// fast handlers end, so the ending is only reported.
		{name: "rapid reset", read: true, paced: true, maxFrames: 200_000, maxGrowthMiB: controlBound,
			drive: func(t *testing.T, fc *floodConn) {
				for id := uint32(1); fc.more(); id += 2 {
					block := reqBlock(fc, "/")
					if !fc.send(func() error {
						return fc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true})
					}) || !fc.send(func() error { return fc.fr.WriteRSTStream(id, http2.ErrCodeCancel) }) {
						return
					}
				}
			}},
		// Once a block's fields have used up x/net's header list size (from MaxHeaderBytes,
		// 32 KiB), any further CONTINUATION with a fragment ends the connection: PROTOCOL_ERROR.
		{name: "continuation with fields", read: true, maxFrames: 64 << 20 / h2FrameSize, maxGrowthMiB: controlBound,
			drive: continuation(fieldsSrc()), wantEnd: "GOAWAY PROTOCOL_ERROR"},
		// A block that decodes to no field passes x/net's limit; proxy/h2guard.go ends it once
		// it is twice max_header_bytes long.
		{name: "continuation without fields", read: true, maxFrames: 4 << 30 / h2FrameSize, maxGrowthMiB: controlBound,
			drive: continuation(updatesSrc()), wantEnd: "GOAWAY PROTOCOL_ERROR"},
		// x/net gives SETTINGS that arrive while it writes one ACK between them (no queue), and
		// closes a connection with more than 10000 control frames (PING ACKs) queued; when a
		// flood gets there depends on speeds, so for these the ending is only reported.
		{name: "settings, reading", read: true, paced: true, maxFrames: 2_000_000, maxGrowthMiB: controlBound, drive: settingsFlood},
		{name: "settings, never reading", maxFrames: 2_000_000, maxGrowthMiB: controlBound, drive: settingsFlood},
		{name: "ping, reading", read: true, paced: true, maxFrames: 4_000_000, maxGrowthMiB: controlBound, drive: pingFlood},
		{name: "ping, never reading", maxFrames: 4_000_000, maxGrowthMiB: controlBound, drive: pingFlood},
		// With the client's default window (64 KiB for the connection) next to nothing goes
		// out, so what the backends sent on a stream is what the proxy holds for it: a bound per
		// stream that does not depend on how fast the buffers fill, which 16 streams fill fast
		// even under -race. With a 2 GiB window the proxy may also fill the socket buffers on
		// behalf of any stream, so only the total is bounded.
		{name: "never reading, 16 streams", maxFrames: 1000, maxGrowthMiB: neverReadBound, perStreamMiB: perStreamBound,
			drive: neverRead(false, 16), settle: bigDone},
		{name: "never reading, default window", maxFrames: 1000, maxGrowthMiB: neverReadBound, perStreamMiB: perStreamBound,
			drive: neverRead(false, 0), settle: bigDone},
		{name: "never reading, 2 GiB window", maxFrames: 1000, maxGrowthMiB: neverReadBound, drive: neverRead(true, 0), settle: bigDone},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := startGateway(t, f, fl, "5s", "")
			runFlood(t, p, fl, tc)
		})
	}
}

// runFlood starts the other client and the samplers, runs tc on a new connection, and checks
// and reports what happened.
func runFlood(t *testing.T, p *proc, fl *fleet, tc floodCase) {
	other := gatewayClient(t, p, true)
	for range 20 { // warm: the proxy's pools, TLS sessions and backends' HTTP/2 connections
		if _, code, err := getReply(other, "https://"+gwHost+"/"); err != nil {
			t.Fatalf("before the flood: %d %v", code, err)
		}
	}
	pid := p.cmd.Process.Pid
	before := floodRSSMiB(t, pid)
	gBefore := floodGoroutines(p)

	hits := func() (n int64) {
		for _, b := range fl.backends {
			n += b.hits.Load()
		}
		return n
	}
	hits0 := hits()
	mem := startFloodSampler(p)
	oc := startFloodOther(other)
	fc := dialFlood(t, p, tc.maxFrames, tc.read)
	fc.paced = tc.paced && tc.read
	if tc.drive != nil {
		tc.drive(t, fc)
	}
	fc.flush()
	ended := fc.end()
	load := oc.stop()
	peak, gPeak := mem.stop()
	// Requests of the flood that reached a backend's "/" (a rapid reset's streams).
	floodHits := hits() - hits0 - int64(len(load.lat)+len(load.errs))
	if tc.settle != nil {
		tc.settle(t)
	}

	// The proxy is alive and serves a normal request.
	select {
	case <-p.exited:
		t.Fatalf("fixedgate exited during the flood: %v", p.exitErr)
	default:
	}
	if _, code, err := getReply(other, "https://"+gwHost+"/"); err != nil {
		t.Fatalf("after the flood: %d %v", code, err)
	}
	after := floodRSSMiB(t, pid)
	gAfter := floodGoroutines(p)

	t.Logf("flood: %-30s frames=%d bytes=%s ended=%q rss_mib before=%.0f peak=%.0f after=%.0f growth=%.0f goroutines before=%d peak=%d after=%d backend_requests=%d other: requests=%d errors=%d p50=%s p99=%s max=%s race=%v%s",
		tc.name, fc.frames, floodMiB(fc.cw.n), ended, before, peak, after, peak-before, gBefore, gPeak, gAfter, floodHits,
		len(load.lat), len(load.errs), load.pct(50), load.pct(99), load.pct(100), raceBuild, floodNote(fc.note))

	if len(load.errs) > 0 {
		t.Errorf("%d of %d requests of another client failed during the flood; first: %v", len(load.errs), len(load.lat)+len(load.errs), load.errs[0])
	}
	if len(load.lat) == 0 {
		t.Errorf("the other client completed no request during the flood")
	}
	if bound := floodBound(tc.maxGrowthMiB); peak-before > bound {
		t.Errorf("the proxy's RSS grew by %.0f MiB during the flood (%.0f → %.0f), bound %.0f MiB", peak-before, before, peak, bound)
	}
	if tc.perStreamMiB > 0 && float64(fc.perStream) > tc.perStreamMiB*(1<<20) {
		t.Errorf("a backend sent %.2f MiB on one stream the client never read: the proxy read that far ahead (bound %.0f MiB per stream)",
			float64(fc.perStream)/(1<<20), tc.perStreamMiB)
	}
	if tc.wantEnd != "" && !strings.Contains(ended, tc.wantEnd) {
		t.Errorf("the flooding connection ended %q, want %q", ended, tc.wantEnd)
	}
}

// blockSource makes the fragments of an endless header block: next appends one frame's worth
// to frag; rest is what completes the last representation begun.
type blockSource struct {
	next func(frag []byte) []byte
	rest func() []byte
}

// h2FrameSize is the largest frame the proxy accepts: the protocol's default
// SETTINGS_MAX_FRAME_SIZE (proxy/h2guard.go).
const h2FrameSize = 16 << 10

// floodConn is a raw HTTP/2 connection to the gateway door. Frames go through a buffer that is
// flushed every so often; every flood is bounded by budget frames and by deadline.
type floodConn struct {
	c          *gotls.Conn
	bw         *bufio.Writer
	cw         *floodCounter
	fr         *http2.Framer
	enc        *hpack.Encoder
	hbuf       bytes.Buffer
	budget     int
	frames     int
	deadline   time.Time
	writeErr   error
	maxStreams uint32 // the proxy's SETTINGS_MAX_CONCURRENT_STREAMS
	note       string // what the flood adds to its report
	perStream  int64  // the most a backend sent on one stream of this connection

	reading   bool
	noDrain   bool // end does not read what the proxy queued (an endless download)
	readDone  chan struct{}
	synced    chan struct{} // closed on the ACK of the floodSync PING
	paced     bool          // send paces the flood with PINGs (see pace)
	paceSent  uint32        // the last pace PING sent
	paceAcked atomic.Uint32 // the last pace PING answered
	paceAck   chan struct{} // a pace PING was answered
	watch1    bool          // end waits for, and reports, the answer to stream 1
	answer1   chan struct{} // closed on stream 1's response HEADERS or RST_STREAM
	start     time.Time
	mu        sync.Mutex
	status1   string // the :status of stream 1's response
	goAway    string // "GOAWAY CODE" the proxy sent, if any
	readErr   error  // what ended reading
}

type floodCounter struct {
	w io.Writer
	n int64
}

func (c *floodCounter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// dialFlood connects, sends the preface and an empty SETTINGS, and reads the proxy's SETTINGS.
// With read, a goroutine then reads everything the proxy sends; without, nothing more is read
// until end.
func dialFlood(t *testing.T, p *proc, budget int, read bool) *floodConn {
	t.Helper()
	c, err := gotls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", p.tlsAddr,
		&gotls.Config{ServerName: gwHost, RootCAs: rootsWith(t, p.caFile), NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if c.ConnectionState().NegotiatedProtocol != "h2" {
		t.Fatalf("ALPN: %q, want h2", c.ConnectionState().NegotiatedProtocol)
	}
	fc := &floodConn{c: c, budget: budget, deadline: time.Now().Add(floodFor), reading: read,
		readDone: make(chan struct{}), synced: make(chan struct{}), answer1: make(chan struct{}), start: time.Now(),
		paceAck: make(chan struct{}, 1)}
	fc.cw = &floodCounter{w: c}
	fc.bw = bufio.NewWriterSize(fc.cw, 64<<10)
	fc.fr = http2.NewFramer(fc.bw, c)
	fc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fc.fr.MaxHeaderListSize = 1 << 20
	fc.enc = hpack.NewEncoder(&fc.hbuf)
	// A write blocked on a proxy that stopped reading ends shortly after the flood's time.
	c.SetWriteDeadline(fc.deadline.Add(5 * time.Second))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(fc.bw, http2.ClientPreface)
	fc.fr.WriteSettings()
	if err := fc.bw.Flush(); err != nil {
		t.Fatal(err)
	}
	f, err := fc.fr.ReadFrame()
	if err != nil {
		t.Fatalf("the proxy's SETTINGS: %v", err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok || sf.IsAck() {
		t.Fatalf("first frame from the proxy: %v, want its SETTINGS", f)
	}
	fc.maxStreams = 250 // x/net's default, if unsaid
	if v, ok := sf.Value(http2.SettingMaxConcurrentStreams); ok {
		fc.maxStreams = v
	}
	c.SetReadDeadline(time.Time{})
	if read {
		// A client that reads also acknowledges; x/net does not insist (it never times out an
		// unacknowledged SETTINGS), so the never-reading floods do not.
		fc.fr.WriteSettingsAck()
		go fc.readLoop()
	}
	return fc
}

// more reports whether the flood may send another frame.
func (fc *floodConn) more() bool {
	return fc.writeErr == nil && fc.frames < fc.budget && time.Now().Before(fc.deadline)
}

// send writes one frame (through the buffer, flushed every 64 KiB) and reports whether the
// flood may go on.
func (fc *floodConn) send(write func() error) bool {
	if fc.writeErr != nil {
		return false
	}
	if err := write(); err != nil {
		fc.writeErr = err
		return false
	}
	fc.frames++
	if fc.paced && fc.frames%floodPace == 0 {
		fc.pace()
	}
	return fc.writeErr == nil
}

// floodPace is how many frames a paced flood sends between PINGs; it lets two such batches be
// unanswered at most.
const floodPace = 4096

// pace sends a PING numbered by the batch, and waits (within the flood's time) until the
// proxy has answered the one before: the proxy always has a batch to work on, and the flood
// keeps no more than two in the socket buffers, so that the proxy has taken in the whole
// flood soon after floodFor, under -race too.
func (fc *floodConn) pace() {
	fc.paceSent++
	data := [8]byte{'p', 'a', 'c', 'e', byte(fc.paceSent >> 24), byte(fc.paceSent >> 16), byte(fc.paceSent >> 8), byte(fc.paceSent)}
	if err := fc.fr.WritePing(false, data); err != nil {
		fc.writeErr = err
		return
	}
	fc.frames++
	if fc.flush() != nil {
		return
	}
	timeUp := time.NewTimer(time.Until(fc.deadline))
	defer timeUp.Stop()
	for fc.paceAcked.Load() < fc.paceSent-1 {
		select {
		case <-fc.paceAck:
		case <-fc.readDone:
			return
		case <-timeUp.C:
			return // more reports the flood over
		}
	}
}

func (fc *floodConn) flush() error {
	if fc.writeErr == nil {
		fc.writeErr = fc.bw.Flush()
	}
	return fc.writeErr
}

func (fc *floodConn) readLoop() {
	defer close(fc.readDone)
	for {
		f, err := fc.fr.ReadFrame()
		if err != nil {
			fc.mu.Lock()
			fc.readErr = err
			fc.mu.Unlock()
			return
		}
		if pf, ok := f.(*http2.PingFrame); ok && pf.IsAck() {
			switch {
			case pf.Data == floodSync:
				close(fc.synced)
			case string(pf.Data[:4]) == "pace":
				d := pf.Data
				fc.paceAcked.Store(uint32(d[4])<<24 | uint32(d[5])<<16 | uint32(d[6])<<8 | uint32(d[7]))
				select {
				case fc.paceAck <- struct{}{}:
				default:
				}
			}
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if f.StreamID == 1 && fc.status1 == "" {
				fc.mu.Lock()
				fc.status1 = "status " + f.PseudoValue("status")
				fc.mu.Unlock()
				close(fc.answer1)
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == 1 && fc.status1 == "" {
				fc.mu.Lock()
				fc.status1 = "RST_STREAM " + f.ErrCode.String()
				fc.mu.Unlock()
				close(fc.answer1)
			}
		case *http2.GoAwayFrame:
			fc.mu.Lock()
			fc.goAway = fmt.Sprintf("GOAWAY %s (last stream %d, %s after the flood began)", f.ErrCode, f.LastStreamID, time.Since(fc.start).Round(time.Millisecond))
			if d := f.DebugData(); len(d) > 0 {
				fc.goAway += fmt.Sprintf(" %q", d)
			}
			fc.mu.Unlock()
		}
	}
}

// floodSync is the payload of the PING that ends a flood: its ACK shows the proxy has
// processed every frame before it.
var floodSync = [8]byte{'f', 'l', 'o', 'o', 'd', 'e', 'n', 'd'}

// end finds out how the connection ended, and closes it. A connection the proxy still takes
// frames on gets a PING, and the proxy's ACK (it answers in order, after everything the flood
// sent) shows it came through the flood with the connection up: "open at the end". Otherwise
// the reader runs until the proxy's close: "GOAWAY CODE" if it sent one, then "closed by the
// proxy" or "reset by the proxy", and how the flood's last write failed.
func (fc *floodConn) end() string {
	if fc.noDrain { // an endless download: nothing to learn from reading it
		fc.c.Close()
		return "open at the end, closed by the client"
	}
	if !fc.reading {
		go fc.readLoop()
	}
	// Bounds waiting for a proxy that neither answers nor closes (then the test reports it);
	// a proxy still working through the flood takes the PING once it has caught up.
	fc.c.SetDeadline(time.Now().Add(60 * time.Second))
	t0 := time.Now()
	synced := false
	if fc.send(func() error { return fc.fr.WritePing(false, floodSync) }) && fc.flush() == nil {
		select {
		case <-fc.synced:
			synced = true
		case <-fc.readDone:
		}
		if synced && fc.watch1 {
			select {
			case <-fc.answer1:
			case <-fc.readDone:
			}
		}
	} else {
		<-fc.readDone
	}
	syncTook := time.Since(t0)
	fc.c.Close()
	<-fc.readDone
	fc.mu.Lock()
	defer fc.mu.Unlock()
	var parts []string
	if fc.goAway != "" {
		parts = append(parts, fc.goAway)
	}
	var ne net.Error
	switch err := fc.readErr; {
	case synced:
		parts = append(parts, fmt.Sprintf("open at the end (PING answered %s after the flood), closed by the client", syncTook.Round(time.Millisecond)))
	case errors.As(err, &ne) && ne.Timeout():
		parts = append(parts, "neither answered nor closed in 60s")
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		parts = append(parts, "closed by the proxy")
	case errors.Is(err, syscall.ECONNRESET):
		parts = append(parts, "reset by the proxy")
	default:
		parts = append(parts, "read: "+err.Error())
	}
	if fc.writeErr != nil {
		parts = append(parts, "write: "+floodErr(fc.writeErr))
	}
	if fc.watch1 {
		parts = append(parts, "stream 1: "+fc.status1)
	}
	return strings.Join(parts, ", ")
}

func floodErr(err error) string {
	switch {
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout (the proxy stopped reading)"
	}
	return err.Error()
}

// floodBig is the fleet's large-download handler: it counts what it sent, the most it sent
// on one request, and its requests in flight.
type floodBig struct {
	sent      atomic.Int64
	maxStream atomic.Int64
	active    atomic.Int64
}

// addFloodBig serves floodBigPath on every backend of fl.
func addFloodBig(fl *fleet) *floodBig {
	b := &floodBig{}
	chunk := make([]byte, 32<<10)
	fl.handler.(*http.ServeMux).HandleFunc(floodBigPath, func(w http.ResponseWriter, r *http.Request) {
		b.active.Add(1)
		defer b.active.Add(-1)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(floodBigSize))
		for sent := int64(0); sent < floodBigSize; {
			n, err := w.Write(chunk)
			b.sent.Add(int64(n))
			sent += int64(n)
			floodStoreMax(&b.maxStream, sent)
			if err != nil {
				return // the proxy reset the stream
			}
		}
	})
	return b
}

// floodStoreMax raises a to v if v is larger.
func floodStoreMax(a *atomic.Int64, v int64) {
	for m := a.Load(); v > m; m = a.Load() {
		if a.CompareAndSwap(m, v) {
			return
		}
	}
}

// floodOther is the well-behaved client: requests one after another until stopped.
type floodOther struct {
	done chan struct{}
	quit chan struct{}
	lat  []time.Duration
	errs []error
}

func startFloodOther(c *http.Client) *floodOther {
	oc := &floodOther{done: make(chan struct{}), quit: make(chan struct{})}
	go func() {
		defer close(oc.done)
		for {
			select {
			case <-oc.quit:
				return
			default:
			}
			t0 := time.Now()
			_, code, err := getReply(c, "https://"+gwHost+"/")
			if err != nil {
				oc.errs = append(oc.errs, fmt.Errorf("status %d: %w", code, err))
				continue
			}
			oc.lat = append(oc.lat, time.Since(t0))
		}
	}()
	return oc
}

func (oc *floodOther) stop() *floodOther {
	close(oc.quit)
	<-oc.done
	slices.Sort(oc.lat)
	return oc
}

// pct is the p-th percentile of the successful requests' latency (100: the maximum).
func (oc *floodOther) pct(p int) time.Duration {
	if len(oc.lat) == 0 {
		return 0
	}
	i := min(len(oc.lat)-1, len(oc.lat)*p/100)
	return oc.lat[i].Round(100 * time.Microsecond)
}

// floodSampler polls the proxy's RSS (every 10 ms) and goroutines (every 250 ms) for their peaks:
// an outside process offers no signal to wait on.
type floodSampler struct {
	quit, done chan struct{}
	peak       float64
	gPeak      int
}

func startFloodSampler(p *proc) *floodSampler {
	s := &floodSampler{quit: make(chan struct{}), done: make(chan struct{})}
	pid := p.cmd.Process.Pid
	go func() {
		defer close(s.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			if v, err := floodRSS(pid); err == nil {
				s.peak = max(s.peak, v)
			}
			if i%25 == 0 {
				s.gPeak = max(s.gPeak, floodGoroutines(p))
			}
			select {
			case <-s.quit:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *floodSampler) stop() (float64, int) {
	close(s.quit)
	<-s.done
	return s.peak, s.gPeak
}

var floodVmRSSRe = regexp.MustCompile(`(?m)^VmRSS:\s+(\d+) kB$`)

// floodRSS is VmRSS of process pid, in MiB.
func floodRSS(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	m := floodVmRSSRe.FindSubmatch(b)
	if m == nil {
		return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	kb, err := strconv.ParseInt(string(m[1]), 10, 64)
	return float64(kb) / 1024, err
}

func floodRSSMiB(t *testing.T, pid int) float64 {
	t.Helper()
	v, err := floodRSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var floodGoroutinesRe = regexp.MustCompile(`(?m)^go_goroutines (\S+)$`)

// floodGoroutines is go_goroutines from the admin /metrics, or -1.
func floodGoroutines(p *proc) int {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := c.Get("http://" + p.admin + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := floodGoroutinesRe.FindSubmatch(b)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		return -1
	}
	return int(v)
}

// floodBound scales a bound on RSS growth for this build: a -race binary's shadow memory and
// bookkeeping make the same work cost 3-8 times the memory (measured here), and the Go
// runtime returns freed memory lazily, so growth is measured at the peak, over the level just
// before the flood.
func floodBound(mib float64) float64 {
	if raceBuild {
		return 3 * mib
	}
	return mib
}

func floodMiB(n int64) string { return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20)) }

func floodNote(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}
