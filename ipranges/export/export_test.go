package export

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fixedgate/fixedgate/ipranges"
)

var (
	t0   = time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	tAnn = time.Date(2026, 11, 23, 18, 40, 0, 0, time.UTC)
	tEn  = tAnn.Add(ipranges.MinNotice)
	now  = tAnn.Add(time.Hour)
)

func tp(t time.Time) *time.Time { return &t }

func pfx(cidr string, dir ipranges.Direction, published, enabled time.Time, retired *time.Time) ipranges.Prefix {
	p := netip.MustParsePrefix(cidr)
	class := "ipv4"
	if p.Addr().Is6() {
		class = "ipv6"
	}
	return ipranges.Prefix{CIDR: p, Class: class, Direction: dir, Service: "proxy", Facility: "us-east-1",
		Published: published, Enabled: enabled, Retired: retired}
}

func doc(ps ...ipranges.Prefix) *ipranges.Document {
	return &ipranges.Document{SchemaVersion: 1, SyncToken: fmt.Sprint(tAnn.UnixMilli()), CreatedAt: t0, NoticeDays: 14,
		Prefixes: ps, Changelog: []ipranges.Change{}}
}

// sample: active, announced, draining, retired, IPv6 ingress and egress.
func sample() *ipranges.Document {
	return doc(
		pfx("203.0.113.10/32", ipranges.Ingress, t0, t0, nil),
		pfx("203.0.113.11/32", ipranges.Ingress, tAnn, tEn, nil),
		pfx("198.51.100.20/32", ipranges.Egress, t0, t0, tp(tEn)),
		pfx("198.51.100.22/32", ipranges.Egress, tAnn, tEn, nil),
		pfx("192.0.2.0/24", ipranges.Egress, t0, t0, tp(t0.Add(time.Hour))),
		pfx("2001:db8::10/128", ipranges.Ingress, t0, t0, nil),
		pfx("2001:db8:1::/48", ipranges.Egress, t0, t0, nil),
	)
}

func render(t *testing.T, d *ipranges.Document, o Options) string {
	t.Helper()
	out, err := Render(d, now, o)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := Render(d, now, o)
	if !bytes.Equal(out, again) {
		t.Fatal("output is not deterministic")
	}
	return string(out)
}

func TestCIDRSelection(t *testing.T) {
	d := sample()
	cases := []struct {
		o    Options
		want string
	}{
		{Options{Format: "cidr"}, "198.51.100.20/32\n203.0.113.10/32\n2001:db8::10/128\n2001:db8:1::/48\n"},
		{Options{Format: "cidr", IncludeAnnounced: true}, "198.51.100.20/32\n198.51.100.22/32\n203.0.113.10/32\n203.0.113.11/32\n2001:db8::10/128\n2001:db8:1::/48\n"},
		{Options{Format: "cidr", Direction: ipranges.Ingress}, "203.0.113.10/32\n2001:db8::10/128\n"},
		{Options{Format: "cidr", Direction: ipranges.Egress, IncludeAnnounced: true}, "198.51.100.20/32\n198.51.100.22/32\n2001:db8:1::/48\n"},
		{Options{Format: "cidr", Direction: ipranges.Egress}, "198.51.100.20/32\n2001:db8:1::/48\n"},
	}
	for _, c := range cases {
		if got := render(t, d, c.o); got != c.want {
			t.Errorf("%+v:\n%s\nwant:\n%s", c.o, got, c.want)
		}
	}
	// After the enabled time the announced ones are in use, and the draining one has retired.
	out, _ := Render(d, tEn, Options{Format: "cidr"})
	if string(out) != "198.51.100.22/32\n203.0.113.10/32\n203.0.113.11/32\n2001:db8::10/128\n2001:db8:1::/48\n" {
		t.Errorf("at enabled:\n%s", out)
	}
	if out, _ := Render(doc(), now, Options{Format: "cidr"}); len(out) != 0 {
		t.Errorf("empty document: %q", out)
	}
}

func TestNormalize(t *testing.T) {
	in := []netip.Prefix{
		netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("11.0.0.0/24"), netip.MustParsePrefix("11.0.1.0/24"), netip.MustParsePrefix("::/0"),
		netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("0.0.0.0/0"),
	}
	got := fmt.Sprint(normalize(in))
	if got != "[0.0.0.0/0 ::/0]" {
		t.Errorf("%s", got)
	}
	got = fmt.Sprint(normalize(in[:5]))
	if got != "[10.0.0.0/8 11.0.0.0/24 11.0.1.0/24]" {
		t.Errorf("%s", got)
	}
}

func TestNFTables(t *testing.T) {
	out := render(t, sample(), Options{Format: "nftables", IncludeAnnounced: true})
	for _, want := range []string{
		"table inet fixedgate {\n\tset fixedgate_ingress_v4 {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t}\n",
		"flush set inet fixedgate fixedgate_egress_v6\n",
		"add element inet fixedgate fixedgate_ingress_v4 {\n\t203.0.113.10/32,\n\t203.0.113.11/32,\n}\n",
		"add element inet fixedgate fixedgate_egress_v4 {\n\t198.51.100.20/32,\n\t198.51.100.22/32,\n}\n",
		"#   ip saddr @fixedgate_egress_v4",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "192.0.2.0") {
		t.Error("retired prefix exported")
	}
	checkNFTSyntax(t, out)
	own := render(t, sample(), Options{Format: "nftables", Direction: ipranges.Egress, Table: "filter", SetName: "partner"})
	if !strings.Contains(own, "table inet filter {") || !strings.Contains(own, "partner_egress_v6") || strings.Contains(own, "ingress_v4 {") {
		t.Errorf("own table/egress only:\n%s", own)
	}
	checkNFTSyntax(t, own)
	t.Logf("sample:\n%s", out)
}

func TestIPTables(t *testing.T) {
	out := render(t, sample(), Options{Format: "iptables"})
	want := "*filter\n:FIXEDGATE-INGRESS - [0:0]\n:FIXEDGATE-EGRESS - [0:0]\n" +
		"-A FIXEDGATE-INGRESS -d 203.0.113.10/32 -j ACCEPT\n-A FIXEDGATE-EGRESS -s 198.51.100.20/32 -j ACCEPT\nCOMMIT\n"
	if !strings.HasSuffix(out, want) || !strings.Contains(out, "# 2 IPv6 prefixes are not in this file: export them with --format ip6tables.") {
		t.Errorf("iptables:\n%s", out)
	}
	checkIPTSyntax(t, out, false)
	out6 := render(t, sample(), Options{Format: "ip6tables", Direction: ipranges.Egress, Chain: "PARTNER"})
	want6 := "*filter\n:PARTNER-EGRESS - [0:0]\n-A PARTNER-EGRESS -s 2001:db8:1::/48 -j ACCEPT\nCOMMIT\n"
	if !strings.HasSuffix(out6, want6) || !strings.Contains(out6, "1 IPv4 prefixes are not in this file") {
		t.Errorf("ip6tables:\n%s", out6)
	}
	checkIPTSyntax(t, out6, true)
	t.Logf("sample:\n%s", out)
}

func TestJSON(t *testing.T) {
	out := render(t, sample(), Options{Format: "json", Direction: ipranges.Ingress, IncludeAnnounced: true})
	d, err := ipranges.Parse([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range d.Prefixes {
		got = append(got, p.CIDR.String())
	}
	if fmt.Sprint(got) != "[203.0.113.10/32 203.0.113.11/32 2001:db8::10/128]" {
		t.Errorf("prefixes %v", got)
	}
	if !strings.Contains(out, `"status": "announced"`) {
		t.Error("statuses missing")
	}
}

func TestBadOptions(t *testing.T) {
	for _, o := range []Options{
		{Format: "pf"}, {Format: ""}, {Format: "cidr", Direction: "up"},
		{Format: "nftables", Table: "a b"}, {Format: "nftables", SetName: "x;flush ruleset"},
		{Format: "iptables", Chain: "THIS-NAME-IS-FAR-TOO-LONG"}, {Format: "iptables", Chain: "-X"},
	} {
		if _, err := Render(sample(), now, o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	if _, err := Render(nil, now, Options{Format: "cidr"}); err == nil {
		t.Error("nil document accepted")
	}
}

// checkNFTSyntax is the check that runs without nft: the shape this package writes, braces
// balanced, and every element a canonical prefix of its set's family, sorted, not overlapping.
func checkNFTSyntax(t *testing.T, out string) {
	t.Helper()
	setType := map[string]string{}
	declRe := regexp.MustCompile(`^\tset ([A-Za-z][A-Za-z0-9_]*) \{$`)
	typeRe := regexp.MustCompile(`^\t\ttype (ipv4_addr|ipv6_addr)$`)
	flushRe := regexp.MustCompile(`^flush set inet [A-Za-z][A-Za-z0-9_]* ([A-Za-z][A-Za-z0-9_]*)$`)
	addRe := regexp.MustCompile(`^add element inet [A-Za-z][A-Za-z0-9_]* ([A-Za-z][A-Za-z0-9_]*) \{$`)
	depth, cur, inAdd := 0, "", ""
	var prev netip.Prefix
	sc := bufio.NewScanner(strings.NewReader(out))
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		fail := func(why string) { t.Fatalf("line %d %q: %s\n%s", n, l, why, out) }
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case inAdd != "":
			if l == "}" {
				inAdd = ""
				continue
			}
			p, err := netip.ParsePrefix(strings.TrimSuffix(strings.TrimPrefix(l, "\t"), ","))
			if err != nil || p != p.Masked() || !strings.HasSuffix(l, ",") {
				fail("not a canonical prefix element")
			}
			if (setType[inAdd] == "ipv4_addr") != p.Addr().Is4() {
				fail("element of the wrong family for " + inAdd)
			}
			if prev.IsValid() && (prev.Compare(p) >= 0 || prev.Overlaps(p)) {
				fail("not sorted or overlapping")
			}
			prev = p
		case strings.HasPrefix(l, "table inet ") && strings.HasSuffix(l, " {"):
			depth++
		case declRe.MatchString(l):
			cur = declRe.FindStringSubmatch(l)[1]
			depth++
		case typeRe.MatchString(l):
			setType[cur] = typeRe.FindStringSubmatch(l)[1]
		case l == "\t\tflags interval":
		case l == "\t}" || l == "}":
			depth--
		case flushRe.MatchString(l):
			if setType[flushRe.FindStringSubmatch(l)[1]] == "" {
				fail("flush of an undeclared set")
			}
		case addRe.MatchString(l):
			inAdd = addRe.FindStringSubmatch(l)[1]
			prev = netip.Prefix{}
			if setType[inAdd] == "" {
				fail("elements for an undeclared set")
			}
		default:
			fail("unexpected line")
		}
		if depth < 0 {
			fail("unbalanced braces")
		}
	}
	if depth != 0 || inAdd != "" {
		t.Fatalf("unbalanced braces at the end:\n%s", out)
	}
}

// checkIPTSyntax: comments, one *filter table, chain declarations before rules, ACCEPT rules of
// the right family, COMMIT last.
func checkIPTSyntax(t *testing.T, out string, v6 bool) {
	t.Helper()
	ruleRe := regexp.MustCompile(`^-A ([A-Za-z][A-Za-z0-9_-]*) (-d|-s) (\S+) -j ACCEPT$`)
	chains := map[string]bool{}
	state := 0 // 0 before *filter, 1 in it, 2 after COMMIT
	sc := bufio.NewScanner(strings.NewReader(out))
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		fail := func(why string) { t.Fatalf("line %d %q: %s\n%s", n, l, why, out) }
		switch {
		case strings.HasPrefix(l, "#") && state != 1:
		case l == "*filter" && state == 0:
			state = 1
		case state == 1 && strings.HasPrefix(l, ":") && strings.HasSuffix(l, " - [0:0]"):
			name := strings.TrimSuffix(l[1:], " - [0:0]")
			if len(name) > 28 {
				fail("chain name too long")
			}
			chains[name] = true
		case state == 1 && ruleRe.MatchString(l):
			m := ruleRe.FindStringSubmatch(l)
			p, err := netip.ParsePrefix(m[3])
			if !chains[m[1]] || err != nil || p.Addr().Is6() != v6 || p != p.Masked() {
				fail("bad rule")
			}
		case l == "COMMIT" && state == 1:
			state = 2
		default:
			fail("unexpected line")
		}
	}
	if state != 2 {
		t.Fatalf("no COMMIT:\n%s", out)
	}
}

// toolCases are the documents the tools must load: empty, IPv4 only, IPv6 only, both, 1,000
// prefixes, and overlapping prefixes.
func toolCases() map[string]*ipranges.Document {
	big := doc()
	for i := range 1000 {
		c := fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)
		dir := ipranges.Ingress
		if i%2 == 1 {
			dir = ipranges.Egress
		}
		big.Prefixes = append(big.Prefixes, pfx(c, dir, t0, t0, nil))
		if i%10 == 0 {
			big.Prefixes = append(big.Prefixes, pfx(fmt.Sprintf("2001:db8:%x::/48", i), dir, t0, t0, nil))
		}
	}
	return map[string]*ipranges.Document{
		"empty":   doc(),
		"v4":      doc(pfx("203.0.113.10/32", ipranges.Ingress, t0, t0, nil), pfx("198.51.100.0/24", ipranges.Egress, t0, t0, nil)),
		"v6":      doc(pfx("2001:db8::10/128", ipranges.Ingress, t0, t0, nil), pfx("2001:db8:1::/48", ipranges.Egress, t0, t0, nil)),
		"both":    sample(),
		"1000":    big,
		"overlap": doc(pfx("10.0.0.0/8", ipranges.Ingress, t0, t0, nil), pfx("10.1.0.0/16", ipranges.Ingress, tAnn, tEn, nil), pfx("10.1.2.0/24", ipranges.Egress, t0, t0, nil)),
	}
}

// tool runs a checker (nft -c, iptables-restore --test) or skips the test when it cannot work
// here, with the reason the tool printed.
type tool struct {
	name  string
	args  []string
	stdin bool
	probe string // a file the tool must accept
	bad   string // a file the tool must refuse
}

func (tl tool) run(t *testing.T, path string) ([]byte, error) {
	cmd := exec.Command(tl.name, tl.args...)
	if tl.stdin {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd.Stdin = f
	} else {
		cmd.Args = append(cmd.Args, path)
	}
	return cmd.CombinedOutput()
}

func (tl tool) ready(t *testing.T, dir string) {
	t.Helper()
	if _, err := exec.LookPath(tl.name); err != nil {
		t.Skipf("%s is not installed (.ci/run installs Debian's nftables and iptables packages)", tl.name)
	}
	probe := filepath.Join(dir, "probe")
	os.WriteFile(probe, []byte(tl.probe), 0o644)
	if out, err := tl.run(t, probe); err != nil {
		t.Skipf("%s %s cannot check files here (%v): %s", tl.name, strings.Join(tl.args, " "), err, bytes.TrimSpace(out))
	}
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte(tl.bad), 0o644)
	if out, err := tl.run(t, bad); err == nil {
		t.Fatalf("%s accepted a broken file, so it checks nothing here: %s", tl.name, out)
	}
}

func TestToolsLoadExports(t *testing.T) {
	tools := map[string]tool{
		"nftables": {name: "nft", args: []string{"-c", "-f"},
			probe: "table inet fixedgate_probe {\n\tset s {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t}\n}\n",
			bad:   "table inet fixedgate_probe {\n\tset s {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = { 2001:db8::/32 }\n\t}\n}\n"},
		"iptables": {name: "iptables-restore", args: []string{"--test", "--noflush"}, stdin: true,
			probe: "*filter\n:FIXEDGATE-PROBE - [0:0]\nCOMMIT\n",
			bad:   "*filter\n:FIXEDGATE-PROBE - [0:0]\n-A FIXEDGATE-PROBE -d 2001:db8::/32 -j ACCEPT\nCOMMIT\n"},
		"ip6tables": {name: "ip6tables-restore", args: []string{"--test", "--noflush"}, stdin: true,
			probe: "*filter\n:FIXEDGATE-PROBE - [0:0]\nCOMMIT\n",
			bad:   "*filter\n:FIXEDGATE-PROBE - [0:0]\n-A FIXEDGATE-PROBE -d 10.0.0.0/8 -j ACCEPT\nCOMMIT\n"},
	}
	for format, tl := range tools {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			tl.ready(t, dir)
			for name, d := range toolCases() {
				for _, o := range []Options{
					{Format: format}, {Format: format, IncludeAnnounced: true},
					{Format: format, Direction: ipranges.Egress, Table: "filter", SetName: "partner", Chain: "PARTNER"},
				} {
					out, err := Render(d, now, o)
					if err != nil {
						t.Fatal(err)
					}
					if format == "nftables" {
						checkNFTSyntax(t, string(out))
					} else {
						checkIPTSyntax(t, string(out), format == "ip6tables")
					}
					path := filepath.Join(dir, name+".rules")
					os.WriteFile(path, out, 0o644)
					if msg, err := tl.run(t, path); err != nil {
						t.Fatalf("%s (%+v): %s refused it: %v\n%s\n%s", name, o, tl.name, err, msg, out)
					}
				}
			}
		})
	}
}

// TestSyntaxOfGeneratedFiles runs the portable checks on every case, wherever the tools are missing.
func TestSyntaxOfGeneratedFiles(t *testing.T) {
	for name, d := range toolCases() {
		for _, inc := range []bool{false, true} {
			o := Options{IncludeAnnounced: inc}
			o.Format = "nftables"
			out, err := Render(d, now, o)
			if err != nil {
				t.Fatal(name, err)
			}
			checkNFTSyntax(t, string(out))
			for _, f := range []string{"iptables", "ip6tables"} {
				o.Format = f
				out, _ := Render(d, now, o)
				checkIPTSyntax(t, string(out), f == "ip6tables")
			}
		}
	}
}
