package main

import (
	"io"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// logBufferSize is the batch a buffered log (log.flush_interval) writes at most at once.
const logBufferSize = 64 << 10

// newLogger builds the process logger: JSON lines with stable field names (ts, level, msg, …)
// for log pipelines, or a console format for people at a terminal. Its Sync flushes a
// buffered log.
func newLogger(cfg LogConfig, w io.Writer) *zap.Logger {
	log, _ := newLeveledLogger(cfg, w)
	return log
}

// newLeveledLogger is newLogger with the level it logs at, which a reload changes (log.level).
func newLeveledLogger(cfg LogConfig, w io.Writer) (*zap.Logger, zap.AtomicLevel) {
	level := zap.NewAtomicLevelAt(zapcore.InfoLevel)
	if l, err := zapcore.ParseLevel(cfg.Level); err == nil {
		level.SetLevel(l)
	}
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey = "ts"
	ec.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	ec.EncodeDuration = zapcore.SecondsDurationEncoder
	var enc zapcore.Encoder
	if cfg.Format == "console" {
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		enc = zapcore.NewJSONEncoder(ec)
	}
	out := zapcore.Lock(zapcore.AddSync(w))
	var core zapcore.Core
	if cfg.FlushInterval > 0 {
		bws := &zapcore.BufferedWriteSyncer{WS: out, Size: logBufferSize, FlushInterval: cfg.FlushInterval}
		core = &syncAtWarn{zapcore.NewCore(enc, bws, level), bws}
	} else {
		core = zapcore.NewCore(enc, out, level)
	}
	return zap.New(core, zap.ErrorOutput(out)), level
}

// syncAtWarn writes warnings and errors through a buffered log at once: they are what an
// operator looks for right after something went wrong.
type syncAtWarn struct {
	zapcore.Core
	ws zapcore.WriteSyncer
}

func (c *syncAtWarn) With(f []zapcore.Field) zapcore.Core { return &syncAtWarn{c.Core.With(f), c.ws} }

func (c *syncAtWarn) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *syncAtWarn) Write(e zapcore.Entry, f []zapcore.Field) error {
	err := c.Core.Write(e, f)
	if e.Level >= zapcore.WarnLevel {
		if serr := c.ws.Sync(); err == nil {
			err = serr
		}
	}
	return err
}
