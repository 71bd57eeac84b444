package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fixedgate/fixedgate/ipranges"
)

// ipsClock sets the state commands' clock for the test.
func ipsClock(t *testing.T, now time.Time) {
	t.Helper()
	orig := nowFunc
	nowFunc = func() time.Time { return now }
	t.Cleanup(func() { nowFunc = orig })
}

// ipsRun runs `fixedgate ipranges args…` in-process.
func ipsRun(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(append([]string{"ipranges"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// ipsStatuses runs show and returns the status of each CIDR (direction/cidr → status).
func ipsStatuses(t *testing.T, state string, extra ...string) map[string]string {
	t.Helper()
	code, out, errs := ipsRun(append([]string{"show", "--state", state}, extra...)...)
	if code != 0 {
		t.Fatalf("show: exit %d: %s", code, errs)
	}
	var doc struct {
		Prefixes []struct{ CIDR, Direction, Status, Facility string }
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("show output: %v\n%s", err, out)
	}
	m := map[string]string{}
	for _, p := range doc.Prefixes {
		m[p.Direction+" "+p.CIDR] = p.Status
	}
	return m
}

func ipsWant(t *testing.T, got map[string]string, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s: status %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("statuses %v, want %v", got, want)
	}
}

func TestIPRangesStateLifecycle(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 11, 0, 0, 0, time.UTC)
	ipsClock(t, t0)
	state := filepath.Join(t.TempDir(), "ip-ranges.json")

	code, out, errs := ipsRun("init", "--state", state, "--ingress", "203.0.113.10", "--ingress", "2001:db8::10",
		"--egress", "198.51.100.20/32", "--facility", "us-east-1")
	if code != 0 || out != "created "+state+": 2 ingress and 1 egress prefixes, active from 2026-11-25T11:00:00Z (the initial set owes no notice); later additions need 14 days' notice\n" {
		t.Fatalf("init: exit %d\n%s%s", code, out, errs)
	}
	ipsWant(t, ipsStatuses(t, state), map[string]string{
		"ingress 203.0.113.10/32": "active", "ingress 2001:db8::10/128": "active", "egress 198.51.100.20/32": "active"})

	// show prints exactly what is served.
	_, shown, _ := ipsRun("show", "--state", state)
	doc, err := ipranges.Load(state, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := ipranges.Render(doc, t0, ipranges.Filter{}); shown != string(want) {
		t.Fatalf("show differs from Render:\n%s\n%s", shown, want)
	}

	// A second init is refused and changes nothing.
	before, _ := os.ReadFile(state)
	code, _, errs = ipsRun("init", "--state", state, "--ingress", "203.0.113.99")
	if code != 1 || !strings.Contains(errs, "already exists") || !strings.Contains(errs, "ipranges announce") {
		t.Fatalf("second init: exit %d: %s", code, errs)
	}

	// 72h of notice is refused with the minimum named; the file is untouched.
	code, _, errs = ipsRun("announce", "--state", state, "--egress", "198.51.100.22", "--notice", "72h")
	if code != 1 || !strings.Contains(errs, "--notice 72h is below the 336h (14 days) minimum the contract promises") {
		t.Fatalf("announce 72h: exit %d: %s", code, errs)
	}
	if after, _ := os.ReadFile(state); !bytes.Equal(after, before) {
		t.Fatal("a refused command changed the file")
	}

	code, out, errs = ipsRun("announce", "--state", state, "--egress", "198.51.100.22", "--notice", "336h")
	if code != 0 || out != "announced egress 198.51.100.22/32: published 2026-11-25T11:00:00Z, usable from 2026-12-09T11:00:00Z (14 days)\n" {
		t.Fatalf("announce: exit %d\n%s%s", code, out, errs)
	}
	ipsWant(t, ipsStatuses(t, state), map[string]string{
		"ingress 203.0.113.10/32": "active", "ingress 2001:db8::10/128": "active", "egress 198.51.100.20/32": "active",
		"egress 198.51.100.22/32": "announced"})
	if got := ipsStatuses(t, state, "--at", "2026-12-09T10:59:59Z")["egress 198.51.100.22/32"]; got != "announced" {
		t.Fatalf("a second before enabled: %s", got)
	}
	if got := ipsStatuses(t, state, "--at", "2026-12-09T11:00:00Z")["egress 198.51.100.22/32"]; got != "active" {
		t.Fatalf("at enabled: %s", got)
	}
	if !strings.Contains(shownNow(t, state), `"facility": "us-east-1"`) {
		t.Fatal("the facility was not taken over from the listed egress prefixes")
	}
	// The same address again is refused.
	if code, _, errs = ipsRun("announce", "--state", state, "--egress", "198.51.100.22"); code != 1 || !strings.Contains(errs, "already listed as egress (announced") {
		t.Fatalf("announce twice: exit %d: %s", code, errs)
	}

	// A day later: retire an ingress address; it drains for the notice, then retires.
	ipsClock(t, t0.Add(24*time.Hour))
	code, out, errs = ipsRun("retire", "--state", state, "--cidr", "203.0.113.10")
	if code != 0 || out != "retiring ingress 203.0.113.10/32: draining (still used) until 2026-12-10T11:00:00Z (14 days), then retired; listed until 2027-01-09T11:00:00Z\n" {
		t.Fatalf("retire: exit %d\n%s%s", code, out, errs)
	}
	ipsWant(t, ipsStatuses(t, state), map[string]string{
		"ingress 203.0.113.10/32": "draining", "ingress 2001:db8::10/128": "active", "egress 198.51.100.20/32": "active",
		"egress 198.51.100.22/32": "announced"})
	if got := ipsStatuses(t, state, "--at", "2026-12-10T11:00:00Z")["ingress 203.0.113.10/32"]; got != "retired" {
		t.Fatalf("after the retirement date: %s", got)
	}

	// The last ingress address in service needs --force.
	code, _, errs = ipsRun("retire", "--state", state, "--cidr", "2001:db8::10/128")
	if code != 1 || !strings.Contains(errs, "it is the last ingress address in service") || !strings.Contains(errs, "unreachable") {
		t.Fatalf("retire the last ingress: exit %d: %s", code, errs)
	}

	// Withdrawing an announcement: retired at once, never used.
	code, out, errs = ipsRun("announce", "--state", state, "--ingress", "203.0.113.12")
	if code != 0 {
		t.Fatalf("announce: %s", errs)
	}
	code, out, errs = ipsRun("retire", "--state", state, "--cidr", "203.0.113.12/32")
	if code != 0 || !strings.HasPrefix(out, "withdrew the announcement of ingress 203.0.113.12/32: retired 2026-11-26T11:00:00Z, never enabled") {
		t.Fatalf("withdraw: exit %d\n%s%s", code, out, errs)
	}
	if got := ipsStatuses(t, state, "--at", "2026-12-31T00:00:00Z")["ingress 203.0.113.12/32"]; got != "retired" {
		t.Fatalf("withdrawn: %s", got)
	}

	// 44 days on, the next change drops the entries retired at least 30 days ago (the withdrawn
	// one), and keeps 203.0.113.10 (retired 2026-12-10, dropped from 2027-01-09 on).
	ipsClock(t, t0.Add(44*24*time.Hour))
	code, out, errs = ipsRun("announce", "--state", state, "--ingress", "203.0.113.13", "--notice", "720h", "--facility", "eu")
	if code != 0 || !strings.Contains(out, "usable from 2027-02-07T11:00:00Z (30 days)") ||
		!strings.Contains(out, "also dropped 203.0.113.12/32 (retired more than 30 days ago)") {
		t.Fatalf("announce with prune: exit %d\n%s%s", code, out, errs)
	}
	st := ipsStatuses(t, state)
	if _, ok := st["ingress 203.0.113.12/32"]; ok {
		t.Fatalf("not pruned: %v", st)
	}
	if st["ingress 203.0.113.10/32"] != "retired" {
		t.Fatalf("pruned too early: %v", st)
	}
	if _, err := ipranges.Load(state, ipranges.MinNotice); err != nil {
		t.Fatal(err)
	}
}

func shownNow(t *testing.T, state string) string {
	t.Helper()
	_, out, _ := ipsRun("show", "--state", state)
	return out
}

// A corrupt or hand-edited state file is refused by every command, with a message naming the
// file and the entry, and is left byte-for-byte as it was.
func TestIPRangesStateCorruptRefused(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 11, 0, 0, 0, time.UTC)
	ipsClock(t, t0)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	if code, _, errs := ipsRun("init", "--state", good, "--ingress", "203.0.113.10", "--egress", "198.51.100.20"); code != 0 {
		t.Fatal(errs)
	}
	if code, _, errs := ipsRun("announce", "--state", good, "--egress", "198.51.100.22"); code != 0 {
		t.Fatal(errs)
	}
	valid, _ := os.ReadFile(good)
	handEdited := strings.Replace(string(valid), `"enabled": "2026-12-09T11:00:00Z"`, `"enabled": "2026-11-26T11:00:00Z"`, 1)
	if handEdited == string(valid) {
		t.Fatal("the hand edit did not apply")
	}
	cases := []struct {
		name string
		data string
		want string
	}{
		{"truncated", string(valid[:len(valid)/2]), "truncated JSON: the document ends at byte"},
		{"empty", "", "the file is empty (0 bytes)"},
		{"invalid", strings.Replace(string(valid), `"notice_days": 14,`, `"notice_days": 14`, 1), "invalid JSON at line 6, column 3"},
		{"enabled a day after published", handEdited,
			"prefixes[2] (198.51.100.22/32): enabled 2026-11-26T11:00:00Z is only 1 day after published 2026-11-25T11:00:00Z"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".json")
			if err := os.WriteFile(path, []byte(tc.data), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{
				{"show", "--state", path},
				{"announce", "--state", path, "--ingress", "203.0.113.11"},
				{"retire", "--state", path, "--cidr", "198.51.100.20"},
			} {
				code, out, errs := ipsRun(args...)
				if code != 1 || out != "" || !strings.Contains(errs, "load contract "+path+": ") || !strings.Contains(errs, tc.want) {
					t.Fatalf("%s: exit %d\nstdout %q\nstderr %s", args[0], code, out, errs)
				}
				if got, _ := os.ReadFile(path); string(got) != tc.data {
					t.Fatalf("%s changed the file", args[0])
				}
			}
			// No temporary file is left beside it (the lock file is expected).
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if strings.Contains(e.Name(), ".tmp-") {
					t.Fatalf("stray file %s", e.Name())
				}
			}
		})
	}
	if code, _, errs := ipsRun("show", "--state", filepath.Join(dir, "missing.json")); code != 1 || !strings.Contains(errs, "the file does not exist") {
		t.Fatalf("missing file: exit %d: %s", code, errs)
	}
}

func TestIPRangesStateUsage(t *testing.T) {
	ipsClock(t, time.Date(2026, 11, 25, 11, 0, 0, 0, time.UTC))
	state := filepath.Join(t.TempDir(), "s.json")
	if code, _, errs := ipsRun("init", "--state", state, "--ingress", "203.0.113.10", "--ingress", "203.0.113.11", "--egress", "198.51.100.20"); code != 0 {
		t.Fatal(errs)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"init", "--ingress", "203.0.113.10"}, 2, "--state FILE is required"},
		{[]string{"announce", "--egress", "198.51.100.22"}, 2, "--state FILE is required"},
		{[]string{"retire", "--cidr", "198.51.100.22"}, 2, "--state FILE is required"},
		{[]string{"show"}, 2, "--state FILE is required"},
		{[]string{"init", "--state", state + ".new"}, 2, "at least one --ingress or --egress"},
		{[]string{"init", "--state", state + ".new", "--ingress", "300.1.1.1"}, 2, `"300.1.1.1" is not an IP address or CIDR prefix`},
		{[]string{"init", "--state", state + ".new", "--ingress", "203.0.113.10/24"}, 1, "did you mean 203.0.113.0/24?"},
		{[]string{"init", "--state", state + ".new", "--ingress", "fe80::1%eth0"}, 2, "zones are not allowed"},
		{[]string{"init", "--state", state + ".new", "--ingress", "203.0.113.10", "--notice", "72h"}, 1, "notice 72h is below the 336h (14 days) minimum"},
		{[]string{"announce", "--state", state}, 2, "exactly one of --ingress CIDR or --egress CIDR"},
		{[]string{"announce", "--state", state, "--ingress", "203.0.113.12", "--egress", "198.51.100.22"}, 2, "exactly one of"},
		{[]string{"announce", "--state", state, "--egress", "198.51.100.22", "--notice", "soon"}, 2, `"soon" is not a duration`},
		{[]string{"announce", "--state", state, "--egress", "198.51.101.0/23"}, 1, "did you mean 198.51.100.0/23?"},
		{[]string{"announce", "--state", state, "--egress", "::ffff:198.51.100.30"}, 1, "write it as 198.51.100.30/32"},
		{[]string{"announce", "--state", state, "--ingress", "203.0.113.0/24"}, 1, "203.0.113.0/24 overlaps 203.0.113.10/32, listed as ingress"},
		{[]string{"retire", "--state", state}, 2, "--cidr CIDR is required"},
		{[]string{"retire", "--state", state, "--cidr", "203.0.113.10", "--after", "-1h"}, 2, "--after -1h is negative"},
		{[]string{"retire", "--state", state, "--cidr", "203.0.113.10", "--direction", "up"}, 2, `--direction: "up" is not ingress or egress`},
		{[]string{"retire", "--state", state, "--cidr", "203.0.113.99"}, 1, "retire 203.0.113.99/32: not in the contract"},
		{[]string{"retire", "--state", state, "--cidr", "198.51.100.20"}, 1, "it is the last egress address in service"},
		{[]string{"show", "--state", state, "--at", "tomorrow"}, 2, `--at "tomorrow" is not an RFC 3339 time`},
		{[]string{"show", "--state", state, "--bogus"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"show", "--state", state, "extra"}, 2, `unexpected argument "extra"`},
	} {
		before, _ := os.ReadFile(state)
		code, _, errs := ipsRun(tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d (want %d)\n%s", tc.args, code, tc.code, errs)
		}
		if after, _ := os.ReadFile(state); !bytes.Equal(after, before) {
			t.Errorf("%v changed the file", tc.args)
		}
	}
	if _, err := os.Stat(state + ".new"); !os.IsNotExist(err) {
		t.Fatal("a refused init created a file")
	}
	// --force retires the last egress address; --after 0 retires at once.
	code, out, errs := ipsRun("retire", "--state", state, "--cidr", "198.51.100.20", "--force", "--after", "0s")
	if code != 0 || out != "retired egress 198.51.100.20/32 at 2026-11-25T11:00:00Z: no longer used; listed until 2026-12-25T11:00:00Z\n" {
		t.Fatalf("forced retire: exit %d\n%s%s", code, out, errs)
	}
}

// --config takes ipranges.state and ipranges.notice from fixedgate's config file.
func TestIPRangesStateConfig(t *testing.T) {
	ipsClock(t, time.Date(2026, 11, 25, 11, 0, 0, 0, time.UTC))
	state := filepath.Join(t.TempDir(), "ip-ranges.json")
	cfg := writeConfig(t, minimalConfig+"ipranges:\n  state: "+state+"\n  notice: 720h\n")
	if code, out, errs := ipsRun("init", "--config", cfg, "--ingress", "203.0.113.10", "--egress", "198.51.100.20"); code != 0 || !strings.Contains(out, "30 days' notice") {
		t.Fatalf("init: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs := ipsRun("announce", "--config", cfg, "--egress", "198.51.100.22")
	if code != 0 || !strings.Contains(out, "usable from 2026-12-25T11:00:00Z (30 days)") {
		t.Fatalf("announce: exit %d\n%s%s", code, out, errs)
	}
	if code, _, errs := ipsRun("announce", "--config", cfg, "--egress", "198.51.100.23", "--notice", "336h"); code != 1 || !strings.Contains(errs, "below the 720h (30 days) minimum") {
		t.Fatalf("announce below the contract's notice: exit %d: %s", code, errs)
	}
	// Without --config, the document's own notice applies; with a config that disagrees, it is refused.
	if code, _, errs := ipsRun("show", "--state", state); code != 0 {
		t.Fatal(errs)
	}
	other := writeConfig(t, minimalConfig+"ipranges:\n  state: "+state+"\n")
	if code, _, errs := ipsRun("show", "--config", other); code != 1 || !strings.Contains(errs, "notice_days: 30 days does not match the configured notice 14 days") {
		t.Fatalf("mismatched config: exit %d: %s", code, errs)
	}
	if code, _, errs := ipsRun("init", "--config", other, "--state", state+".2", "--ingress", "203.0.113.10", "--notice", "720h"); code != 1 || !strings.Contains(errs, "differs from ipranges.notice 336h") {
		t.Fatalf("init --notice against the config: exit %d: %s", code, errs)
	}
	noState := writeConfig(t, minimalConfig)
	if code, _, errs := ipsRun("show", "--config", noState); code != 2 || !strings.Contains(errs, "sets no ipranges.state") {
		t.Fatalf("config without state: exit %d: %s", code, errs)
	}
}
