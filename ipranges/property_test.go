package ipranges

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestPropertyNoticeAlwaysHonoured runs random sequences of init, announce, retire, prune, save,
// load and clock changes (including small steps backwards) and checks after every step that no
// address is in use before its notice has run (unless it was in the initial set), that
// sync_token never goes back, and that every saved version is valid and a valid successor of
// the previous one. A fixed seed keeps failures reproducible; two random seeds are logged.
func TestPropertyNoticeAlwaysHonoured(t *testing.T) {
	// Durability is TestSaveCrashSafety's subject; here fsync would only cost seconds.
	defer func(orig func(*os.File) error) { syncFile = orig }(syncFile)
	syncFile = func(*os.File) error { return nil }
	// The fixed seed runs 200 sequences; two fresh seeds (logged by the subtest names) add 50 each.
	runs := []struct{ seed, sequences uint64 }{
		{1, 200}, {uint64(time.Now().UnixNano()), 50}, {uint64(time.Now().UnixNano()) ^ 0x9e3779b97f4a7c15, 50},
	}
	const steps = 30
	for _, r := range runs {
		if testing.Short() {
			r.sequences /= 5
		}
		t.Run(fmt.Sprint(r.seed), func(t *testing.T) {
			for i := range r.sequences {
				runSequence(t, r.seed, i, steps)
				if t.Failed() {
					return
				}
			}
		})
	}
}

// The prefixes the sequences draw from: nested and disjoint, both families.
var propPool = []string{
	"10.0.0.0/29", "10.0.0.0/30", "10.0.0.4/30", "10.0.0.0/32", "10.0.0.1/32", "10.0.0.2/32",
	"10.0.0.3/32", "10.0.0.4/32", "10.0.0.5/32", "10.0.0.6/32", "10.0.0.7/32", "10.0.0.8/32",
	"2001:db8::/126", "2001:db8::1/128", "2001:db8::2/128", "2001:db8::4/128",
}

// propAddrs are the addresses checked after every step: every address of the pool.
var propAddrs = func() []netip.Addr {
	var out []netip.Addr
	for i := range 9 {
		out = append(out, netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}))
	}
	for i := range 5 {
		out = append(out, netip.MustParseAddr(fmt.Sprintf("2001:db8::%d", i)))
	}
	return out
}()

func runSequence(t *testing.T, seed, seq uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, seq))
	path := filepath.Join(t.TempDir(), "ip-ranges.json")
	pick := func() netip.Prefix { return netip.MustParsePrefix(propPool[rng.IntN(len(propPool))]) }
	dirOf := func() Direction { return []Direction{Ingress, Egress}[rng.IntN(2)] }

	var (
		doc      *Document // the version on disk, as serve would load it
		initial  = map[prefixKey]bool{}
		now      = stT0.Add(time.Duration(rng.IntN(1000)) * time.Millisecond)
		savedTok int64
		log      []string
		failf    = func(format string, args ...any) {
			t.Helper()
			t.Fatalf("seed %d sequence %d: "+format+"\nsteps:\n%s", append([]any{seed, seq}, append(args, joinLines(log))...)...)
		}
	)
	// update makes one change the way the CLI does (Update: load, change, prune, validate,
	// check against the version in force, save). A refusal by the operation itself is fine; a
	// refusal by the checks after it means an operation produced a version that breaks the
	// contract, which is the bug this test looks for.
	update := func(change func(d *Document) error) error {
		var opErr error
		old, nd, err := Update(path, 0, now, func(d *Document) error {
			opErr = change(d)
			return opErr
		})
		switch {
		case opErr != nil:
			return opErr
		case err != nil:
			failf("an accepted operation did not make a valid successor: %v", err)
		}
		// Independently of Update's own checks: the file holds a valid successor.
		disk, err := Load(path, 0)
		if err != nil {
			failf("reload after update: %v", err)
		}
		if !sameContent(disk, nd) {
			failf("the file differs from the version Update returned")
		}
		if err := CheckSuccessor(old, disk, now); err != nil {
			failf("saved version is not a successor: %v", err)
		}
		tok := mustTok(t, disk)
		if tok < savedTok || (tok == savedTok && !sameContent(old, disk)) {
			failf("saved sync_token %d after %d", tok, savedTok)
		}
		savedTok, doc = tok, disk
		return nil
	}
	for step := range steps {
		var action string
		switch r := rng.IntN(100); {
		case doc == nil:
			action = "init"
			var in, eg []netip.Prefix
			for range 1 + rng.IntN(3) {
				in = append(in, pick())
			}
			for range rng.IntN(3) {
				eg = append(eg, pick())
			}
			d, err := Init(in, eg, InitOptions{Notice: time.Duration(14+rng.IntN(3)) * stDay}, now)
			if err != nil {
				action += " refused: " + err.Error()
				break
			}
			for i := range d.Prefixes {
				initial[keyOf(&d.Prefixes[i])] = true
			}
			if err := Create(path, d); err != nil {
				failf("create: %v", err)
			}
			doc, savedTok = d, mustTok(t, d)
		case r < 35:
			p, dir := pick(), dirOf()
			n := doc.Notice() + time.Duration(rng.IntN(3*24*3600))*time.Second
			switch rng.IntN(10) {
			case 0, 1, 2:
				n = doc.Notice() // the boundary
			case 3:
				n = doc.Notice() - time.Duration(1+rng.IntN(3600))*time.Second // refused
			}
			err := update(func(d *Document) error { return d.Announce(p, dir, n, "", "", now) })
			action = fmt.Sprintf("announce %s %s notice %s: %v", p, dir, n, err)
			if err == nil && n < doc.Notice() {
				failf("announce with notice %s accepted", n)
			}
		case r < 55:
			var p netip.Prefix
			if len(doc.Prefixes) > 0 && rng.IntN(4) > 0 {
				p = doc.Prefixes[rng.IntN(len(doc.Prefixes))].CIDR
			} else {
				p = pick()
			}
			after := []time.Duration{0, time.Hour, 14 * stDay, time.Duration(rng.IntN(40*24)) * time.Hour}[rng.IntN(4)]
			opts := RetireOptions{Force: rng.IntN(5) == 0, Direction: []Direction{"", Ingress, Egress}[rng.IntN(3)]}
			err := update(func(d *Document) error { return d.Retire(p, after, opts, now) })
			action = fmt.Sprintf("retire %s after %s %+v: %v", p, after, opts, err)
		case r < 65:
			n := 0
			update(func(d *Document) error { n = d.Prune(now); return nil })
			action = fmt.Sprintf("prune (and save): %d", n)
		case r < 72:
			action = "load"
			d, err := Load(path, doc.Notice())
			if err != nil {
				failf("load: %v", err)
			}
			if !sameContent(d, doc) {
				failf("loaded version differs from the saved one")
			}
			doc = d
		default:
			var step time.Duration
			switch rng.IntN(5) {
			case 0:
				step = -time.Duration(1+rng.IntN(10_000)) * time.Millisecond
			case 1:
				step = time.Duration(rng.IntN(60_000)) * time.Millisecond
			default:
				step = time.Duration(rng.IntN(10*24*3600)) * time.Second
			}
			now = now.Add(step)
			action = fmt.Sprintf("clock %+v -> %s", step, now.Format(time.RFC3339Nano))
		}
		log = append(log, fmt.Sprintf("%2d %s", step, action))
		if doc == nil {
			continue
		}
		// Status only changes at enabled and retired dates, so checking now and every such date
		// (and the instant before it) checks the property at every point in time.
		instants := []time.Time{now}
		for i := range doc.Prefixes {
			p := &doc.Prefixes[i]
			instants = append(instants, p.Enabled, p.Enabled.Add(-time.Nanosecond))
			if p.Retired != nil {
				instants = append(instants, *p.Retired, p.Retired.Add(-time.Nanosecond))
			}
		}
		for _, at := range instants {
			for _, a := range propAddrs {
				for _, dir := range []Direction{Ingress, Egress} {
					if !doc.InUse(a, dir, at) {
						continue
					}
					p := doc.Lookup(a, dir)
					isInitial := initial[keyOf(p)] && p.Published.Equal(doc.CreatedAt) && p.Enabled.Equal(doc.CreatedAt)
					if !isInitial && at.Before(p.Published.Add(doc.Notice())) {
						failf("%s in use as %s at %s, before published %s + notice %s", a, dir, at, p.Published, doc.Notice())
					}
				}
			}
		}
	}
}

func mustTok(t *testing.T, d *Document) int64 {
	t.Helper()
	n, err := ParseSyncToken(d.SyncToken)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func joinLines(l []string) string {
	var b bytes.Buffer
	for _, s := range l {
		b.WriteString(s)
		b.WriteByte('\n')
	}
	return b.String()
}
