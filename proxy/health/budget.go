package health

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// budgetBuckets is how many slices the sliding window is cut into.
const budgetBuckets = 10

// Budget limits retries to a share of requests over a sliding window, so that retrying on another
// backend helps when a few backends fail and does not multiply load when the whole fleet does.
// A floor of minPerSecond × window retries is always available on top of the share, so that a
// route with little traffic can still retry. It is safe for concurrent use and lock-free; under
// concurrency it may overshoot by the number of racing TryRetry calls. A nil *Budget allows every
// retry.
type Budget struct {
	ratio     atomic.Uint64 // math.Float64bits of the share; SetRatio changes it
	reserve   float64
	bucket    int64 // nanoseconds
	now       func() time.Time
	epoch     time.Time
	exhausted prometheus.Counter // nil: not counted

	// Each slot packs the bucket number (high 32 bits) and its count (low 32 bits), so that a
	// slot is moved on to a new bucket and counted in one compare-and-swap.
	requests [budgetBuckets]atomic.Uint64
	retries  [budgetBuckets]atomic.Uint64
}

// NewBudget returns a Budget allowing retries up to ratio × requests over window, plus
// minPerSecond × window. window ≤ 0 means 10s; negative ratio or floor mean 0. It uses the real
// clock and no metrics; Tracker.NewBudget shares the Tracker's clock and metrics.
func NewBudget(ratio float64, minPerSecond int, window time.Duration) *Budget {
	return newBudget(ratio, minPerSecond, window, time.Now, nil)
}

// NewBudget is the package's NewBudget with the Tracker's clock, counting refusals in
// fixedgate_retry_budget_exhausted_total.
func (t *Tracker) NewBudget(ratio float64, minPerSecond int, window time.Duration) *Budget {
	return newBudget(ratio, minPerSecond, window, t.now, t.metrics.budgetExhausted)
}

func newBudget(ratio float64, minPerSecond int, window time.Duration, now func() time.Time, exhausted prometheus.Counter) *Budget {
	if window <= 0 {
		window = 10 * time.Second
	}
	b := &Budget{
		reserve:   float64(max(minPerSecond, 0)) * window.Seconds(),
		bucket:    max(int64(window/budgetBuckets), 1),
		now:       now,
		exhausted: exhausted,
	}
	b.epoch = now()
	b.SetRatio(ratio)
	return b
}

// SetRatio changes the share of requests that may be retried to ratio (negative means 0), for a
// configuration reload. The requests and retries already in the window count against the new
// share; the floor stays. It does nothing on a nil *Budget.
func (b *Budget) SetRatio(ratio float64) {
	if b == nil {
		return
	}
	b.ratio.Store(math.Float64bits(max(ratio, 0)))
}

func (b *Budget) current() uint32 { return uint32(int64(b.now().Sub(b.epoch)) / b.bucket) }

// Request records one client request (not one attempt): it earns ratio of a retry.
func (b *Budget) Request() {
	if b == nil {
		return
	}
	add(&b.requests, b.current())
}

// TryRetry reports whether a retry may be made now (retries in the window, this one included, stay
// within the budget), and if so counts it.
func (b *Budget) TryRetry() bool {
	if b == nil {
		return true
	}
	id := b.current()
	ratio := math.Float64frombits(b.ratio.Load())
	if float64(sum(&b.retries, id)+1) > ratio*float64(sum(&b.requests, id))+b.reserve+1e-9 {
		if b.exhausted != nil {
			b.exhausted.Inc()
		}
		return false
	}
	add(&b.retries, id)
	return true
}

func add(slots *[budgetBuckets]atomic.Uint64, id uint32) {
	s := &slots[id%budgetBuckets]
	for {
		v := s.Load()
		next := uint64(id)<<32 | 1
		if uint32(v>>32) == id {
			next = v + 1
		}
		if s.CompareAndSwap(v, next) {
			return
		}
	}
}

// sum counts the window ending with bucket id.
func sum(slots *[budgetBuckets]atomic.Uint64, id uint32) uint64 {
	var n uint64
	for i := range slots {
		v := slots[i].Load()
		if id-uint32(v>>32) < budgetBuckets {
			n += v & 0xffffffff
		}
	}
	return n
}
