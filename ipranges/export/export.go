// Package export turns a contract into what a firewall loads: a plain CIDR list, an nftables
// file of named sets, an iptables-restore (or ip6tables-restore) file with dedicated chains, or
// the contract's JSON restricted to the selected prefixes.
//
// Selection: the prefixes in use at the given time (active and draining), of one direction or
// both; with IncludeAnnounced also the announced ones, so a firewall opens an address before
// fixedgate starts using it (the point of the notice period). Retired prefixes are never
// exported. Prefixes are canonicalised, sorted (IPv4 first, then by address and length),
// de-duplicated, and a prefix contained in another selected prefix of the same set or chain is
// left out (nftables interval sets refuse overlaps). The output depends only on the document,
// the time (through the statuses) and the options, so re-running an export and comparing files
// shows exactly when something changed.
//
// Directions: ingress prefixes are the addresses customers connect to (allow them as
// destinations, e.g. in OUTPUT/FORWARD); egress prefixes are the sources fixedgate connects
// from (allow them as sources, e.g. in INPUT). The nftables and iptables formats keep the two
// apart; cidr and json mix them unless a Direction is given.
//
// Formats:
//
//   - cidr: one CIDR a line, nothing else (no comments), both families.
//   - nftables: for `nft -f`. Declares table inet <Table> with one interval set per direction
//     and family (<SetName>_ingress_v4, _ingress_v6, _egress_v4, _egress_v6), then flushes each
//     set and adds the elements, in one transaction: loading a newer export replaces the
//     sets' contents atomically and touches nothing else in the table. nftables sets are local
//     to their table, so to use them from your own rules set Table to the name of your inet
//     table; the comment at the top shows rules that reference them.
//   - iptables: for `iptables-restore --noflush`: in the filter table, a chain per direction
//     (<Chain>-INGRESS with -d rules, <Chain>-EGRESS with -s rules) that ACCEPTs the IPv4
//     prefixes and returns otherwise; you jump to it from your own chains. IPv6 prefixes are
//     left out (a comment counts them): export them with the ip6tables format.
//   - ip6tables: the same for ip6tables-restore, with the IPv6 prefixes.
//   - json: ipranges.Render of the document with only the selected prefixes (the changelog is
//     kept whole), statuses as at the given time.
package export

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fixedgate/fixedgate/ipranges"
)

// Formats lists the values Options.Format accepts.
var Formats = []string{"cidr", "nftables", "iptables", "ip6tables", "json"}

// Defaults for the names in Options.
const (
	DefaultTable   = "fixedgate"
	DefaultSetName = "fixedgate"
	DefaultChain   = "FIXEDGATE"
)

// Options selects what to export and how.
type Options struct {
	// Format is one of Formats.
	Format string
	// Direction restricts the export to ingress or egress prefixes; empty exports both.
	Direction ipranges.Direction
	// IncludeAnnounced adds the announced prefixes to the ones in use now.
	IncludeAnnounced bool
	// Table is the nftables table (family inet) that holds the sets; default "fixedgate".
	Table string
	// SetName prefixes the nftables set names: <SetName>_<direction>_v4|v6; default "fixedgate".
	SetName string
	// Chain prefixes the iptables chain names: <Chain>-INGRESS, <Chain>-EGRESS; default "FIXEDGATE".
	Chain string
}

var (
	nftIdent   = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,63}$`)
	chainIdent = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,19}$`) // + "-INGRESS" fits iptables' 28
)

func (o *Options) check() error {
	if !slices.Contains(Formats, o.Format) {
		return fmt.Errorf("export: format %q: want one of %s", o.Format, strings.Join(Formats, ", "))
	}
	if o.Direction != "" && o.Direction != ipranges.Ingress && o.Direction != ipranges.Egress {
		return fmt.Errorf("export: direction %q: want ingress or egress (or none for both)", o.Direction)
	}
	if o.Table == "" {
		o.Table = DefaultTable
	}
	if o.SetName == "" {
		o.SetName = DefaultSetName
	}
	if o.Chain == "" {
		o.Chain = DefaultChain
	}
	if !nftIdent.MatchString(o.Table) {
		return fmt.Errorf("export: table %q: want a letter then letters, digits or _ (at most 64)", o.Table)
	}
	if !nftIdent.MatchString(o.SetName) {
		return fmt.Errorf("export: set name %q: want a letter then letters, digits or _ (at most 64)", o.SetName)
	}
	if !chainIdent.MatchString(o.Chain) {
		return fmt.Errorf("export: chain %q: want a letter then letters, digits, _ or - (at most 20)", o.Chain)
	}
	return nil
}

// Render exports doc as seen at now. See the package documentation for the formats.
func Render(doc *ipranges.Document, now time.Time, opts Options) ([]byte, error) {
	if doc == nil {
		return nil, errors.New("export: no document")
	}
	if err := opts.check(); err != nil {
		return nil, err
	}
	sel := selectPrefixes(doc, now, opts)
	var b bytes.Buffer
	switch opts.Format {
	case "cidr":
		all := make([]netip.Prefix, 0, len(sel))
		for _, s := range sel {
			all = append(all, s.cidr)
		}
		for _, p := range normalize(all) {
			b.WriteString(p.String())
			b.WriteByte('\n')
		}
	case "nftables":
		writeNFT(&b, doc, sel, opts)
	case "iptables":
		writeIPT(&b, doc, sel, opts, false)
	case "ip6tables":
		writeIPT(&b, doc, sel, opts, true)
	case "json":
		cp := *doc
		cp.Prefixes = make([]ipranges.Prefix, 0, len(sel))
		for _, s := range sel {
			cp.Prefixes = append(cp.Prefixes, *s.p)
		}
		out, err := ipranges.Render(&cp, now, ipranges.Filter{})
		if err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
		return out, nil
	}
	return b.Bytes(), nil
}

type selected struct {
	p    *ipranges.Prefix
	cidr netip.Prefix
}

// selectPrefixes returns the prefixes to export, in document order.
func selectPrefixes(doc *ipranges.Document, now time.Time, opts Options) []selected {
	var out []selected
	for i := range doc.Prefixes {
		p := &doc.Prefixes[i]
		if opts.Direction != "" && p.Direction != opts.Direction {
			continue
		}
		switch p.Status(now) {
		case ipranges.Active, ipranges.Draining:
		case ipranges.Announced:
			if !opts.IncludeAnnounced {
				continue
			}
		default:
			continue
		}
		if !p.CIDR.IsValid() {
			continue
		}
		c := p.CIDR
		if c.Addr().Is4In6() { // refused by Validate; a fetched document may not be validated
			c = netip.PrefixFrom(c.Addr().Unmap(), max(0, c.Bits()-96))
		}
		c = netip.PrefixFrom(c.Addr().WithZone(""), c.Bits())
		out = append(out, selected{p: p, cidr: c.Masked()})
	}
	return out
}

// normalize sorts ps, drops duplicates and prefixes contained in another one of the list.
func normalize(ps []netip.Prefix) []netip.Prefix {
	ps = slices.Clone(ps)
	slices.SortFunc(ps, netip.Prefix.Compare)
	out := ps[:0]
	for _, p := range ps {
		// Sorted by address then length, a prefix is contained in an earlier kept one exactly
		// when the last kept prefix of its family contains it (CIDR blocks nest or are disjoint).
		if n := len(out); n > 0 {
			last := out[n-1]
			if last.Addr().Is4() == p.Addr().Is4() && last.Bits() <= p.Bits() && last.Contains(p.Addr()) {
				continue
			}
		}
		out = append(out, p)
	}
	return out
}

// pick returns the normalized prefixes of direction dir and family (v6 or not).
func pick(sel []selected, dir ipranges.Direction, v6 bool) []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range sel {
		if s.p.Direction == dir && s.cidr.Addr().Is6() == v6 {
			ps = append(ps, s.cidr)
		}
	}
	return normalize(ps)
}

func directionsOf(opts Options) []ipranges.Direction {
	if opts.Direction != "" {
		return []ipranges.Direction{opts.Direction}
	}
	return []ipranges.Direction{ipranges.Ingress, ipranges.Egress}
}

// header writes the comment lines that say what the file holds.
func header(b *bytes.Buffer, doc *ipranges.Document, opts Options, family string) {
	statuses := "active and draining"
	if opts.IncludeAnnounced {
		statuses = "active, draining and announced"
	}
	dirs := "ingress and egress"
	if opts.Direction != "" {
		dirs = string(opts.Direction)
	}
	fmt.Fprintf(b, "# fixedgate ip-ranges, sync_token %s: the %s %s %s prefixes.\n", oneLine(doc.SyncToken), statuses, dirs, family)
	b.WriteString("# Generated by `fixedgate ipranges export`; regenerate it rather than editing it.\n")
	b.WriteString("# ingress: addresses your hosts connect to (the proxy); egress: source addresses fixedgate\n")
	b.WriteString("# connects from (allow them in front of the servers it calls).\n")
}

func writeNFT(b *bytes.Buffer, doc *ipranges.Document, sel []selected, opts Options) {
	b.WriteString("#!/usr/sbin/nft -f\n")
	header(b, doc, opts, "IPv4 and IPv6")
	dirs := directionsOf(opts)
	type set struct {
		name, typ string
		elems     []netip.Prefix
		rule      string
	}
	var sets []set
	for _, d := range dirs {
		for _, v6 := range []bool{false, true} {
			name := opts.SetName + "_" + string(d) + "_v4"
			typ, match, fam := "ipv4_addr", "daddr", "ip"
			if v6 {
				name, typ, fam = opts.SetName+"_"+string(d)+"_v6", "ipv6_addr", "ip6"
			}
			if d == ipranges.Egress {
				match = "saddr"
			}
			rule := fmt.Sprintf("%s %s @%s", fam, match, name)
			sets = append(sets, set{name: name, typ: typ, elems: pick(sel, d, v6), rule: rule})
		}
	}
	fmt.Fprintf(b, "#\n# Load with `nft -f FILE`. It declares the sets in table inet %s (creating what is missing),\n", opts.Table)
	b.WriteString("# then empties and refills them in one transaction: loading a newer export replaces their\n")
	b.WriteString("# contents atomically and leaves every other set, chain and rule of the table alone.\n")
	b.WriteString("# Sets are local to a table: reference them from rules in the same table (export with\n")
	b.WriteString("# --table YOUR_TABLE to put them into your own inet table), for example:\n#\n")
	for _, s := range sets {
		var verdict string
		if strings.Contains(s.rule, "daddr") {
			verdict = "tcp dport 443 accept   # in an output or forward chain"
		} else {
			verdict = "accept                 # in an input or forward chain"
		}
		fmt.Fprintf(b, "#   %-38s %s\n", s.rule, verdict)
	}
	fmt.Fprintf(b, "\ntable inet %s {\n", opts.Table)
	for i, s := range sets {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(b, "\tset %s {\n\t\ttype %s\n\t\tflags interval\n\t}\n", s.name, s.typ)
	}
	b.WriteString("}\n\n")
	for _, s := range sets {
		fmt.Fprintf(b, "flush set inet %s %s\n", opts.Table, s.name)
	}
	for _, s := range sets {
		if len(s.elems) == 0 {
			// nftables refuses an empty element list; the set stays declared and empty.
			fmt.Fprintf(b, "# %s: no prefixes\n", s.name)
			continue
		}
		fmt.Fprintf(b, "add element inet %s %s {\n", opts.Table, s.name)
		for _, p := range s.elems {
			b.WriteByte('\t')
			b.WriteString(p.String())
			b.WriteString(",\n")
		}
		b.WriteString("}\n")
	}
}

func writeIPT(b *bytes.Buffer, doc *ipranges.Document, sel []selected, opts Options, v6 bool) {
	family, tool, other, otherFmt := "IPv4", "iptables", "IPv6", "ip6tables"
	if v6 {
		family, tool, other, otherFmt = "IPv6", "ip6tables", "IPv4", "iptables"
	}
	header(b, doc, opts, family)
	dirs := directionsOf(opts)
	chain := func(d ipranges.Direction) string { return opts.Chain + "-" + strings.ToUpper(string(d)) }
	fmt.Fprintf(b, "#\n# Load with `%s-restore --noflush < FILE`: --noflush replaces only the chains below (each\n", tool)
	fmt.Fprintf(b, "# is emptied and refilled atomically); without it %s-restore empties the whole filter table.\n", tool)
	b.WriteString("# Each chain ACCEPTs its prefixes and returns otherwise, so your own policy decides the rest.\n")
	b.WriteString("# Jump to them from your rules, for example:\n#\n")
	for _, d := range dirs {
		if d == ipranges.Ingress {
			fmt.Fprintf(b, "#   %s -A OUTPUT -p tcp --dport 443 -j %s\n", tool, chain(d))
		} else {
			fmt.Fprintf(b, "#   %s -A INPUT -j %s\n", tool, chain(d))
		}
	}
	n := 0
	for _, s := range sel {
		if s.cidr.Addr().Is6() != v6 {
			n++
		}
	}
	if n > 0 {
		fmt.Fprintf(b, "#\n# %d %s prefixes are not in this file: export them with --format %s.\n", n, other, otherFmt)
	}
	b.WriteString("*filter\n")
	for _, d := range dirs {
		fmt.Fprintf(b, ":%s - [0:0]\n", chain(d))
	}
	for _, d := range dirs {
		flag := "-d"
		if d == ipranges.Egress {
			flag = "-s"
		}
		for _, p := range pick(sel, d, v6) {
			fmt.Fprintf(b, "-A %s %s %s -j ACCEPT\n", chain(d), flag, p)
		}
	}
	b.WriteString("COMMIT\n")
}

// oneLine makes s safe inside a one-line comment.
func oneLine(s string) string {
	if _, err := ipranges.ParseSyncToken(s); err == nil {
		return s
	}
	return strconv.Quote(s)
}
