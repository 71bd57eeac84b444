package proxy

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the forward door's Prometheus series; names are a public interface for dashboards.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	bytes    *prometheus.CounterVec

	backendDuration *prometheus.HistogramVec
	retries         *prometheus.CounterVec
	listenerChanges *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, s *Server) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fixedgate_requests_total",
			Help: "Requests and tunnels handled, by door (connect, forward, local) and final status code.",
		}, []string{"door", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fixedgate_request_duration_seconds",
			Help:    "Time from request to the end of the response or tunnel, by door.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800},
		}, []string{"door"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fixedgate_bytes_total",
			Help: "Payload bytes moved, by door and direction (up: client to origin, down: origin to client).",
		}, []string{"door", "direction"}),
		backendDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fixedgate_backend_request_duration_seconds",
			Help:    "Gateway door: time from sending a request to a backend to its response headers (or failure), by upstream name.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"upstream"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fixedgate_gateway_retries_total",
			Help: "Gateway door: retries on another backend (result=retried) and retries refused by the retry budget (result=budget_exhausted), by upstream name.",
		}, []string{"upstream", "result"}),
		listenerChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fixedgate_listener_changes_total",
			Help: "Listeners bound because the contract activated their address (activated) or closed because it retired it (retired).",
		}, []string{"change"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.bytes, m.backendDuration, m.retries, m.listenerChanges,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "fixedgate_tunnels_open",
				Help: "CONNECT tunnels open now.",
			}, func() float64 { return float64(s.tunnels.count()) }))
	}
	return m
}

func (m *metrics) observe(r *record) {
	m.requests.WithLabelValues(r.door, statusLabel(r.status)).Inc()
	m.duration.WithLabelValues(r.door).Observe(r.elapsed().Seconds())
	if r.bytesUp > 0 {
		m.bytes.WithLabelValues(r.door, "up").Add(float64(r.bytesUp))
	}
	if r.bytesDown > 0 {
		m.bytes.WithLabelValues(r.door, "down").Add(float64(r.bytesDown))
	}
}

// statusLabels holds the code label of every HTTP status, so counting a request does not format one.
var statusLabels = func() (l [600]string) {
	for i := range l {
		l[i] = strconv.Itoa(i)
	}
	return l
}()

func statusLabel(code int) string {
	if code >= 0 && code < len(statusLabels) {
		return statusLabels[code]
	}
	return strconv.Itoa(code)
}
