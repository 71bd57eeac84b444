package resolver

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// view is what the warm path serves for a name: immutable once published.
type view struct {
	addrs      []netip.Addr // shared with callers; nil when err is set
	err        error        // cached NXDOMAIN, NODATA or failure
	freshUntil int64        // after this, addrs are served stale (DNS failing)
	validUntil int64        // after this, the view must not be served
}

// entry is one cached name. Times are nanoseconds since Resolver.epoch.
type entry struct {
	name     string
	view     atomic.Pointer[view]
	lastUsed atomic.Int64
	evicted  atomic.Bool

	mu          sync.Mutex
	addrs       map[netip.Addr]int64 // address → expiry
	fleet       []netip.Addr         // addrs sorted, IPv4 first; replaced, never modified
	nextRefresh int64                // 0: no background refresh
	refreshing  bool
	negUntil    int64
	negErr      error
	answers     int  // successful answers so far
	failing     bool // the last lookup failed; addresses get stale_if_error grace
	failures    int
	lastErr     error

	// Owned by the scheduler.
	heapIdx  int
	due      int64
	notified []netip.Addr
	reported bool
	bumped   int64
	queued   bool // guarded by Resolver.dirtyMu
}

func newEntry(name string) *entry {
	return &entry{name: name, addrs: map[netip.Addr]int64{}, heapIdx: -1}
}

func addSat(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

func (s *settings) clampTTL(ttl uint32) time.Duration {
	return min(max(time.Duration(ttl)*time.Second, s.cfg.MinTTL), s.cfg.MaxTTL)
}

// backoff is the wait before retry n (1-based) of a failing name: min_ttl/4, doubling, capped
// at 30s (or at the first wait if that is longer).
func (s *settings) backoff(n int) time.Duration {
	d := max(s.cfg.MinTTL/4, minInterval)
	limit := max(maxBackoff, d)
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

func (s *settings) grace(e *entry) int64 {
	if e.failing {
		return int64(s.cfg.StaleIfError)
	}
	return 0
}

// prune drops the addresses whose expiry (plus grace while failing) has passed and rebuilds
// the fleet snapshot if the set changed. e.mu is held.
func (s *settings) prune(e *entry, now int64, changed bool) {
	g := s.grace(e)
	for a, exp := range e.addrs {
		if addSat(exp, g) <= now {
			delete(e.addrs, a)
			changed = true
		}
	}
	if !changed {
		return
	}
	if len(e.addrs) == 0 {
		e.fleet = nil
		return
	}
	fleet := make([]netip.Addr, 0, len(e.addrs))
	for a := range e.addrs {
		fleet = append(fleet, a)
	}
	slices.SortFunc(fleet, netip.Addr.Compare) // by bit length first: IPv4 before IPv6
	e.fleet = fleet
}

// build returns the view for e's state at now (nil: nothing to serve). e.mu is held.
func (s *settings) build(e *entry, now int64) *view {
	switch {
	case len(e.fleet) > 0:
		g := s.grace(e)
		v := &view{addrs: e.fleet, freshUntil: math.MaxInt64, validUntil: math.MaxInt64}
		for _, exp := range e.addrs {
			v.freshUntil = min(v.freshUntil, exp)
			v.validUntil = min(v.validUntil, addSat(exp, g))
		}
		return v
	case e.negUntil > now:
		return &view{err: e.negErr, validUntil: e.negUntil}
	case e.failing:
		return &view{err: e.lastErr, validUntil: max(e.nextRefresh, now+1)}
	}
	return nil
}

// apply folds one lookup's answer into e under settings s, publishes e's new view and returns
// it.
func (r *Resolver) apply(s *settings, e *entry, ans answer, now int64) *view {
	e.mu.Lock()
	defer e.mu.Unlock()
	hadFleet := len(e.fleet)
	switch {
	case ans.err == nil && !ans.nx:
		// Addresses absent from this answer keep their own expiry: the fleet is the union.
		e.failing, e.failures, e.lastErr = false, 0, nil
		e.negUntil, e.negErr = 0, nil
		shortest := time.Duration(math.MaxInt64)
		changed := false
		answered := make(map[netip.Addr]struct{}, len(ans.addrs))
		for _, seen := range ans.addrs {
			ttl := s.clampTTL(seen.ttl)
			shortest = min(shortest, ttl)
			if _, ok := e.addrs[seen.addr]; !ok {
				changed = true
			}
			e.addrs[seen.addr] = now + int64(ttl)
			answered[seen.addr] = struct{}{}
		}
		s.prune(e, now, changed)
		if len(e.addrs) == 0 { // NODATA and nothing left from earlier answers
			e.negUntil = now + int64(s.negativeTTL(ans))
			e.negErr = fmt.Errorf("resolve %s: %w (no A or AAAA records)", e.name, ErrNotFound)
			e.nextRefresh = 0
			break
		}
		e.answers++
		interval := time.Duration(float64(shortest) * refreshShare)
		// After a partial answer (the server rotates subsets) the name is sampled every min_ttl,
		// or every quarter TTL if that is sooner, so that the union holds at least four answers'
		// worth of subsets within a TTL. A name's first answers are sampled the same way: that
		// is how a rotating server is noticed.
		if len(e.addrs) > len(answered) || e.answers <= probeAnswers {
			interval = min(interval, s.cfg.MinTTL, shortest/4)
		}
		e.nextRefresh = now + int64(max(interval, minInterval))
	case ans.nx:
		clear(e.addrs)
		s.prune(e, now, hadFleet > 0)
		e.failing, e.failures, e.lastErr = false, 0, nil
		e.negUntil = now + int64(s.negativeTTL(ans))
		e.negErr = fmt.Errorf("resolve %s: %w", e.name, ErrNotFound)
		e.nextRefresh = 0
		if hadFleet > 0 {
			r.log.Info("dns: NXDOMAIN, fleet dropped", zap.String("name", e.name), zap.Int("fleet_size", 0))
		}
	default:
		e.failing = true
		e.failures++
		e.lastErr = fmt.Errorf("resolve %s: %w", e.name, ans.err)
		e.nextRefresh = now + int64(s.backoff(e.failures))
		s.prune(e, now, false)
		if len(e.fleet) > 0 {
			r.log.Warn("dns: lookup failed, serving the last good fleet",
				zap.String("name", e.name), zap.Error(ans.err), zap.Int("fleet_size", len(e.fleet)),
				zap.Duration("retry_in", s.backoff(e.failures)))
		} else if hadFleet > 0 {
			r.log.Warn("dns: lookup failed and stale_if_error has run out; lookups fail",
				zap.String("name", e.name), zap.Error(ans.err))
		}
	}
	v := s.build(e, now)
	e.view.Store(v)
	if v == nil { // cannot happen after apply; keep callers simple
		v = &view{err: fmt.Errorf("resolve %s: %w", e.name, ErrNotFound)}
	}
	return v
}

// negativeTTL is how long an NXDOMAIN or NODATA answer is cached.
func (s *settings) negativeTTL(ans answer) time.Duration {
	if !ans.hasSOA {
		return s.cfg.MinTTL
	}
	return s.clampTTL(ans.negTTL)
}
