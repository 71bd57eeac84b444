package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2MaxFrameSize is the SETTINGS_MAX_FRAME_SIZE the HTTP/2 server advertises: the protocol's
// default. A larger frame from the client is a FRAME_SIZE_ERROR (RFC 9113 section 4.2), and it
// bounds what h2Guard buffers.
const h2MaxFrameSize = 16 << 10

// h2Guard reads the client's side of an HTTP/2 connection one frame ahead of x/net's server,
// for three rules that server does not keep:
//
//   - A request with a connection-specific field (connection, keep-alive, proxy-connection,
//     transfer-encoding, upgrade) or a te other than "trailers" is malformed (RFC 9113 section
//     8.2.2), a PROTOCOL_ERROR; x/net answers it with a 400 instead, and such fields are exactly
//     what a proxy that downgrades to HTTP/1.1 must never be talked into sending on. The guard
//     decodes every header block with an HPACK decoder of its own (it sees the same blocks as
//     the server's, so their dynamic tables stay equal) and, on such a field, hands the server a
//     DATA frame on stream 0 in place of the frame: a connection error of type PROTOCOL_ERROR,
//     so the server sends GOAWAY and closes. RFC 9113 section 5.4 lets an endpoint treat a
//     stream error as a connection error; a client that sends these is broken or hostile.
//   - A SETTINGS frame may repeat a parameter; its values apply in order (section 6.5.3). x/net
//     hangs up on repeats instead, so the guard keeps each parameter's last value, which has the
//     same effect, unless a dropped value is itself invalid (then the frame goes on unchanged
//     and the server refuses it).
//   - A header block (HEADERS and its CONTINUATION frames) may not grow past twice the header
//     list limit: x/net bounds the fields a block decodes to, not the block, so CONTINUATION
//     frames that decode to nothing could go on without end. Such a block is refused as above.
//
// Anything the guard cannot follow (a header block its decoder refuses, an oversized frame) is
// passed on unchanged and followed by the end of the stream, so the server's own error decides
// and nothing after it is read unchecked.
type h2Guard struct {
	r        io.Reader
	dec      *hpack.Decoder
	onReject func(reason string) // a request refused by the guard, for the log

	out    []byte // bytes for the server; out[off:] are left
	off    int
	pass   int // bytes of the current frame's payload that go to the server unread
	hdr    [9]byte
	buf    []byte // the payload being inspected
	end    error  // returned once out is drained: the guard stops here
	reason string // set by the decoder's emit function when a field is refused

	block    int // bytes of the header block being received (HEADERS and its CONTINUATIONs)
	maxBlock int
}

func newH2Guard(r io.Reader, maxHeaderBytes int, onReject func(string)) *h2Guard {
	g := &h2Guard{r: r, pass: len(http2.ClientPreface), onReject: onReject}
	// As x/net's server: a 4096-byte dynamic table, and strings up to its header list size.
	g.dec = hpack.NewDecoder(4096, g.check)
	if maxHeaderBytes <= 0 {
		maxHeaderBytes = 1 << 20
	}
	g.dec.SetMaxStringLength(maxHeaderBytes + 10*32)
	g.maxBlock = 2*maxHeaderBytes + h2MaxFrameSize
	return g
}

// errGuardStopped ends the stream after a frame the guard refused or could not follow.
var errGuardStopped = errors.New("http2: connection ended after a malformed frame")

func (g *h2Guard) Read(p []byte) (int, error) {
	for {
		if g.off < len(g.out) {
			n := copy(p, g.out[g.off:])
			g.off += n
			return n, nil
		}
		if g.end != nil {
			return 0, g.end
		}
		if g.pass > 0 {
			if len(p) > g.pass {
				p = p[:g.pass]
			}
			n, err := g.r.Read(p)
			g.pass -= n
			return n, err
		}
		g.next()
	}
}

// next reads the next frame's header, and its payload when the frame is inspected, and queues
// what the server gets of it in out (and pass, and end).
func (g *h2Guard) next() {
	g.out, g.off, g.buf = g.out[:0], 0, g.buf[:0]
	n, err := io.ReadFull(g.r, g.hdr[:])
	if err != nil {
		g.out = append(g.out, g.hdr[:n]...)
		g.end = err
		return
	}
	length := int(g.hdr[0])<<16 | int(g.hdr[1])<<8 | int(g.hdr[2])
	typ, flags := http2.FrameType(g.hdr[3]), http2.Flags(g.hdr[4])
	inspect := length <= h2MaxFrameSize && (typ == http2.FrameHeaders || typ == http2.FrameContinuation ||
		typ == http2.FrameSettings && flags&http2.FlagSettingsAck == 0 && length%6 == 0)
	if !inspect {
		// Oversized header blocks are the server's FRAME_SIZE_ERROR; the decoder would lose step.
		if length > h2MaxFrameSize && (typ == http2.FrameHeaders || typ == http2.FrameContinuation) {
			g.end = errGuardStopped
		}
		g.out = append(g.out, g.hdr[:]...)
		g.pass = length
		return
	}
	if cap(g.buf) < length {
		g.buf = make([]byte, length)
	}
	g.buf = g.buf[:length]
	n, err = io.ReadFull(g.r, g.buf)
	if err != nil {
		g.out = append(append(g.out, g.hdr[:]...), g.buf[:n]...)
		g.end = err
		return
	}
	if typ == http2.FrameSettings {
		g.buf = dedupSettings(g.buf)
		g.hdr[0], g.hdr[1], g.hdr[2] = byte(len(g.buf)>>16), byte(len(g.buf)>>8), byte(len(g.buf))
	} else if !g.headerBlock(typ, flags) {
		// A zero-length DATA frame on stream 0: the server's connection error PROTOCOL_ERROR.
		g.out = append(g.out, 0, 0, 0, byte(http2.FrameData), 0, 0, 0, 0, 0)
		g.end = errGuardStopped
		return
	}
	g.out = append(append(g.out, g.hdr[:]...), g.buf...)
}

// headerBlock decodes the fragment of a HEADERS or CONTINUATION frame in g.buf; it reports
// false when the block carries a field that makes the request malformed. A fragment it cannot
// follow goes on unchanged as the last frame (g.end), for the server to refuse.
func (g *h2Guard) headerBlock(typ http2.FrameType, flags http2.Flags) bool {
	frag := g.buf
	if typ == http2.FrameHeaders {
		if flags&http2.FlagHeadersPadded != 0 {
			if len(frag) < 1 || int(frag[0]) > len(frag)-1 {
				g.end = errGuardStopped // the server answers PROTOCOL_ERROR
				return true
			}
			frag = frag[1 : len(frag)-int(frag[0])]
		}
		if flags&http2.FlagHeadersPriority != 0 {
			if len(frag) < 5 {
				g.end = errGuardStopped
				return true
			}
			frag = frag[5:]
		}
	}
	// A header block is never larger than the header list it decodes to (every
	// representation takes fewer bytes than the 32 per field the list size counts), except
	// through dynamic table size updates, which a valid block has at most two of. x/net ends a
	// block whose fields go over the limit, but not one that sends no fields: CONTINUATION
	// frames of table size updates, without end, which cost a decoder pass per byte and hold
	// the stream open. Past twice the limit, the block is refused.
	if typ == http2.FrameHeaders {
		g.block = 0
	}
	if g.block += len(frag); g.block > g.maxBlock {
		g.reason = fmt.Sprintf("header block over %d bytes without its end (a CONTINUATION flood)", g.maxBlock)
		if g.onReject != nil {
			g.onReject(g.reason)
		}
		return false
	}
	if _, err := g.dec.Write(frag); err != nil {
		g.end = errGuardStopped // the server's decoder refuses it too: COMPRESSION_ERROR
		return true
	}
	if flags&http2.FlagHeadersEndHeaders != 0 {
		if err := g.dec.Close(); err != nil {
			g.end = errGuardStopped
			return true
		}
	}
	if g.reason == "" {
		return true
	}
	if g.onReject != nil {
		g.onReject(g.reason)
	}
	return false
}

// check is the HPACK decoder's emit function: it notes the first field that makes a request
// malformed in HTTP/2. Upper-case names are refused by the server itself.
func (g *h2Guard) check(f hpack.HeaderField) {
	if g.reason != "" {
		return
	}
	switch f.Name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		g.reason = "connection-specific header field " + f.Name + " in an HTTP/2 request (RFC 9113 section 8.2.2)"
	case "te":
		if f.Value != "trailers" {
			g.reason = `te other than "trailers" in an HTTP/2 request (RFC 9113 section 8.2.2)`
		}
	}
}

// dedupSettings keeps the last value of each parameter of a SETTINGS payload, in the order of
// those last occurrences, when every value it drops is valid; otherwise it returns p as it is.
func dedupSettings(p []byte) []byte {
	n := len(p) / 6
	if n < 2 {
		return p
	}
	last := make(map[uint16]int, n)
	for i := range n {
		last[binary.BigEndian.Uint16(p[6*i:])] = i
	}
	if len(last) == n {
		return p
	}
	out := make([]byte, 0, 6*len(last))
	for i := range n {
		e := p[6*i : 6*i+6]
		if last[binary.BigEndian.Uint16(e)] == i {
			out = append(out, e...)
			continue
		}
		s := http2.Setting{ID: http2.SettingID(binary.BigEndian.Uint16(e)), Val: binary.BigEndian.Uint32(e[2:])}
		if s.Valid() != nil {
			return p
		}
	}
	return out
}
