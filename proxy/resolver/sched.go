package resolver

import (
	"container/heap"
	"math"
	"net/netip"
	"time"

	"go.uber.org/zap"
)

// The scheduler is one goroutine that owns a heap of cached names ordered by when each next
// needs attention (a refresh, an address expiring, or the in-use window running out). Other
// goroutines never touch the heap: they queue the entry with markDirty and kick the scheduler,
// which also delivers OnChange calls, so those run outside every lock and in order.

type schedHeap []*entry

func (h schedHeap) Len() int           { return len(h) }
func (h schedHeap) Less(i, j int) bool { return h[i].due < h[j].due }
func (h schedHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *schedHeap) Push(x any) {
	e := x.(*entry)
	e.heapIdx = len(*h)
	*h = append(*h, e)
}
func (h *schedHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.heapIdx = -1
	return e
}

// markDirty asks the scheduler to look at e again (its fleet, schedule or eviction changed).
func (r *Resolver) markDirty(e *entry) {
	r.dirtyMu.Lock()
	if !e.queued {
		e.queued = true
		r.dirty = append(r.dirty, e)
	}
	r.dirtyMu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// onEvict is the LRU's eviction callback (cache full, or an idle name removed).
func (r *Resolver) onEvict(_ string, e *entry) {
	e.evicted.Store(true)
	r.markDirty(e)
}

// tick advances the coarse clock the warm path reads, until Close.
func (r *Resolver) tick() {
	defer r.wg.Done()
	t := time.NewTicker(clockTick)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
			r.coarse.Store(r.elapsed())
		}
	}
}

// run is the scheduler, until Close.
func (r *Resolver) run() {
	defer r.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := r.process(r.elapsed())
		if next < math.MaxInt64 {
			timer.Reset(time.Duration(next - r.elapsed()))
		} else {
			timer.Stop()
		}
		select {
		case <-r.ctx.Done():
			return
		case <-r.kick:
		case <-timer.C:
		}
	}
}

// step does in the caller what the scheduler goroutine would do at the current time, and waits
// for the refreshes it starts. Tests with a manual resolver use it.
func (r *Resolver) step() {
	r.process(r.elapsed())
	r.refWG.Wait()
	r.process(r.elapsed())
}

// process handles queued entries and those due at now, all with one set of settings; it
// returns the next due time.
func (r *Resolver) process(now int64) int64 {
	s := r.set.Load()
	r.dirtyMu.Lock()
	batch := r.dirty
	r.dirty = nil
	for _, e := range batch {
		e.queued = false
	}
	r.dirtyMu.Unlock()
	for _, e := range batch {
		r.settle(s, e)
	}
	for len(r.sched) > 0 && r.sched[0].due <= now {
		r.runDue(s, r.sched[0], now)
	}
	if len(r.sched) == 0 {
		return math.MaxInt64
	}
	return r.sched[0].due
}

// settle reports e's fleet if it changed and puts e back in the schedule.
func (r *Resolver) settle(s *settings, e *entry) {
	if e.evicted.Load() {
		r.drop(e)
		return
	}
	e.mu.Lock()
	fleet, due := e.fleet, s.dueOf(e)
	e.mu.Unlock()
	r.notify(e, fleet)
	r.reschedule(e, due)
}

// runDue evicts e if it is out of use, otherwise drops its expired addresses and starts a
// refresh if one is due.
func (r *Resolver) runDue(s *settings, e *entry, now int64) {
	if e.evicted.Load() {
		r.drop(e)
		return
	}
	last := e.lastUsed.Load()
	if now-last >= int64(s.idle) {
		if cur, ok := r.cache.Peek(e.name); ok && cur == e {
			r.cache.Remove(e.name)
		}
		e.evicted.Store(true)
		r.drop(e)
		r.log.Debug("dns: name out of use, evicted", zap.String("name", e.name))
		return
	}
	if last > e.bumped { // used since the last visit: tell the LRU, which the warm path skips
		r.cache.Get(e.name)
		e.bumped = last
	}
	e.mu.Lock()
	s.prune(e, now, false)
	e.view.Store(s.build(e, now))
	start := e.nextRefresh != 0 && now >= e.nextRefresh && !e.refreshing
	if start {
		e.refreshing = true
	}
	fleet, due := e.fleet, max(s.dueOf(e), now+1) // now's work is done
	e.mu.Unlock()
	r.notify(e, fleet)
	if start {
		r.startRefresh(e)
	}
	r.reschedule(e, due)
}

// dueOf is when e next needs the scheduler. e.mu is held.
func (s *settings) dueOf(e *entry) int64 {
	due := addSat(e.lastUsed.Load(), int64(s.idle))
	if e.nextRefresh != 0 && !e.refreshing {
		due = min(due, e.nextRefresh)
	}
	g := s.grace(e)
	for _, exp := range e.addrs {
		due = min(due, addSat(exp, g))
	}
	return due
}

func (r *Resolver) reschedule(e *entry, due int64) {
	e.due = due
	if e.heapIdx < 0 {
		heap.Push(&r.sched, e)
	} else {
		heap.Fix(&r.sched, e.heapIdx)
	}
}

// drop forgets an evicted entry: out of the schedule, and its gauge gone unless the name is
// cached again under a new entry.
func (r *Resolver) drop(e *entry) {
	if e.heapIdx >= 0 {
		heap.Remove(&r.sched, e.heapIdx)
	}
	if e.reported {
		if cur, ok := r.cache.Peek(e.name); !ok || cur == e {
			r.met.fleet.DeleteLabelValues(e.name)
		}
		e.reported = false
	}
}

// startRefresh looks e up again in the background.
func (r *Resolver) startRefresh(e *entry) {
	done := func() {
		e.mu.Lock()
		e.refreshing = false
		e.mu.Unlock()
		r.markDirty(e)
	}
	if !r.track() {
		done()
		return
	}
	r.refWG.Add(1)
	r.met.refreshes.Add(1)
	go func() {
		defer r.wg.Done()
		defer r.refWG.Done()
		defer done()
		select {
		case r.sem <- struct{}{}:
		case <-r.ctx.Done():
			return
		}
		defer func() { <-r.sem }()
		<-r.sf.DoChan(e.name, func() (any, error) {
			if !r.track() {
				return nil, errClosed
			}
			defer r.wg.Done()
			return r.refresh(e), nil
		})
	}()
}

// notify logs, measures and reports e's fleet if it differs from the one last reported.
func (r *Resolver) notify(e *entry, fleet []netip.Addr) {
	if sameSlice(fleet, e.notified) {
		return
	}
	added, removed := diff(e.notified, fleet)
	e.notified = fleet
	if len(added) == 0 && len(removed) == 0 {
		return
	}
	r.met.fleet.WithLabelValues(e.name).Set(float64(len(fleet)))
	e.reported = true
	r.log.Info("dns: fleet changed", zap.String("name", e.name), zap.Int("fleet_size", len(fleet)),
		zap.Stringers("added", added), zap.Stringers("removed", removed))
	if r.opts.OnChange != nil {
		r.opts.OnChange(e.name, fleet)
	}
}

func sameSlice(a, b []netip.Addr) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// diff compares two sorted fleets.
func diff(old, cur []netip.Addr) (added, removed []netip.Addr) {
	i, j := 0, 0
	for i < len(old) || j < len(cur) {
		switch {
		case j == len(cur) || i < len(old) && old[i].Compare(cur[j]) < 0:
			removed = append(removed, old[i])
			i++
		case i == len(old) || cur[j].Compare(old[i]) < 0:
			added = append(added, cur[j])
			j++
		default:
			i++
			j++
		}
	}
	return added, removed
}
