//go:build pprof

package main

// Built with -tags pprof (profiling runs only, never a release), fixedgate serves
// net/http/pprof on FIXEDGATE_PPROF (default 127.0.0.1:6060).

import (
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	addr := os.Getenv("FIXEDGATE_PPROF")
	if addr == "" {
		addr = "127.0.0.1:6060"
	}
	go http.ListenAndServe(addr, nil)
}
