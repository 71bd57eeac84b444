package ipranges

import (
	"net/netip"
	"path/filepath"
	"testing"
	"time"
)

// big10k returns a contract of 10,000 prefixes: 8,000 in the initial set (IPv4 ingress, IPv6
// egress), 2,000 announced later, 500 of them retiring; about 10,500 changelog entries.
func big10k(tb testing.TB) *Document {
	tb.Helper()
	var in, eg []netip.Prefix
	for i := range 4000 {
		in = append(in, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24))
		a := netip.MustParseAddr("2001:db8::").As16()
		a[6], a[7] = byte(i>>8), byte(i)
		eg = append(eg, netip.PrefixFrom(netip.AddrFrom16(a), 64))
	}
	d, err := Init(in, eg, InitOptions{Facility: "us-east-1"}, stT0)
	if err != nil {
		tb.Fatal(err)
	}
	// Added directly rather than through Announce and Retire (each scans all prefixes), as they
	// would have written them; Validate below confirms the result is a valid contract.
	now := stT0.Add(stDay)
	for i := range 2000 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 16 + byte(i>>8), byte(i), 0}), 24)
		d.Prefixes = append(d.Prefixes, Prefix{CIDR: p, Class: "ipv4", Direction: Ingress, Service: "proxy",
			Facility: "us-west-2", Published: now, Enabled: now.Add(MinNotice)})
		d.record(now, now, "announce", &d.Prefixes[len(d.Prefixes)-1], "enabled "+fmtTime(now.Add(MinNotice)))
	}
	retired := now.Add(time.Hour + 14*stDay)
	for i := range 500 {
		d.Prefixes[i].Retired = &retired
		d.record(now.Add(time.Hour), now.Add(time.Hour), "retire", &d.Prefixes[i], "retired "+fmtTime(retired))
	}
	if err := d.Validate(0); err != nil {
		tb.Fatal(err)
	}
	if len(d.Prefixes) != 10000 {
		tb.Fatalf("%d prefixes", len(d.Prefixes))
	}
	return d
}

func BenchmarkLoad10k(b *testing.B) {
	path := filepath.Join(b.TempDir(), "ip-ranges.json")
	if err := Save(path, big10k(b)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(path, MinNotice); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRender10k(b *testing.B) {
	d := big10k(b)
	now := stT0.Add(10 * stDay)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Render(d, now, Filter{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUpdate10k is one `ipranges announce` on a 10,000-prefix contract, minus process
// start: lock, load, announce, prune, validate, check, save (with fsync).
func BenchmarkUpdate10k(b *testing.B) {
	path := filepath.Join(b.TempDir(), "ip-ranges.json")
	d := big10k(b)
	if err := Save(path, d); err != nil {
		b.Fatal(err)
	}
	now := stT0.Add(2 * stDay)
	i := 0
	for b.Loop() {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, byte(i >> 8), byte(i)}), 32)
		i++
		if _, _, err := Update(path, MinNotice, now, func(d *Document) error {
			return d.Announce(p, Egress, 0, "", "", now)
		}); err != nil {
			b.Fatal(err)
		}
	}
}
