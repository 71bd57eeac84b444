package health

import (
	"github.com/prometheus/client_golang/prometheus"
)

// reason is why a backend was ejected; its String is the metric label and log field.
type reason uint32

const (
	reasonNone reason = iota
	reasonConsecutive
	reasonFailureRate
	reason5xx
)

func (r reason) String() string {
	switch r {
	case reasonConsecutive:
		return "consecutive"
	case reasonFailureRate:
		return "failure_rate"
	case reason5xx:
		return "5xx"
	}
	return ""
}

// metrics are the package's Prometheus series; names are a public interface for dashboards. No
// per-backend labels: fleets churn and addresses would make unbounded series.
type metrics struct {
	ejections       [reason5xx + 1]prometheus.Counter
	budgetExhausted prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, t *Tracker) *metrics {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fixedgate_backend_ejections_total",
		Help: "Backends ejected by passive outlier detection, by reason (consecutive, failure_rate, 5xx).",
	}, []string{"reason"})
	m := &metrics{
		budgetExhausted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fixedgate_retry_budget_exhausted_total",
			Help: "Retries refused because the retry budget was spent.",
		}),
	}
	for r := reasonConsecutive; r <= reason5xx; r++ {
		m.ejections[r] = vec.WithLabelValues(r.String())
	}
	if reg != nil {
		reg.MustRegister(vec, m.budgetExhausted, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "fixedgate_backends_ejected",
			Help: "Backends ejected now (before the max_ejected_percent cap is applied per fleet).",
		}, func() float64 { return float64(t.ejectedCount()) }))
	}
	return m
}
