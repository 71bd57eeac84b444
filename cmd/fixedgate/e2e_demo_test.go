package main

import (
	"regexp"
	"testing"
	"time"
)

// The README's first command, `fixedgate demo`, runs the whole product on loopback (DNS, a
// 40-backend fleet, both doors, the contract) and checks itself; it must pass on a fresh
// machine, so CI runs it as a user would.
func TestDemoPasses(t *testing.T) {
	p := startBinaryArgs(t, "demo")
	if err := p.wait(2 * time.Minute); err != nil {
		t.Fatalf("fixedgate demo exited with %v\n%s", err, p.out())
	}
	out := p.out()
	m := regexp.MustCompile(`PASS: all (\d+) checks passed`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("fixedgate demo did not report its checks passing:\n%s", out)
	}
	if m[1] == "0" {
		t.Fatalf("fixedgate demo ran no checks:\n%s", out)
	}
}
