package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/fixedgate/fixedgate/ipranges"
)

// The operator's commands that maintain the state file: init, announce, retire, show. Each
// change goes through ipranges.Update (lock, load, apply, prune, validate, check against the
// version in force, save atomically), so a refused change leaves the file byte-for-byte as it was.

// nowFunc is the clock of these commands; tests set it.
var nowFunc = time.Now

// contractFlags are the flags every state command takes: the state file, directly or through
// the config file's ipranges section.
type contractFlags struct {
	state, config *string
}

func addContractFlags(fs *flag.FlagSet) contractFlags {
	return contractFlags{
		state:  fs.String("state", "", "the contract's state `FILE` (default: ipranges.state of --config)"),
		config: fs.String("config", "", "fixedgate's config `FILE`: ipranges.state and ipranges.notice come from it"),
	}
}

// resolve returns the state file and the configured notice: ipranges.notice with --config, else
// 0, which accepts the notice the document states (at least 14 days). A missing state file name
// is a usage error.
func (c contractFlags) resolve(name string, stderr io.Writer) (path string, notice time.Duration, err error) {
	path = *c.state
	if *c.config != "" {
		cfg, err := loadConfig(*c.config)
		if err != nil {
			return "", 0, err
		}
		notice = cfg.IPRanges.Notice
		if path == "" {
			path = cfg.IPRanges.State
		}
	}
	if path == "" {
		if *c.config != "" {
			fmt.Fprintf(stderr, "fixedgate ipranges %s: --state FILE is required (%s sets no ipranges.state)\n", name, *c.config)
		} else {
			fmt.Fprintf(stderr, "fixedgate ipranges %s: --state FILE is required (the contract's state file, e.g. /var/lib/fixedgate/ip-ranges.json)\n", name)
		}
		return "", 0, errUsage
	}
	return path, notice, nil
}

// parseContractCIDR reads a CIDR flag; a bare address means a single address (/32 or /128).
// Canonical form is checked by the ipranges package, which suggests the fix.
func parseContractCIDR(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix (e.g. 203.0.113.10/32, or a bare address)", s)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR prefix", s)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q has an IPv6 zone; zones are not allowed in the contract", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// prefixList is a repeatable CIDR flag.
type prefixList []netip.Prefix

func (l *prefixList) String() string {
	var s []string
	for _, p := range *l {
		s = append(s, p.String())
	}
	return strings.Join(s, ",")
}

func (l *prefixList) Set(s string) error {
	p, err := parseContractCIDR(s)
	if err != nil {
		return err
	}
	*l = append(*l, p)
	return nil
}

// prefixFlag is a single CIDR flag; Set records that it was given.
type prefixFlag struct {
	p   netip.Prefix
	set bool
}

func (f *prefixFlag) String() string {
	if !f.set {
		return ""
	}
	return f.p.String()
}

func (f *prefixFlag) Set(s string) error {
	p, err := parseContractCIDR(s)
	if err != nil {
		return err
	}
	f.p, f.set = p, true
	return nil
}

// durationFlag is an optional duration flag: set records whether it was given, and an unset
// flag shows no default in the usage text (the default is described there instead).
type durationFlag struct {
	d   time.Duration
	set bool
}

func (f *durationFlag) String() string {
	if !f.set {
		return ""
	}
	return dur(f.d)
}

func (f *durationFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration (e.g. 336h)", s)
	}
	f.d, f.set = d, true
	return nil
}

// dur prints a duration without Go's trailing zero units: 72h, not 72h0m0s.
func dur(d time.Duration) string {
	s := d.String()
	s = strings.TrimSuffix(s, "0s")
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	if s == "" {
		return "0s"
	}
	return s
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// days prints a duration as days when it is whole days ("14 days"), else as Go does.
func days(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d == day:
		return "1 day"
	case d > 0 && d%day == 0:
		return fmt.Sprintf("%d days", d/day)
	}
	return dur(d)
}

func cmdIPRangesInit(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ipranges init", stderr)
	cf := addContractFlags(fs)
	var ingress, egress prefixList
	fs.Var(&ingress, "ingress", "an ingress `CIDR` (address customers connect to); repeat for more; a bare IP is a /32 or /128")
	fs.Var(&egress, "egress", "an egress `CIDR` (source address backends see); repeat for more")
	facility := fs.String("facility", "", "facility (e.g. region) of these prefixes")
	service := fs.String("service", ipranges.DefaultService, "service name of these prefixes")
	var notice durationFlag
	fs.Var(&notice, "notice", "the notice (a `DURATION` of whole days) the contract promises for later additions (default: ipranges.notice of --config, else 336h)")
	setUsage(fs, "fixedgate ipranges init --state FILE --ingress CIDR [--ingress CIDR …] [--egress CIDR …]", `
Creates the contract. The first set is active at once (published = enabled = now): nobody can
depend on addresses nobody has seen yet. Every later addition (announce) is enabled only after
the notice. Refuses to overwrite an existing state file: add addresses with announce.`)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	path, cfgNotice, err := cf.resolve("init", stderr)
	if err != nil {
		return err
	}
	if len(ingress)+len(egress) == 0 {
		fmt.Fprintln(stderr, "fixedgate ipranges init: at least one --ingress or --egress CIDR is required")
		return errUsage
	}
	n := notice.d
	switch {
	case n == 0 && cfgNotice != 0:
		n = cfgNotice
	case n == 0:
		n = ipranges.MinNotice
	case cfgNotice != 0 && n != cfgNotice:
		return fmt.Errorf("init: --notice %s differs from ipranges.notice %s in %s: the contract and the config must agree", dur(n), dur(cfgNotice), *cf.config)
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("init: %s already exists: a contract is created once; add addresses with `fixedgate ipranges announce --state %s --ingress|--egress CIDR`", path, path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("init: %w", err)
	}
	now := nowFunc()
	doc, err := ipranges.Init(ingress, egress, ipranges.InitOptions{Notice: n, Facility: *facility, Service: *service}, now)
	if err != nil {
		return err
	}
	if err := ipranges.Create(path, doc); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	fmt.Fprintf(stdout, "created %s: %d ingress and %d egress prefixes, active from %s (the initial set owes no notice); later additions need %s' notice\n",
		path, len(ingress), len(egress), ts(doc.CreatedAt), days(doc.Notice()))
	return nil
}

func cmdIPRangesAnnounce(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ipranges announce", stderr)
	cf := addContractFlags(fs)
	var ingress, egress prefixFlag
	fs.Var(&ingress, "ingress", "the ingress `CIDR` to announce (a bare IP is a /32 or /128)")
	fs.Var(&egress, "egress", "the egress `CIDR` to announce")
	var notice durationFlag
	fs.Var(&notice, "notice", "how long (a `DURATION`) before the address is used (default: the contract's notice, 336h; shorter is refused)")
	facility := fs.String("facility", "", "facility (e.g. region) (default: the one all listed prefixes of that direction share)")
	service := fs.String("service", ipranges.DefaultService, "service name")
	setUsage(fs, "fixedgate ipranges announce --state FILE (--ingress CIDR | --egress CIDR) [--notice 336h] [--facility NAME]", `
Publishes an address now and enables it after the notice: the proxy binds or dials from it only
from then on, without a restart. A notice below the contract's (at least 14 days) is refused.`)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	path, cfgNotice, err := cf.resolve("announce", stderr)
	if err != nil {
		return err
	}
	if ingress.set == egress.set {
		fmt.Fprintln(stderr, "fixedgate ipranges announce: give exactly one of --ingress CIDR or --egress CIDR")
		return errUsage
	}
	p, dir := ingress.p, ipranges.Ingress
	if egress.set {
		p, dir = egress.p, ipranges.Egress
	}
	if notice.set && notice.d < ipranges.MinNotice {
		return fmt.Errorf("announce %s: --notice %s is below the %s (%s) minimum the contract promises", p, dur(notice.d), dur(ipranges.MinNotice), days(ipranges.MinNotice))
	}
	now := nowFunc()
	var added ipranges.Prefix
	old, doc, err := ipranges.Update(path, cfgNotice, now, func(d *ipranges.Document) error {
		fac := *facility
		if fac == "" {
			fac = sharedFacility(d, dir)
		}
		if err := d.Announce(p, dir, notice.d, fac, *service, now); err != nil {
			return err
		}
		added = d.Prefixes[len(d.Prefixes)-1]
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "announced %s %s: published %s, usable from %s (%s)%s\n",
		dir, p, ts(added.Published), ts(added.Enabled), days(added.Enabled.Sub(added.Published)), pruned(old, doc))
	return nil
}

// sharedFacility is the facility every listed prefix of dir has, or "" when they differ.
func sharedFacility(d *ipranges.Document, dir ipranges.Direction) string {
	fac, seen := "", false
	for _, p := range d.Prefixes {
		if p.Direction != dir {
			continue
		}
		if seen && p.Facility != fac {
			return ""
		}
		fac, seen = p.Facility, true
	}
	return fac
}

// pruned describes the prefixes the update dropped (retired more than 30 days ago), if any.
func pruned(old, doc *ipranges.Document) string {
	var gone []string
	for _, c := range doc.Changelog[len(old.Changelog):] {
		if c.Action == "prune" {
			gone = append(gone, c.CIDR)
		}
	}
	if len(gone) == 0 {
		return ""
	}
	return fmt.Sprintf("; also dropped %s (retired more than %s ago)", strings.Join(gone, ", "), days(ipranges.RetainRetired))
}

func cmdIPRangesRetire(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ipranges retire", stderr)
	cf := addContractFlags(fs)
	var cidr prefixFlag
	fs.Var(&cidr, "cidr", "the listed `CIDR` to retire (a bare IP is a /32 or /128)")
	dirFlag := fs.String("direction", "", "ingress or egress: which entry, when the CIDR is listed as both")
	var after durationFlag
	fs.Var(&after, "after", "how long (a `DURATION`) until the address stops being used (default: the contract's notice, 336h, for an address in use; 0, a withdrawal, for one only announced)")
	force := fs.Bool("force", false, "retire even the last address of its direction in service")
	setUsage(fs, "fixedgate ipranges retire --state FILE --cidr CIDR [--after 336h] [--force]", `
Schedules an address's retirement. Until then it is draining (still used); from then on it is
retired (no longer used) and stays listed for 30 days so pollers see it go. Retiring an
address that is only announced withdraws the announcement: it is never used. Retiring the last
ingress or egress address in service (with no replacement enabled by then) needs --force.`)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	path, cfgNotice, err := cf.resolve("retire", stderr)
	if err != nil {
		return err
	}
	if !cidr.set {
		fmt.Fprintln(stderr, "fixedgate ipranges retire: --cidr CIDR is required")
		return errUsage
	}
	dir, err := parseDirection(*dirFlag)
	if err != nil {
		fmt.Fprintln(stderr, "fixedgate ipranges retire:", err)
		return errUsage
	}
	if after.d < 0 {
		fmt.Fprintf(stderr, "fixedgate ipranges retire: --after %s is negative\n", dur(after.d))
		return errUsage
	}
	now := nowFunc()
	var was ipranges.Status
	var got ipranges.Prefix
	old, doc, err := ipranges.Update(path, cfgNotice, now, func(d *ipranges.Document) error {
		for _, q := range d.Prefixes {
			if q.CIDR == cidr.p && (dir == "" || q.Direction == dir) {
				was = q.Status(now)
			}
		}
		wait := after.d
		if !after.set && was != ipranges.Announced {
			wait = d.Notice()
		}
		if err := d.Retire(cidr.p, wait, ipranges.RetireOptions{Direction: dir, Force: *force}, now); err != nil {
			return err
		}
		for _, q := range d.Prefixes { // Retire succeeded: exactly one entry matches
			if q.CIDR == cidr.p && (dir == "" || q.Direction == dir) {
				got = q
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	listed := ts(got.Retired.Add(ipranges.RetainRetired))
	switch {
	case was == ipranges.Announced && !got.Enabled.Before(*got.Retired):
		fmt.Fprintf(stdout, "withdrew the announcement of %s %s: retired %s, never enabled; listed until %s%s\n",
			got.Direction, got.CIDR, ts(*got.Retired), listed, pruned(old, doc))
	case !got.Retired.After(now):
		fmt.Fprintf(stdout, "retired %s %s at %s: no longer used; listed until %s%s\n",
			got.Direction, got.CIDR, ts(*got.Retired), listed, pruned(old, doc))
	default:
		fmt.Fprintf(stdout, "retiring %s %s: draining (still used) until %s (%s), then retired; listed until %s%s\n",
			got.Direction, got.CIDR, ts(*got.Retired), days(got.Retired.Sub(now.UTC().Truncate(time.Second))), listed, pruned(old, doc))
	}
	return nil
}

func cmdIPRangesShow(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ipranges show", stderr)
	cf := addContractFlags(fs)
	at := fs.String("at", "", "show the statuses as of this RFC 3339 `TIME` (default now)")
	setUsage(fs, "fixedgate ipranges show --state FILE [--at RFC3339]", `
Prints the contract exactly as /ip-ranges.json serves it at that time (with each prefix's
status). Changes nothing.`)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	path, cfgNotice, err := cf.resolve("show", stderr)
	if err != nil {
		return err
	}
	now := nowFunc()
	if *at != "" {
		if now, err = time.Parse(time.RFC3339, *at); err != nil {
			fmt.Fprintf(stderr, "fixedgate ipranges show: --at %q is not an RFC 3339 time (e.g. 2026-12-07T18:40:00Z)\n", *at)
			return errUsage
		}
	}
	doc, err := ipranges.Load(path, cfgNotice)
	if err != nil {
		return err
	}
	out, err := ipranges.Render(doc, now, ipranges.Filter{})
	if err != nil {
		return err
	}
	_, err = stdout.Write(out)
	return err
}
