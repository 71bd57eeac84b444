package proxy

import (
	"net/netip"
	"sync"
	"time"
	"unsafe"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// record is what one request or tunnel did; it becomes one summary log line and metrics when it
// ends. Field names in the log are stable: dashboards and alerts parse them.
type record struct {
	start     time.Time
	listener  string
	client    string
	user      string
	door      string
	target    string
	resolved  netip.Addr
	egress    netip.Addr
	status    int
	bytesUp   int64
	bytesDown int64
	reason    string
	err       error
	users     *userSeries                                                    // the forward.users name's series; nil: "-"
	addrBuf   [2 * len("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255")]byte // resolved and egress IPs, as text
}

func (r *record) elapsed() time.Duration { return time.Since(r.start) }

// fieldBufs recycle the summary line's fields: zap encodes them before Write returns.
var fieldBufs = sync.Pool{New: func() any { b := make([]zap.Field, 0, 16); return &b }}

// log writes the summary line.
func (r *record) log(ce *zapcore.CheckedEntry) {
	bp := fieldBufs.Get().(*[]zap.Field)
	f := r.appendFields((*bp)[:0])
	ce.Write(f...)
	clear(f)
	*bp = f[:0]
	fieldBufs.Put(bp)
}

func (r *record) appendFields(f []zap.Field) []zap.Field {
	f = append(f,
		zap.String("listener", r.listener),
		zap.String("client", r.client),
		zap.String("user", r.user),
		zap.String("door", r.door),
		zap.String("target", r.target),
		zap.Int("status", r.status),
		zap.Int64("bytes_up", r.bytesUp),
		zap.Int64("bytes_down", r.bytesDown),
		zap.Float64("duration_s", r.elapsed().Seconds()),
	)
	// The addresses are formatted into the record itself: zap encodes the line before log
	// returns, so the strings need not outlive the record, and a request costs no allocation
	// for them.
	b := r.addrBuf[:0]
	if r.resolved.IsValid() {
		b = r.resolved.AppendTo(b)
		f = append(f, zap.String("resolved_ip", unsafe.String(&b[0], len(b))))
	}
	if r.egress.IsValid() {
		start := len(b)
		b = r.egress.AppendTo(b)
		f = append(f, zap.String("egress_ip", unsafe.String(&b[start], len(b)-start)))
	}
	if r.reason != "" {
		f = append(f, zap.String("reason", r.reason))
	}
	if r.err != nil {
		f = append(f, zap.String("error", r.err.Error()))
	}
	return f
}
