package proxy

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// value reads a counter's value.
func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// count says how many series c has.
func count(c prometheus.Collector) int {
	ch := make(chan prometheus.Metric, 64)
	c.Collect(ch)
	close(ch)
	return len(ch)
}

func TestMetricsObserve(t *testing.T) {
	m := newMetrics(nil, nil)
	rec := &record{start: time.Now(), door: "gateway", status: 200, bytesUp: 3, bytesDown: 200}
	m.observe(rec)
	m.observe(rec)
	m.observe(&record{start: time.Now(), door: "gateway", status: 502})
	m.observe(&record{start: time.Now(), door: "unlisted", status: 999}) // outside the cache: still counted
	for _, tc := range []struct {
		c    prometheus.Counter
		want float64
	}{
		{m.requests.WithLabelValues("gateway", "200"), 2},
		{m.requests.WithLabelValues("gateway", "502"), 1},
		{m.requests.WithLabelValues("unlisted", "999"), 1},
		{m.bytes.WithLabelValues("gateway", "up"), 6},
		{m.bytes.WithLabelValues("gateway", "down"), 400},
	} {
		if got := value(t, tc.c); got != tc.want {
			t.Errorf("%v: %v, want %v", tc.c.Desc(), got, tc.want)
		}
	}
	// Only series that happened are listed: no bytes series for a door that moved none.
	if n := count(m.bytes); n != 2 {
		t.Errorf("%d byte series, want 2 (gateway up and down)", n)
	}
	if n := testing.AllocsPerRun(100, func() { m.observe(rec) }); n != 0 {
		t.Errorf("observe allocates %v times for a door and code seen before", n)
	}
}
