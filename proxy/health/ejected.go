package health

import (
	"encoding/binary"
	"net/netip"
)

// ejectedSet lets Pick skip the map lookup for fleet members that cannot be ejected: a Bloom-like
// filter holding (at least) every backend ejected now, and the latest end among its ejections.
// Once until has passed, nothing is ejected and Pick needs no filter at all. Snapshots are
// immutable and replaced by compare-and-swap, so readers take no lock.
type ejectedSet struct {
	bits  [4]uint64
	until int64
}

func filterBit(ap netip.AddrPort) (word int, mask uint64) {
	var h uint64
	if a := ap.Addr(); a.Is4() {
		v := a.As4()
		h = uint64(binary.BigEndian.Uint32(v[:]))
	} else {
		v := a.As16()
		h = binary.BigEndian.Uint64(v[:8])*0x9e3779b97f4a7c15 ^ binary.BigEndian.Uint64(v[8:])
	}
	h = (h<<16 ^ uint64(ap.Port())) * 0xbf58476d1ce4e5b9
	return int(h >> 62), 1 << (h >> 56 & 63)
}

func (s *ejectedSet) mayContain(ap netip.AddrPort) bool {
	w, m := filterBit(ap)
	return s.bits[w]&m != 0
}

// addEjected records an ejection of ap until until. It runs after b.until is stored, so a
// concurrent prune either sees the ejection in its scan or fails its compare-and-swap.
func (t *Tracker) addEjected(ap netip.AddrPort, now, until int64) {
	w, m := filterBit(ap)
	for {
		old := t.ejected.Load()
		next := &ejectedSet{until: until}
		if old.until > now { // some ejections may still run: keep them
			next.bits, next.until = old.bits, max(old.until, until)
		}
		next.bits[w] |= m
		if t.ejected.CompareAndSwap(old, next) {
			return
		}
	}
}

// pruneEjected rebuilds the filter from the backends ejected now, dropping ended ejections that
// would otherwise cost Pick needless lookups. t.mu is held.
func (t *Tracker) pruneEjected(now int64) {
	for {
		old := t.ejected.Load()
		if old.until <= now {
			return
		}
		next := &ejectedSet{}
		for ap, b := range t.backends {
			if u := b.until.Load(); u > now {
				w, m := filterBit(ap)
				next.bits[w] |= m
				next.until = max(next.until, u)
			}
		}
		if t.ejected.CompareAndSwap(old, next) {
			return
		}
	}
}
