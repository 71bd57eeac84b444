package health

import (
	"cmp"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"slices"
)

// ejectedCand is a fleet member that is ejected now.
type ejectedCand struct {
	b           *backend
	lastFailure int64
	i           int // index in the fleet
	excluded    bool
}

// Pick chooses the backend of fleet (at port) for a request's next attempt. exclude lists the
// backends the request has already tried, so that a retry goes elsewhere.
//
// Among the usable members (not ejected, or readmitted by the max_ejected_percent cap) that are
// not excluded, it takes two at random and returns the one with fewer requests in flight (either on
// a tie). When none is left, it returns the least recently failed member that is not excluded,
// ejected or not: a struggling backend beats a certain 502. ok is false only if every member of
// fleet is excluded (or fleet is empty).
//
// Pick does not count the request as in flight; call Start with the result.
func (t *Tracker) Pick(fleet []netip.Addr, port uint16, exclude []netip.AddrPort) (addr netip.AddrPort, ok bool) {
	n := len(fleet)
	if n == 0 {
		return netip.AddrPort{}, false
	}
	if n == 1 && len(exclude) == 0 {
		// A fleet of one: ejected or not, it is the only choice.
		return netip.AddrPortFrom(fleet[0], port), true
	}
	now := t.nanos()
	set := t.ejected.Load()
	if n >= 2 && len(exclude) == 0 && now >= set.until {
		// Nothing is ejected anywhere: only the two candidates need looking up.
		i, j := pair(n)
		t.mu.RLock()
		defer t.mu.RUnlock()
		return t.better(fleet, port, i, j), true
	}
	return t.pickAvoiding(fleet, port, exclude, now, set)
}

// pickAvoiding is Pick when some member may be ejected or must be avoided. It is a function of
// its own because its scratch arrays make a large stack frame, which the common path above
// should not carry: requests often run on fresh goroutines (one per HTTP/2 stream), whose stacks
// grow by copying.
func (t *Tracker) pickAvoiding(fleet []netip.Addr, port uint16, exclude []netip.AddrPort, now int64, set *ejectedSet) (netip.AddrPort, bool) {
	n := len(fleet)
	// off has bit i set when member i is not to be chosen by P2C: excluded, or ejected (and not
	// readmitted). Only members the filter says may be ejected are looked up.
	var offBuf [4]uint64
	off := offBuf[:]
	if n > 64*len(offBuf) {
		off = make([]uint64, (n+63)/64)
	}
	var ejBuf [16]ejectedCand
	ej := ejBuf[:0]
	filter := now < set.until
	t.mu.RLock()
	defer t.mu.RUnlock()
	for i, a := range fleet {
		ap := netip.AddrPortFrom(a, port)
		excluded := len(exclude) > 0 && slices.Contains(exclude, ap)
		if excluded {
			off[i>>6] |= 1 << (i & 63)
		}
		if filter && set.mayContain(ap) {
			if b := t.backends[ap]; b != nil && b.until.Load() > now {
				ej = append(ej, ejectedCand{b: b, lastFailure: b.lastFailure.Load(), i: i, excluded: excluded})
				off[i>>6] |= 1 << (i & 63)
			}
		}
	}
	if over := len(ej) - n*t.policy.Load().MaxEjectedPercent/100; over > 0 {
		// Readmit the least recently failed, so that no more than the cap is avoided.
		slices.SortFunc(ej, func(x, y ejectedCand) int {
			return cmp.Or(cmp.Compare(x.lastFailure, y.lastFailure), cmp.Compare(x.i, y.i))
		})
		for _, e := range ej[:over] {
			if !e.excluded {
				off[e.i>>6] &^= 1 << (e.i & 63)
			}
		}
	}

	usable := n
	for _, w := range off {
		usable -= bits.OnesCount64(w)
	}
	switch usable {
	case 0:
		// Every member not tried is ejected: the least recently failed, then the least loaded.
		best := -1
		for k := range ej {
			if !ej[k].excluded && (best < 0 || ej[k].lastFailure < ej[best].lastFailure ||
				ej[k].lastFailure == ej[best].lastFailure && ej[k].b.load() < ej[best].b.load()) {
				best = k
			}
		}
		if best < 0 {
			return netip.AddrPort{}, false
		}
		return netip.AddrPortFrom(fleet[ej[best].i], port), true
	case 1:
		return netip.AddrPortFrom(fleet[nthClear(off, 0)], port), true
	}
	i, j := pair(usable)
	return t.better(fleet, port, nthClear(off, i), nthClear(off, j)), true
}

// better returns whichever of members i and j has fewer requests in flight (i on a tie). Probation
// plays no part: preferring trusted backends on a tie would starve a returning one whenever
// traffic is light (every backend idle, every comparison a tie), leaving it on probation and
// unused. Probation's protection is its one-strike rule. t.mu is read-locked.
func (t *Tracker) better(fleet []netip.Addr, port uint16, i, j int) netip.AddrPort {
	a, b := netip.AddrPortFrom(fleet[i], port), netip.AddrPortFrom(fleet[j], port)
	ba, bb := t.backends[a], t.backends[b]
	if bb.load() < ba.load() {
		return b
	}
	return a
}

// nthClear returns the position of the k-th (from 0) clear bit of off.
func nthClear(off []uint64, k int) int {
	for w, x := range off {
		free := ^x
		if c := bits.OnesCount64(free); k >= c {
			k -= c
			continue
		}
		for ; k > 0; k-- {
			free &= free - 1
		}
		return w*64 + bits.TrailingZeros64(free)
	}
	panic("health: nthClear out of range")
}

// load is Pick's load measure: requests in flight; a backend never used (nil) is idle.
func (b *backend) load() int64 {
	if b == nil {
		return 0
	}
	return b.inflight.Load()
}

// pair returns two distinct random indices below n (n ≥ 2).
func pair(n int) (int, int) {
	i := rand.IntN(n)
	j := rand.IntN(n - 1)
	if j >= i {
		j++
	}
	return i, j
}
