package main

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is an io.Writer that tests can read while the logger's flusher writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestLoggerFlushInterval(t *testing.T) {
	t.Run("unbuffered writes every line at once", func(t *testing.T) {
		var out lockedBuffer
		log := newLogger(LogConfig{Level: "info", Format: "json"}, &out)
		log.Info("request")
		if !strings.Contains(out.String(), `"msg":"request"`) {
			t.Fatalf("line not written: %q", out.String())
		}
	})
	t.Run("buffered holds info lines until Sync, writes warnings at once", func(t *testing.T) {
		var out lockedBuffer
		// An hour: the flusher never runs during the test, so what is written came from Sync.
		log := newLogger(LogConfig{Level: "info", Format: "json", FlushInterval: time.Hour}, &out)
		log.Info("request one")
		if got := out.String(); got != "" {
			t.Fatalf("info line written before a flush: %q", got)
		}
		log.Named("child").Warn("backend ejected")
		got := out.String()
		if !strings.Contains(got, "request one") || !strings.Contains(got, "backend ejected") {
			t.Fatalf("a warning must flush itself and what was buffered before it, got %q", got)
		}
		log.Info("request two")
		if strings.Contains(out.String(), "request two") {
			t.Fatal("info line written before a flush")
		}
		if err := log.Sync(); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "request two") {
			t.Fatal("Sync did not flush the buffer")
		}
	})
}
