package proxy

import (
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func jsonLogger(w io.Writer) *zap.Logger {
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey = "ts"
	ec.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	return zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(ec), zapcore.AddSync(w), zapcore.InfoLevel))
}

func sampleRecord() *record {
	return &record{
		start: time.Now(), listener: "tls:127.0.0.10:8443", client: "127.0.0.1:50312", door: "gateway",
		target: "gw.bench.test", status: 200, bytesDown: 212,
		resolved: netip.MustParseAddr("127.0.1.7"), egress: netip.MustParseAddr("127.0.0.20"),
	}
}

// The summary line keeps its stable field names, and a hostile value stays inside its string.
func TestRecordLogFields(t *testing.T) {
	var out strings.Builder
	r := sampleRecord()
	r.user, r.reason, r.err = "alice\"\n", "no route", errors.New("boom")
	r.log(jsonLogger(&out).Check(zapInfo, "request"))
	line := out.String()
	for _, want := range []string{`"listener":"tls:127.0.0.10:8443"`, `"client":"127.0.0.1:50312"`, `"user":"alice\"\n"`,
		`"door":"gateway"`, `"target":"gw.bench.test"`, `"status":200`, `"bytes_up":0`, `"bytes_down":212`, `"duration_s":`,
		`"resolved_ip":"127.0.1.7"`, `"egress_ip":"127.0.0.20"`, `"reason":"no route"`, `"error":"boom"`} {
		if !strings.Contains(line, want) {
			t.Errorf("summary line lacks %s: %s", want, line)
		}
	}
	if strings.Count(line, "\n") != 1 {
		t.Errorf("summary line is not one line: %q", line)
	}
}

// BenchmarkRecordLog is the cost of one request's summary line, encoded as JSON.
func BenchmarkRecordLog(b *testing.B) {
	log := jsonLogger(io.Discard)
	r := sampleRecord()
	b.ReportAllocs()
	for b.Loop() {
		if ce := log.Check(zapInfo, "request"); ce != nil {
			r.log(ce)
		}
	}
}
