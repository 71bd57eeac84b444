// Package health decides which backend of a fleet a request goes to, and keeps backends that fail
// out of the way: passive outlier detection with hysteresis, as DESIGN.md asks after the incident
// where a flapping link was "preferred while up".
//
// The model, per backend (an IP and port; a Tracker is shared by every route and door):
//
//   - Outcomes of real requests are the only signal (passive: no probes). Connection-level
//     failures (connect, TLS handshake, reset before any response byte, timeout) always count;
//     5xx responses count only when outlier.consecutive_5xx is set.
//   - Two criteria eject: N consecutive failures (a dead backend), and a failure rate over the last
//     K attempts (a flapping one, which connects, serves a few requests, drops a few, and so never
//     fails N times in a row).
//   - The n-th ejection within flap_window of the previous one lasts n × base_ejection, capped at
//     max_ejection; each whole flap_window without an ejection halves n.
//   - A backend whose ejection ends returns on probation: its first failure ejects it again at once
//     (with the next, longer duration); probation_successes successes end the probation.
//   - Pick never avoids more than max_ejected_percent of the fleet it is given: beyond the cap, the
//     ejected backends that failed least recently are used again. If every candidate is ejected,
//     the least recently failed one is returned: a non-empty fleet always yields a backend.
//   - Among usable backends Pick uses power of two choices on in-flight requests, which spreads
//     load without herding onto the backend that looked best a moment ago.
//
// State is created on a backend's first attempt and forgotten after max(max_ejection,
// flap_window) without one, so a churning fleet does not grow it forever. Retries are limited
// separately by a Budget, so that failures do not multiply load on a fleet that is already
// struggling. One request through a door:
//
//	budget.Request()
//	var tried []netip.AddrPort
//	for {
//		addr, ok := tracker.Pick(fleet, port, tried)
//		if !ok {
//			break // 502
//		}
//		attempt := tracker.Start(addr)
//		outcome := forward(addr) // Success, ConnectFailure, Reset, Timeout, Status5xx or Canceled
//		attempt.Done(outcome)
//		if outcome == Success || !safeToRetry || !budget.TryRetry() {
//			break
//		}
//		tried = append(tried, addr)
//	}
package health

import (
	"math/bits"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Outcome is the result of one attempt to one backend, as reported to Attempt.Done.
type Outcome uint8

const (
	// Success: a response came back (any status when 5xx counting is off, non-5xx otherwise).
	Success Outcome = iota
	// ConnectFailure: the dial or the TLS handshake to the backend failed.
	ConnectFailure
	// Reset: the connection died before the first response byte.
	Reset
	// Timeout: the backend did not answer in time; it counts as a failure.
	Timeout
	// Status5xx: the backend answered with a 5xx status. It counts toward consecutive_5xx when
	// that is set, and is a success otherwise (the link works; the application failed).
	Status5xx
	// Canceled: the client gave up; the attempt says nothing about the backend.
	Canceled
)

// String names the outcome for logs.
func (o Outcome) String() string {
	switch o {
	case Success:
		return "success"
	case ConnectFailure:
		return "connect_failure"
	case Reset:
		return "reset"
	case Timeout:
		return "timeout"
	case Status5xx:
		return "5xx"
	case Canceled:
		return "canceled"
	}
	return "unknown"
}

// Options are a Tracker's collaborators; every field is optional.
type Options struct {
	Now        func() time.Time      // clock; nil: time.Now
	Registerer prometheus.Registerer // nil: metrics are kept but not registered
	Logger     *zap.Logger           // nil: no logs
}

// Tracker holds the health of every backend the process talks to. It is safe for concurrent use;
// Pick, Start and Done take no exclusive lock except when a backend is seen for the first time.
// SetConfig changes its settings while it runs.
type Tracker struct {
	policy  atomic.Pointer[policy] // replaced by SetConfig; never nil
	setMu   sync.Mutex             // serialises SetConfig
	now     func() time.Time
	epoch   time.Time
	log     *zap.Logger
	metrics *metrics

	mu       sync.RWMutex
	backends map[netip.AddrPort]*backend

	ejected   atomic.Pointer[ejectedSet]
	lastSweep atomic.Int64
}

// backend is one address's state. Times are nanoseconds since Tracker.epoch; 0 means never.
// Pick reads only the atomics; the counters behind mu change only in Done.
type backend struct {
	addr        netip.AddrPort
	inflight    atomic.Int64
	until       atomic.Int64 // ejected while now < until
	lastFailure atomic.Int64
	lastUsed    atomic.Int64
	ejections   atomic.Int64 // the multiplier n
	reason      atomic.Uint32

	mu              sync.Mutex
	consecutive     int
	consecutive5xx  int
	window          uint64 // last FailureRateWindow attempts, newest in bit 0, 1 = failure
	samples         int    // attempts in window; record keeps both within the window it applies
	probation       bool
	successes       int // on probation
	lastEjectionEnd int64
	returnPending   bool // ejected, and the return has not been logged yet
}

// New returns a Tracker for cfg. The zero Config means Defaults(); any other cfg must pass
// Validate (New panics otherwise: the configuration is checked when it is loaded).
func New(cfg Config, opts Options) *Tracker {
	if cfg == (Config{}) {
		cfg = Defaults()
	}
	if err := cfg.Validate(); err != nil {
		panic("health.New: " + err.Error())
	}
	t := &Tracker{
		now:      opts.Now,
		log:      opts.Logger,
		backends: make(map[netip.AddrPort]*backend),
	}
	if t.now == nil {
		t.now = time.Now
	}
	if t.log == nil {
		t.log = zap.NewNop()
	}
	t.epoch = t.now()
	t.policy.Store(newPolicy(cfg.Outlier))
	t.ejected.Store(&ejectedSet{})
	t.metrics = newMetrics(opts.Registerer, t)
	return t
}

func (t *Tracker) nanos() int64 { return int64(t.now().Sub(t.epoch)) }

func (t *Tracker) time(n int64) time.Time { return t.epoch.Add(time.Duration(n)) }

// Attempt is one request in flight to one backend, from Start to Done. It is a small value: keep
// it, and call Done exactly once. The zero Attempt's Done does nothing.
type Attempt struct {
	t *Tracker
	b *backend
}

// Start records a request to addr as in flight (Pick prefers backends with fewer) and returns the
// handle through which its outcome is reported.
func (t *Tracker) Start(addr netip.AddrPort) Attempt {
	t.mu.RLock()
	b := t.backends[addr]
	if b != nil {
		b.inflight.Add(1) // under the read lock, so that a sweep cannot drop b in between
	}
	t.mu.RUnlock()
	if b == nil {
		t.mu.Lock()
		if b = t.backends[addr]; b == nil {
			b = &backend{addr: addr}
			b.lastUsed.Store(t.nanos())
			t.backends[addr] = b
		}
		b.inflight.Add(1)
		t.mu.Unlock()
	}
	return Attempt{t: t, b: b}
}

// Done ends the attempt and records its outcome, which may eject the backend.
func (a Attempt) Done(o Outcome) {
	if a.b == nil {
		return
	}
	t, b := a.t, a.b
	now := t.nanos()
	b.lastUsed.Store(now) // before the decrement: a sweep must not see it idle and stale
	b.inflight.Add(-1)
	p := t.policy.Load()
	if o != Canceled {
		if ev := t.record(p, b, o, now); ev.ejected || ev.returned {
			t.report(a.b, ev)
		}
	}
	t.maybeSweep(p, now)
}

// event is what record decided, logged after the backend's lock is released.
type event struct {
	returned  bool // first outcome after an ejection ended
	ejected   bool
	reason    reason
	probation bool
	duration  int64
	count     int64
	until     int64
}

// record applies one outcome to b under policy p. It masks b's failure-rate window and clamps
// its samples to p's window, so a window shrunk by SetConfig keeps only its newest attempts.
func (t *Tracker) record(p *policy, b *backend, o Outcome, now int64) event {
	failure := o == ConnectFailure || o == Reset || o == Timeout
	fail5xx := o == Status5xx && p.Consecutive5xx > 0
	if failure || fail5xx {
		b.lastFailure.Store(now)
	}
	var ev event
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.until.Load() > now {
		// Ejected: this is a straggler, or traffic sent by the cap or the last-resort fallback.
		// It refreshes lastFailure (which decides who the fallback uses) and nothing else.
		return ev
	}
	if b.returnPending {
		b.returnPending = false
		ev.returned, ev.count = true, b.ejections.Load()
	}
	b.window = (b.window<<1)&p.windowMask | boolBit(failure || fail5xx)
	b.samples = min(b.samples+1, p.FailureRateWindow)
	var why reason
	switch {
	case failure:
		b.consecutive++
		why = p.criterion(b, reasonConsecutive, b.consecutive, p.ConsecutiveFailures)
	case fail5xx:
		b.consecutive = 0
		b.consecutive5xx++
		why = p.criterion(b, reason5xx, b.consecutive5xx, p.Consecutive5xx)
	default:
		b.consecutive, b.consecutive5xx = 0, 0
		if b.probation {
			if b.successes++; b.successes >= p.ProbationSuccesses {
				b.probation = false
			}
		}
	}
	if why != reasonNone {
		ev.ejected, ev.reason, ev.probation = true, why, b.probation
		ev.count, ev.duration, ev.until = t.eject(p, b, now, why)
	}
	return ev
}

// criterion says whether a failure of kind consec, now at run in a row with threshold limit, ejects b.
func (p *policy) criterion(b *backend, consec reason, run, limit int) reason {
	switch {
	case b.probation:
		return consec
	case limit > 0 && run >= limit:
		return consec
	case p.FailureRatePercent > 0 && b.samples >= p.FailureRateMinRequests &&
		bits.OnesCount64(b.window)*100 >= p.FailureRatePercent*b.samples:
		return reasonFailureRate
	}
	return reasonNone
}

// eject starts an ejection of b under policy p; b.mu is held.
func (t *Tracker) eject(p *policy, b *backend, now int64, why reason) (n, d, until int64) {
	n = b.ejections.Load()
	if b.lastEjectionEnd > 0 {
		for quiet := now - b.lastEjectionEnd; quiet > p.flap && n > 0; quiet -= p.flap {
			n /= 2
		}
	}
	n = min(n+1, p.maxN)
	d = min(p.base*n, p.max)
	until = now + d
	b.ejections.Store(n)
	b.reason.Store(uint32(why))
	b.until.Store(until)
	b.lastEjectionEnd = until
	b.probation = true
	b.successes, b.consecutive, b.consecutive5xx, b.window, b.samples = 0, 0, 0, 0, 0
	b.returnPending = true
	t.addEjected(b.addr, now, until)
	return n, d, until
}

func (t *Tracker) report(b *backend, ev event) {
	addr := b.addr
	if ev.returned {
		t.log.Info("backend returned from ejection, on probation",
			zap.Stringer("backend", addr), zap.Int64("count", ev.count))
	}
	if ev.ejected {
		t.metrics.ejections[ev.reason].Inc()
		t.log.Warn("backend ejected",
			zap.Stringer("backend", addr), zap.String("reason", ev.reason.String()),
			zap.Float64("ejection_s", time.Duration(ev.duration).Seconds()), zap.Int64("count", ev.count),
			zap.Bool("probation", ev.probation), zap.Time("until", t.time(ev.until)))
	}
}

// maybeSweep forgets backends idle for longer than max(max_ejection, flap_window), at most once
// per sweepEvery, so that a churning fleet does not grow the map forever.
func (t *Tracker) maybeSweep(p *policy, now int64) {
	last := t.lastSweep.Load()
	if now-last < p.sweepEvery || !t.lastSweep.CompareAndSwap(last, now) {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for ap, b := range t.backends {
		if b.inflight.Load() == 0 && now-b.lastUsed.Load() > p.keep && b.until.Load() <= now {
			delete(t.backends, ap)
		}
	}
	t.pruneEjected(now)
}

// Healthy returns how many of fleet (at port) are not ejected now; /readyz wants at least one per
// route. It counts ejections as recorded, before Pick's max_ejected_percent cap.
func (t *Tracker) Healthy(fleet []netip.Addr, port uint16) int {
	now := t.nanos()
	n := 0
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, a := range fleet {
		if b := t.backends[netip.AddrPortFrom(a, port)]; b == nil || b.until.Load() <= now {
			n++
		}
	}
	return n
}

// EjectedBackend describes one ejected backend, for logs, /readyz details and the demo.
type EjectedBackend struct {
	Addr   netip.AddrPort
	Until  time.Time
	Count  int    // the multiplier n: this ejection lasts n × base_ejection (capped); grows with each flap
	Reason string // consecutive, failure_rate or 5xx
}

// Ejected lists the backends ejected now, ordered by address.
func (t *Tracker) Ejected() []EjectedBackend {
	now := t.nanos()
	var out []EjectedBackend
	t.mu.RLock()
	for ap, b := range t.backends {
		if u := b.until.Load(); u > now {
			out = append(out, EjectedBackend{Addr: ap, Until: t.time(u), Count: int(b.ejections.Load()),
				Reason: reason(b.reason.Load()).String()})
		}
	}
	t.mu.RUnlock()
	slices.SortFunc(out, func(x, y EjectedBackend) int { return x.Addr.Compare(y.Addr) })
	return out
}

func boolBit(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

func (t *Tracker) ejectedCount() int {
	now := t.nanos()
	n := 0
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, b := range t.backends {
		if b.until.Load() > now {
			n++
		}
	}
	return n
}
