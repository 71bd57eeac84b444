package resolver

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

type result int

const (
	resOK result = iota
	resNXDomain
	resServFail
	resRefused
	resTimeout
	resError
	resTruncated // a UDP answer with TC set; the TCP retry is counted on its own
	numResults
)

var resultNames = [numResults]string{"ok", "nxdomain", "servfail", "refused", "timeout", "error", "truncated_tcp"}

const (
	typeA = iota
	typeAAAA
)

var typeNames = [2]string{"A", "AAAA"}

const (
	cacheHit = iota
	cacheMiss
	cacheStale
	cacheNegative
	numCache
)

var cacheNames = [numCache]string{"hit", "miss", "stale", "negative"}

// metrics keeps plain atomic counters, which the warm path bumps without allocating or
// locking, and exposes them to Prometheus as a collector; Stats reads the same counters.
type metrics struct {
	queries   [2][numResults]atomic.Int64
	cache     [numCache]atomic.Int64
	refreshes atomic.Int64
	fleet     *prometheus.GaugeVec

	queriesDesc, cacheDesc *prometheus.Desc
}

func newMetrics() *metrics {
	return &metrics{
		fleet: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fixedgate_dns_fleet_size",
			Help: "Addresses in a name's fleet: the union of those seen within their TTLs.",
		}, []string{"name"}),
		queriesDesc: prometheus.NewDesc("fixedgate_dns_queries_total",
			"DNS exchanges sent, by query type and result.", []string{"type", "result"}, nil),
		cacheDesc: prometheus.NewDesc("fixedgate_dns_cache_total",
			"Lookups by how the cache answered them.", []string{"result"}, nil),
	}
}

func (m *metrics) register(reg prometheus.Registerer) error {
	if err := reg.Register(m); err != nil {
		return err
	}
	if err := reg.Register(m.fleet); err != nil {
		reg.Unregister(m)
		return err
	}
	return nil
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.queriesDesc
	ch <- m.cacheDesc
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	for t := range m.queries {
		for res := range m.queries[t] {
			ch <- prometheus.MustNewConstMetric(m.queriesDesc, prometheus.CounterValue,
				float64(m.queries[t][res].Load()), typeNames[t], resultNames[res])
		}
	}
	for c := range m.cache {
		ch <- prometheus.MustNewConstMetric(m.cacheDesc, prometheus.CounterValue,
			float64(m.cache[c].Load()), cacheNames[c])
	}
}
