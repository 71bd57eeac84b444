// Package resolver turns target names into IP addresses for both doors. It is the fleet resolver
// of DESIGN.md: it asks DNS itself (A and AAAA, EDNS0, TCP when an answer is truncated), treats
// a name's fleet as the union of the addresses seen within their own TTLs, refreshes names in use
// in the background so that requests never wait on DNS once a name is warm, and serves the last
// good fleet for a while when DNS fails.
//
// Timing rules (all durations come from Config):
//
//   - Every address carries its own expiry: the time it was last seen in an answer plus its TTL
//     clamped to [min_ttl, max_ttl]. The fleet is every address whose expiry has not passed.
//   - A name is in use while it was looked up within the last 2×max_ttl. Names in use are
//     refreshed at 75% of the shortest TTL of the last answer, so the refresh lands before the
//     addresses it renews expire. After a name's first two answers, and whenever an answer did
//     not hold the whole fleet (a server that rotates subsets), the next refresh comes sooner:
//     after min_ttl or a quarter of the TTL, whichever is shorter, so that the union collects
//     every subset seen within a TTL even when the TTL is as short as min_ttl. A name is thus
//     asked at most about four times per min_ttl, and only while its answers are partial.
//     Names out of use are evicted.
//   - A refresh that fails (SERVFAIL, REFUSED, timeout, network error) keeps the fleet: each
//     address then stays up to stale_if_error past its expiry. Failed lookups are retried after
//     min_ttl/4, doubling up to 30s; a name with nothing left to serve returns its last error
//     until the next retry. NXDOMAIN drops the fleet at once. NXDOMAIN, and NODATA for a name
//     with no fleet, are cached for the SOA minimum clamped to [min_ttl, max_ttl] (min_ttl
//     without an SOA).
//   - The warm path reads a coarse clock that a ticker advances every 20ms, so expiries are
//     honoured to within 20ms.
//
// Names are absolute: no search domains, no /etc/hosts. IP literals are returned as they are.
package resolver

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
)

// Config is the `resolver:` section of the configuration.
type Config struct {
	Servers      []string      `yaml:"servers"` // host:port or IP (port 53); empty: /etc/resolv.conf
	MinTTL       time.Duration `yaml:"min_ttl"`
	MaxTTL       time.Duration `yaml:"max_ttl"`
	StaleIfError time.Duration `yaml:"stale_if_error"`
	CacheSize    int           `yaml:"cache_size"`
	Timeout      time.Duration `yaml:"timeout"` // one lookup, all servers and retries
}

// Defaults returns the documented defaults.
func Defaults() Config {
	return Config{MinTTL: 5 * time.Second, MaxTTL: 5 * time.Minute, StaleIfError: 10 * time.Minute, CacheSize: 4096, Timeout: 5 * time.Second}
}

// Validate checks the section; messages are relative to `resolver:`.
func (c Config) Validate() error {
	for i, s := range c.Servers {
		if _, err := serverAddr(s); err != nil {
			return fmt.Errorf("servers[%d]: %w", i, err)
		}
	}
	switch {
	case c.MinTTL <= 0:
		return fmt.Errorf("min_ttl: must be positive")
	case c.MinTTL > c.MaxTTL:
		return fmt.Errorf("min_ttl: %s is above max_ttl %s", c.MinTTL, c.MaxTTL)
	case c.StaleIfError < 0:
		return fmt.Errorf("stale_if_error: must not be negative")
	case c.CacheSize < 1:
		return fmt.Errorf("cache_size: %d, must be at least 1", c.CacheSize)
	case c.Timeout <= 0:
		return fmt.Errorf("timeout: must be positive")
	}
	return nil
}

func serverAddr(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not an IP or IP:port", s)
	}
	return netip.AddrPortFrom(a, 53), nil
}

// ErrNotFound is returned (wrapped) for names that do not exist (NXDOMAIN) or have no A or AAAA
// records (NODATA).
var ErrNotFound = errors.New("no such host")

// errClosed is returned for names that are not cached once the resolver is closed.
var errClosed = errors.New("resolver closed")

// Options are the optional collaborators of a Resolver.
type Options struct {
	// OnChange, if set, is called whenever a name's fleet gains or loses addresses (including
	// its first fill, and an NXDOMAIN that empties it), with the name in lower case without a
	// trailing dot and the new fleet, which must not be modified. It lets the proxy close pooled
	// connections to addresses that left. It runs on the resolver's background goroutine, never
	// under a lock, one call at a time; it must return quickly and must not call Close.
	OnChange func(host string, fleet []netip.Addr)
	// Registerer, if set, receives the fixedgate_dns_* metrics.
	Registerer prometheus.Registerer
	// Logger receives query, fleet-change and stale warnings; nil discards them.
	Logger *zap.Logger
	// Now replaces the clock, for tests. With it the warm path calls Now on every lookup.
	Now func() time.Time
}

// Resolver looks up A and AAAA records and keeps a TTL-aware fleet per name. It is safe for
// concurrent use; SetConfig changes its settings while it runs, and Close stops its background
// work.
type Resolver struct {
	set   atomic.Pointer[settings] // replaced by SetConfig; never nil
	setMu sync.Mutex               // serialises SetConfig
	opts  Options
	log   *zap.Logger
	cache *lru.Cache[string, *entry]
	sf    singleflight.Group
	met   *metrics

	epoch  time.Time
	coarse atomic.Int64 // r.elapsed() as of the last tick; math.MaxInt64 once closed

	ctx    context.Context // cancelled by Close; parent of every exchange
	cancel context.CancelFunc
	life   sync.Mutex // guards closed and wg.Add against Close
	closed bool
	wg     sync.WaitGroup
	sem    chan struct{} // bounds concurrent background refreshes

	manual  bool          // tests: no background goroutines; step() does their work
	kick    chan struct{} // wakes the scheduler
	dirtyMu sync.Mutex
	dirty   []*entry // entries whose schedule or fleet changed, for the scheduler
	sched   schedHeap
	refWG   sync.WaitGroup // background refreshes in flight (step waits for them)
}

const (
	ednsSize       = 1232
	clockTick      = 20 * time.Millisecond
	refreshShare   = 0.75
	probeAnswers   = 2 // answers after which refreshes come at min_ttl whatever the TTL
	minInterval    = 10 * time.Millisecond
	maxBackoff     = 30 * time.Second
	maxRefreshes   = 64
	resolvConfPath = "/etc/resolv.conf"
	fallbackServer = "127.0.0.1:53"
)

// resolvConf is the file read when Config.Servers is empty; tests point it elsewhere.
var resolvConf = resolvConfPath

// New returns a Resolver for cfg with no hooks, metrics or logs; see NewWithOptions.
func New(cfg Config) (*Resolver, error) { return NewWithOptions(cfg, Options{}) }

// NewWithOptions returns a Resolver for cfg and starts its background goroutines, which Close
// stops.
func NewWithOptions(cfg Config, opts Options) (*Resolver, error) {
	return newResolver(cfg, opts, false)
}

func newResolver(cfg Config, opts Options, manual bool) (*Resolver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Resolver{
		opts:   opts,
		log:    opts.Logger,
		sem:    make(chan struct{}, maxRefreshes),
		manual: manual,
		kick:   make(chan struct{}, 1),
	}
	if r.log == nil {
		r.log = zap.NewNop()
	}
	if opts.Now != nil {
		r.epoch = opts.Now()
	} else {
		r.epoch = time.Now()
	}
	s := newSettings(cfg)
	r.set.Store(s)
	r.warnFallback(s)
	var err error
	r.cache, err = lru.NewWithEvict(cfg.CacheSize, r.onEvict)
	if err != nil {
		return nil, err
	}
	r.met = newMetrics()
	if opts.Registerer != nil {
		if err := r.met.register(opts.Registerer); err != nil {
			return nil, fmt.Errorf("resolver metrics: %w", err)
		}
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	if !manual {
		r.wg.Add(2)
		go r.tick()
		go r.run()
	}
	return r, nil
}

func servers(cfg []string) (list []string, note string) {
	for _, s := range cfg {
		ap, _ := serverAddr(s)
		list = append(list, ap.String())
	}
	if len(list) > 0 {
		return list, ""
	}
	cc, err := dns.ClientConfigFromFile(resolvConf)
	switch {
	case err != nil:
		return []string{fallbackServer}, err.Error()
	case len(cc.Servers) == 0:
		return []string{fallbackServer}, "no nameserver lines"
	}
	port := cc.Port
	if port == "" {
		port = "53"
	}
	for _, s := range cc.Servers {
		if a, err := netip.ParseAddr(s); err == nil {
			list = append(list, net.JoinHostPort(a.String(), port))
		}
	}
	if len(list) == 0 {
		return []string{fallbackServer}, "no nameserver line holds an IP address"
	}
	return list, ""
}

// Close stops the background refreshes, timers and clock and waits for them. Names already
// cached are still served afterwards (they are no longer refreshed); other lookups fail.
func (r *Resolver) Close() error {
	r.life.Lock()
	if r.closed {
		r.life.Unlock()
		return nil
	}
	r.closed = true
	r.life.Unlock()
	r.cancel()
	r.wg.Wait()
	r.coarse.Store(math.MaxInt64) // the warm path now always takes the slow path's exact clock
	return nil
}

// track registers one unit of background work unless the resolver is closed.
func (r *Resolver) track() bool {
	r.life.Lock()
	defer r.life.Unlock()
	if r.closed {
		return false
	}
	r.wg.Add(1)
	return true
}

// elapsed is the exact time since r.epoch in nanoseconds.
func (r *Resolver) elapsed() int64 {
	if r.opts.Now != nil {
		return int64(r.opts.Now().Sub(r.epoch))
	}
	return int64(time.Since(r.epoch))
}

// LookupNetIP returns the addresses of host, IPv4 first then IPv6, each family in ascending
// order. Names are case-insensitive and a trailing dot is optional. The slice is shared with
// other callers and must not be modified. Failures wrap ErrNotFound (the name has no addresses)
// or the DNS error; a DNS timeout satisfies net.Error.Timeout or context.DeadlineExceeded.
func (r *Resolver) LookupNetIP(ctx context.Context, host string) ([]netip.Addr, error) {
	name := canonical(host)
	if e, ok := r.cache.Peek(name); ok {
		var now int64
		if r.opts.Now != nil {
			now = r.elapsed()
		} else {
			now = r.coarse.Load()
		}
		if e.lastUsed.Load() < now {
			e.lastUsed.Store(now)
		}
		if v := e.view.Load(); v != nil && now < v.validUntil {
			return r.serve(v, now)
		}
	}
	return r.lookupSlow(ctx, name)
}

// serve answers from a view that is valid at now and counts the outcome.
func (r *Resolver) serve(v *view, now int64) ([]netip.Addr, error) {
	switch {
	case v.err != nil:
		r.met.cache[cacheNegative].Add(1)
		return nil, v.err
	case now >= v.freshUntil:
		r.met.cache[cacheStale].Add(1)
	default:
		r.met.cache[cacheHit].Add(1)
	}
	return v.addrs, nil
}

// canonical lower-cases host and drops one trailing dot, allocating only for upper case.
func canonical(host string) string {
	if n := len(host); n > 1 && host[n-1] == '.' {
		host = host[:n-1]
	}
	for i := 0; i < len(host); i++ {
		if c := host[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(host)
		}
	}
	return host
}

// lookupSlow handles names that are not cached or whose cached view has expired: it waits for
// one shared DNS lookup of the name.
func (r *Resolver) lookupSlow(ctx context.Context, name string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(name); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	if _, ok := dns.IsDomainName(name); !ok || name == "" || name == "." {
		return nil, fmt.Errorf("resolve %q: not a valid host name", name)
	}
	e := newEntry(name)
	if prev, ok, _ := r.cache.PeekOrAdd(name, e); ok {
		e = prev
	}
	if e.evicted.Load() { // evicted between PeekOrAdd and here: resolve into a private entry
		e = newEntry(name)
		e.evicted.Store(true)
	}
	now := r.elapsed()
	if e.lastUsed.Load() < now {
		e.lastUsed.Store(now)
	}
	if v := e.view.Load(); v != nil && now < v.validUntil {
		return r.serve(v, now)
	}
	if v := r.revalidate(r.set.Load(), e, now); v != nil {
		return r.serve(v, now)
	}
	r.met.cache[cacheMiss].Add(1)
	ch := r.sf.DoChan(name, func() (any, error) {
		if !r.track() {
			return nil, fmt.Errorf("resolve %s: %w", name, errClosed)
		}
		defer r.wg.Done()
		if v := e.view.Load(); v != nil && r.elapsed() < v.validUntil {
			return v, nil // a lookup that finished just before this one started
		}
		return r.refresh(e), nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		v := res.Val.(*view)
		if v.err != nil {
			return nil, v.err
		}
		return v.addrs, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("resolve %s: %w", name, ctx.Err())
	}
}

// revalidate drops e's expired addresses ahead of the scheduler and returns the view of those
// left, or nil if no address is left to serve.
func (r *Resolver) revalidate(s *settings, e *entry, now int64) *view {
	e.mu.Lock()
	before := e.fleet
	s.prune(e, now, false)
	v := s.build(e, now)
	if v != nil && v.err == nil {
		e.view.Store(v)
	} else {
		v = nil
	}
	changed := !sameSlice(before, e.fleet)
	e.mu.Unlock()
	if changed {
		r.markDirty(e)
	}
	return v
}

// refresh asks DNS for e's name, folds the answer into e and returns e's new view. It uses one
// set of settings throughout, even if SetConfig replaces them meanwhile.
func (r *Resolver) refresh(e *entry) *view {
	s := r.set.Load()
	ctx, cancel := context.WithTimeout(r.ctx, s.cfg.Timeout)
	defer cancel()
	ans := r.query(ctx, s, e.name)
	v := r.apply(s, e, ans, r.elapsed())
	r.markDirty(e)
	return v
}

// Stats are the resolver's counters since it was created, for tests and diagnostics.
type Stats struct {
	Queries   int64 // DNS exchanges sent, UDP and TCP
	TCP       int64 // of which over TCP, after a truncated UDP answer
	Failed    int64 // exchanges that got SERVFAIL, REFUSED, a timeout or another error
	NXDomain  int64 // exchanges answered NXDOMAIN
	Hits      int64 // lookups answered from a fresh fleet
	Stale     int64 // lookups answered from a fleet kept past its TTL because DNS fails
	Negative  int64 // lookups answered with a cached NXDOMAIN, NODATA or failure
	Misses    int64 // lookups that waited for DNS
	Names     int   // names cached now
	Refreshes int64 // background refreshes started
}

// Stats returns the current counters.
func (r *Resolver) Stats() Stats {
	m := r.met
	s := Stats{
		Hits:      m.cache[cacheHit].Load(),
		Stale:     m.cache[cacheStale].Load(),
		Negative:  m.cache[cacheNegative].Load(),
		Misses:    m.cache[cacheMiss].Load(),
		Names:     r.cache.Len(),
		Refreshes: m.refreshes.Load(),
	}
	for t := range m.queries {
		for res := range m.queries[t] {
			n := m.queries[t][res].Load()
			switch result(res) {
			case resOK:
			case resNXDomain:
				s.NXDomain += n
			case resTruncated:
				s.TCP += n
			default:
				s.Failed += n
			}
			s.Queries += n
		}
	}
	return s
}
