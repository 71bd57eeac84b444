package proxy

import (
	"strconv"
	"sync"
	"sync/atomic"

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

	limited      *prometheus.CounterVec
	userRequests *prometheus.CounterVec
	userBytes    *prometheus.CounterVec
	userTunnels  *prometheus.GaugeVec

	doors   map[string]*doorSeries // read-only after newMetrics
	anon    *userSeries            // "-": requests without a forward.users name
	usersMu sync.RWMutex
	users   map[string]*userSeries // forward.users names seen, and "-"
}

// userSeries holds one user's series (a forward.users name, or "-" for requests without one),
// resolved once: per-customer usage for billing and support. Each is created on first use.
type userSeries struct {
	name     string
	limitKey string // the user's key in the limiter, made once
	requests [len(doors)]atomic.Pointer[prometheus.Counter]
	up, down atomic.Pointer[prometheus.Counter]
	tunnels  prometheus.Gauge
	gone     bool // a reload removed the user (usersMu)
}

// doorSeries holds one door's series, resolved once, so that counting a request costs no label
// hashing and no lookup under the vectors' locks. Each is created on first use, as
// WithLabelValues would, so /metrics still lists only what happened.
type doorSeries struct {
	idx      int // in doors
	duration atomic.Pointer[prometheus.Observer]
	up, down atomic.Pointer[prometheus.Counter]
	codes    [600]atomic.Pointer[prometheus.Counter]
}

// series returns p's series, creating it with mk on first use.
func series[T any](p *atomic.Pointer[T], mk func() T) T {
	if v := p.Load(); v != nil {
		return *v
	}
	v := mk()
	p.Store(&v)
	return v
}

// doors are the values of the door label; "malformed" counts requests refused before any door
// because their bytes are malformed or ambiguous (see Server.rejected).
var doors = [...]string{"connect", "forward", "contract", "gateway", "local", "malformed", "status"}

func newMetrics(reg prometheus.Registerer, s *Server) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fixedgate_requests_total",
			Help: "Requests and tunnels handled, by door (connect, forward, gateway, contract, status, local; malformed: refused before any door) and final status code.",
		}, []string{"door", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fixedgate_request_duration_seconds",
			Help:    "Time from request to the end of the response or tunnel, by door.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800},
		}, []string{"door"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fixedgate_bytes_total",
			Help: "Payload bytes moved through the connect, forward and gateway doors, by door and direction (up: client to origin, down: origin to client).",
		}, []string{"door", "direction"}),
		backendDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fixedgate_backend_request_duration_seconds",
			Help:    "Gateway door: one attempt at a backend, from dialling it (when no pooled connection is free) to its response headers or failure, retries counted one by one, by upstream name.",
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
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fixedgate_limited_total",
			Help: "Requests and tunnels answered 429 by a per-customer limit, by forward.users name (- without one) and limit (rate, tunnels, requests_in_flight, auth_failures).",
		}, []string{"user", "limit"}),
		userRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fixedgate_user_requests_total",
			Help: "Requests and tunnels by forward.users name (- without one) and door; a user's series go when a reload removes the user.",
		}, []string{"user", "door"}),
		userBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fixedgate_user_bytes_total",
			Help: "Payload bytes moved by forward.users name (- without one) and direction (up: client to origin, down: origin to client).",
		}, []string{"user", "direction"}),
		userTunnels: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fixedgate_user_tunnels_open",
			Help: "CONNECT tunnels open now, by forward.users name.",
		}, []string{"user"}),
		users: map[string]*userSeries{},
	}
	m.doors = make(map[string]*doorSeries, len(doors))
	for i, d := range doors {
		m.doors[d] = &doorSeries{idx: i}
	}
	m.anon = m.user("-")
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.bytes, m.backendDuration, m.retries, m.listenerChanges,
			m.userRequests, m.userBytes, m.userTunnels, m.limited,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "fixedgate_tunnels_open",
				Help: "CONNECT tunnels open now.",
			}, func() float64 { return float64(s.tunnels.count()) }))
	}
	return m
}

func (m *metrics) observe(r *record) {
	d := m.doors[r.door]
	m.observeUser(r, d)
	if d == nil || r.status < 0 || r.status >= len(d.codes) {
		m.requests.WithLabelValues(r.door, statusLabel(r.status)).Inc()
		m.duration.WithLabelValues(r.door).Observe(r.elapsed().Seconds())
		if r.bytesUp > 0 {
			m.bytes.WithLabelValues(r.door, "up").Add(float64(r.bytesUp))
		}
		if r.bytesDown > 0 {
			m.bytes.WithLabelValues(r.door, "down").Add(float64(r.bytesDown))
		}
		return
	}
	series(&d.codes[r.status], func() prometheus.Counter { return m.requests.WithLabelValues(r.door, statusLabels[r.status]) }).Inc()
	series(&d.duration, func() prometheus.Observer { return m.duration.WithLabelValues(r.door) }).Observe(r.elapsed().Seconds())
	if r.bytesUp > 0 {
		series(&d.up, func() prometheus.Counter { return m.bytes.WithLabelValues(r.door, "up") }).Add(float64(r.bytesUp))
	}
	if r.bytesDown > 0 {
		series(&d.down, func() prometheus.Counter { return m.bytes.WithLabelValues(r.door, "down") }).Add(float64(r.bytesDown))
	}
}

// observeUser counts r for its user (r.users, or "-").
func (m *metrics) observeUser(r *record, d *doorSeries) {
	u := r.users
	if u == nil {
		u = m.anon
	}
	if d == nil {
		return // not a door of this build: no series for it
	}
	series(&u.requests[d.idx], func() prometheus.Counter { return m.userCounter(u, m.userRequests, r.door) }).Inc()
	if r.bytesUp > 0 {
		series(&u.up, func() prometheus.Counter { return m.userCounter(u, m.userBytes, "up") }).Add(float64(r.bytesUp))
	}
	if r.bytesDown > 0 {
		series(&u.down, func() prometheus.Counter { return m.userCounter(u, m.userBytes, "down") }).Add(float64(r.bytesDown))
	}
}

// userCounter makes one of u's series, unless a reload removed u: a request of a removed user
// that ends afterwards (a revoked tunnel) must not bring its series back.
func (m *metrics) userCounter(u *userSeries, vec *prometheus.CounterVec, label string) prometheus.Counter {
	m.usersMu.RLock()
	defer m.usersMu.RUnlock()
	if u.gone {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "unexported"})
	}
	return vec.WithLabelValues(u.name, label)
}

// user returns name's series, made on first use. Callers pass configured names (or "-"), so
// the label set is bounded by the config.
func (m *metrics) user(name string) *userSeries {
	m.usersMu.RLock()
	u := m.users[name]
	m.usersMu.RUnlock()
	if u != nil {
		return u
	}
	m.usersMu.Lock()
	defer m.usersMu.Unlock()
	if u = m.users[name]; u == nil {
		u = &userSeries{name: name, limitKey: "u:" + name}
		if name != "-" { // tunnels without a user are not counted per user
			u.tunnels = m.userTunnels.WithLabelValues(name)
		}
		m.users[name] = u
	}
	return u
}

// forgetRoutes removes the series of upstreams no route uses any more (a reload removed them).
func (m *metrics) forgetRoutes(names []string) {
	for _, n := range names {
		m.backendDuration.DeleteLabelValues(n)
		m.retries.DeletePartialMatch(prometheus.Labels{"upstream": n})
	}
}

// forgetUsers removes the series of users a reload removed. Requests and tunnels of theirs
// still ending hold the old series, which are no longer exported.
func (m *metrics) forgetUsers(names []string) {
	m.usersMu.Lock()
	defer m.usersMu.Unlock()
	for _, n := range names {
		if u := m.users[n]; u != nil {
			u.gone = true
		}
		delete(m.users, n)
		m.userRequests.DeletePartialMatch(prometheus.Labels{"user": n})
		m.userBytes.DeletePartialMatch(prometheus.Labels{"user": n})
		m.userTunnels.DeleteLabelValues(n)
		m.limited.DeletePartialMatch(prometheus.Labels{"user": n})
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
