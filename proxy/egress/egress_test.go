package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

func TestPick(t *testing.T) {
	d, err := New(Config{Addresses: addrs("127.0.0.20", "127.0.0.21", "127.0.0.22")}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	dst := netip.MustParseAddr("127.0.0.30")
	first := map[string]netip.Addr{}
	used := map[netip.Addr]int{}
	for i := range 300 {
		id := fmt.Sprintf("customer-%d", i)
		a, err := d.Pick(id, dst)
		if err != nil {
			t.Fatal(err)
		}
		if again, _ := d.Pick(id, netip.MustParseAddr("127.0.0.31")); again != a {
			t.Fatalf("%s: egress not sticky across destinations: %s then %s", id, a, again)
		}
		first[id] = a
		used[a]++
	}
	for _, a := range d.Addresses() {
		if used[a] < 50 {
			t.Errorf("egress %s used by only %d of 300 identities: %v", a, used[a], used)
		}
	}
	// Adding an address moves only the identities that now prefer it.
	d.SetActive(addrs("127.0.0.20", "127.0.0.21", "127.0.0.22", "127.0.0.23"))
	for id, was := range first {
		now, _ := d.Pick(id, dst)
		if now != was && now != netip.MustParseAddr("127.0.0.23") {
			t.Fatalf("%s moved from %s to %s, not to the new address", id, was, now)
		}
	}
	if _, err := d.Pick("x", netip.MustParseAddr("::1")); !errors.Is(err, ErrNoFamily) {
		t.Errorf("IPv6 destination with IPv4-only egress: %v, want ErrNoFamily", err)
	}
	if a, err := d.Pick("x", netip.MustParseAddr("::ffff:127.0.0.30")); err != nil || !a.Is4() {
		t.Errorf("IPv4-mapped destination: %v %v", a, err)
	}
}

func TestNewRefusesAddressNotOnHost(t *testing.T) {
	// 192.0.2.0/24 is documentation space: never assigned here. Only a bind is attempted.
	_, err := New(Config{Addresses: addrs("192.0.2.44")}, time.Second)
	if err == nil {
		t.Fatal("accepted an egress address that is not on this host")
	}
}

func TestDialUsesSource(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.30:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d, err := New(Config{Addresses: addrs("127.0.0.20")}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	src, _ := d.Pick("x", netip.MustParseAddr("127.0.0.30"))
	c, err := d.Dial(context.Background(), src, ln.Addr().(*net.TCPAddr).AddrPort())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.RemoteAddr().(*net.TCPAddr).IP.String(); got != "127.0.0.20" {
		t.Fatalf("origin saw %s, want 127.0.0.20", got)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		addrs []string
		want  string
	}{
		{[]string{"127.0.0.20", "127.0.0.20"}, "addresses[1]: 127.0.0.20 is listed twice"},
		{[]string{"0.0.0.0"}, "addresses[0]: 0.0.0.0 is not a unicast address"},
		{[]string{"fe80::1%eth0"}, "zones are not supported"},
	} {
		err := Config{Addresses: addrs(tc.addrs...)}.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.addrs, err, tc.want)
		}
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || len(s) >= len(sub) && (s[:len(sub)] == sub || contains(s[1:], sub))
}

// TestNoneActiveRefuses: configured egress addresses that are all out of service (announced,
// or retired) must refuse, never fall back to a source the kernel picks.
func TestNoneActiveRefuses(t *testing.T) {
	d, err := New(Config{Addresses: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	d.SetActive(nil)
	if _, err := d.Pick("acme", netip.MustParseAddr("127.0.0.2")); !errors.Is(err, ErrNoneActive) {
		t.Fatalf("Pick with no active address: %v, want ErrNoneActive", err)
	}
	dev, _ := New(Config{}, time.Second)
	if a, err := dev.Pick("acme", netip.MustParseAddr("127.0.0.2")); err != nil || a.IsValid() {
		t.Fatalf("without configured addresses the kernel chooses: got %v %v", a, err)
	}
}
