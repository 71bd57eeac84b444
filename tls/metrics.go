package tls

import (
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var certExpiryDesc = prometheus.NewDesc(
	"fixedgate_tls_certificate_expiry_seconds",
	"Seconds until the listener certificate for a name expires (negative: expired); the latest-expiring certificate in the cache counts.",
	[]string{"name"}, nil)

// Describe implements prometheus.Collector.
func (m *Manager) Describe(ch chan<- *prometheus.Desc) { ch <- certExpiryDesc }

// Collect implements prometheus.Collector: one gauge per configured name
// (ACME domains, or the names of the files / self_signed certificates). A
// name with no certificate in the cache is left out.
func (m *Manager) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	for _, name := range m.metricNames() {
		var notAfter time.Time
		for _, c := range m.cache.AllMatchingCertificates(name) {
			if c.Leaf != nil && c.Leaf.NotAfter.After(notAfter) {
				notAfter = c.Leaf.NotAfter
			}
		}
		if notAfter.IsZero() {
			continue
		}
		ch <- prometheus.MustNewConstMetric(certExpiryDesc, prometheus.GaugeValue, notAfter.Sub(now).Seconds(), name)
	}
}

func (m *Manager) metricNames() []string {
	if m.acme != nil {
		return m.acme.domains
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var names []string
	for _, leaf := range m.leaves {
		names = append(names, certNames(leaf)...)
	}
	slices.Sort(names)
	return slices.Compact(names)
}
