package probe

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/fixedgate/fixedgate/proxy/statefile"
)

// historyHours is how much history a probe keeps: the status page's longest window, 7 days.
const historyHours = 7 * 24

// latencyBounds are the upper bounds, in milliseconds, of the latency buckets an hour keeps:
// enough resolution for p50 and p99 of a request that takes from a millisecond to a minute.
var latencyBounds = []float64{1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700,
	1000, 1500, 2000, 3000, 5000, 7000, 10000, 15000, 20000, 30000, 60000}

// hour is one hour of one probe: how many runs, how many failed, and the latencies of all runs
// in latencyBounds buckets (the last one counts everything slower).
type hour struct {
	Start    int64    `json:"start"` // unix seconds, a whole hour
	Total    int      `json:"total"`
	Failures int      `json:"failures"`
	Buckets  []uint32 `json:"latency_buckets"`
}

func (h *hour) add(ok bool, d time.Duration) {
	if len(h.Buckets) != len(latencyBounds)+1 {
		h.Buckets = make([]uint32, len(latencyBounds)+1)
	}
	h.Total++
	if !ok {
		h.Failures++
	}
	ms := float64(d) / float64(time.Millisecond)
	i, _ := slices.BinarySearch(latencyBounds, ms)
	h.Buckets[i]++
}

// history is one probe's hours, oldest first, none older than historyHours.
type history []hour

// record adds one run at now.
func (hs *history) record(now time.Time, ok bool, d time.Duration) {
	start := now.Truncate(time.Hour).Unix()
	if n := len(*hs); n == 0 || (*hs)[n-1].Start != start {
		*hs = append(*hs, hour{Start: start})
	}
	(*hs)[len(*hs)-1].add(ok, d)
	hs.trim(now)
}

// trim drops hours older than the longest window.
func (hs *history) trim(now time.Time) {
	oldest := now.Truncate(time.Hour).Add(-(historyHours - 1) * time.Hour).Unix()
	i := 0
	for i < len(*hs) && (*hs)[i].Start < oldest {
		i++
	}
	*hs = slices.Delete(*hs, 0, i)
}

// Window is runs, failures and latency percentiles over a span of hours.
type Window struct {
	Total, Failures int
	P50, P99        time.Duration
}

// window sums the hours that start within span before now's hour ends.
func (hs history) window(now time.Time, span time.Duration) Window {
	from := now.Truncate(time.Hour).Add(time.Hour - span).Unix()
	var w Window
	buckets := make([]uint32, len(latencyBounds)+1)
	for _, h := range hs {
		if h.Start < from {
			continue
		}
		w.Total += h.Total
		w.Failures += h.Failures
		for i, n := range h.Buckets {
			buckets[i] += n
		}
	}
	w.P50, w.P99 = percentile(buckets, 0.50), percentile(buckets, 0.99)
	return w
}

// Hour is one hour for the status page's chart.
type Hour struct {
	Start           time.Time
	Total, Failures int
	P50, P99        time.Duration
}

// last24 returns the 24 hours up to now's, oldest first; an hour without runs has Total 0.
func (hs history) last24(now time.Time) []Hour {
	out := make([]Hour, 24)
	first := now.Truncate(time.Hour).Add(-23 * time.Hour)
	for i := range out {
		out[i].Start = first.Add(time.Duration(i) * time.Hour).UTC()
	}
	for _, h := range hs {
		i := int((h.Start - first.Unix()) / 3600)
		if i < 0 || i >= 24 {
			continue
		}
		out[i].Total, out[i].Failures = h.Total, h.Failures
		out[i].P50, out[i].P99 = percentile(h.Buckets, 0.50), percentile(h.Buckets, 0.99)
	}
	return out
}

// percentile estimates the q-quantile of the latencies counted in buckets, interpolating
// linearly within the bucket it falls in; 0 without data.
func percentile(buckets []uint32, q float64) time.Duration {
	var total uint64
	for _, n := range buckets {
		total += uint64(n)
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var seen float64
	for i, n := range buckets {
		if n == 0 {
			continue
		}
		if seen+float64(n) >= rank {
			lo, hi := 0.0, latencyBounds[len(latencyBounds)-1]
			if i > 0 {
				lo = latencyBounds[i-1]
			}
			if i < len(latencyBounds) {
				hi = latencyBounds[i]
			}
			ms := lo + (hi-lo)*(rank-seen)/float64(n)
			return time.Duration(ms * float64(time.Millisecond))
		}
		seen += float64(n)
	}
	return time.Duration(latencyBounds[len(latencyBounds)-1] * float64(time.Millisecond))
}

// historyFile is what the state directory keeps of every probe's history.
type historyFile struct {
	Version int                `json:"version"`
	Probes  map[string]history `json:"probes"`
}

// loadHistory reads path; a missing file is an empty history. A file that cannot be read or
// parsed is moved aside (path.corrupt-<unix time>) rather than overwritten, and reported.
func loadHistory(path string) (map[string]history, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return map[string]history{}, nil
	}
	if err != nil {
		return map[string]history{}, fmt.Errorf("read probe history %s: %w", path, err)
	}
	var f historyFile
	if err := json.Unmarshal(data, &f); err != nil || f.Version != 1 {
		if err == nil {
			err = fmt.Errorf("version %d, want 1", f.Version)
		}
		aside := fmt.Sprintf("%s.corrupt-%d", path, time.Now().Unix())
		if rerr := os.Rename(path, aside); rerr != nil {
			return map[string]history{}, fmt.Errorf("probe history %s: %v; moving it aside failed: %w", path, err, rerr)
		}
		return map[string]history{}, fmt.Errorf("probe history %s: %v (kept as %s; starting afresh)", path, err, aside)
	}
	if f.Probes == nil {
		f.Probes = map[string]history{}
	}
	for name, hs := range f.Probes {
		slices.SortFunc(hs, func(a, b hour) int { return int(a.Start - b.Start) })
		for i := range hs {
			if len(hs[i].Buckets) != len(latencyBounds)+1 {
				hs[i].Buckets = make([]uint32, len(latencyBounds)+1) // another build's buckets: counts stay, latencies go
			}
		}
		f.Probes[name] = hs
	}
	return f.Probes, nil
}

// saveHistory writes the histories to path atomically (statefile.WriteAtomic).
func saveHistory(path string, probes map[string]history) error {
	data, err := json.Marshal(historyFile{Version: 1, Probes: probes})
	if err != nil {
		return fmt.Errorf("encode probe history: %w", err)
	}
	if err := statefile.WriteAtomic(path, data); err != nil {
		return fmt.Errorf("probe history: %w", err)
	}
	return nil
}
