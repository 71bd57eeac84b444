package probe

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are fixedgate_probe_up{probe}, fixedgate_probe_total{probe,result} and
// fixedgate_probe_duration_seconds{probe}.
type metrics struct {
	up       *prometheus.GaugeVec
	total    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fixedgate_probe_up",
			Help: "1 when the probe's last run succeeded through the proxy's own listener, else 0.",
		}, []string{"probe"}),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fixedgate_probe_total",
			Help: "Probe runs by probe and result (success or failure).",
		}, []string{"probe", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fixedgate_probe_duration_seconds",
			Help:    "Time of a probe run, from the connection to the proxy to the end of the response, by probe.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"probe"}),
	}
	if reg != nil {
		reg.MustRegister(m.up, m.total, m.duration)
	}
	return m
}

func (m *metrics) observe(name string, ok bool, d time.Duration) {
	up, result := 0.0, "failure"
	if ok {
		up, result = 1, "success"
	}
	m.up.WithLabelValues(name).Set(up)
	m.total.WithLabelValues(name, result).Inc()
	m.duration.WithLabelValues(name).Observe(d.Seconds())
}

// forget removes the series of a probe a reload removed.
func (m *metrics) forget(name string) {
	m.up.DeleteLabelValues(name)
	m.total.DeletePartialMatch(prometheus.Labels{"probe": name})
	m.duration.DeleteLabelValues(name)
}
