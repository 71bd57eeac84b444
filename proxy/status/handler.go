package status

import (
	"bytes"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// The paths the handler answers. The caller routes them to an admin Handler on the admin
// listener and, with status.public, to a public Handler on the public listeners.
const (
	PathHTML = "/status"
	PathJSON = "/status.json"
	PathAtom = "/status.atom"
)

// Paths lists every path the handler answers; anything else gets 404 from it.
var Paths = []string{PathHTML, PathJSON, PathAtom}

// Handler serves the status page, its JSON and its Atom feed, rendered afresh on every request
// from the Source and the Store. It is safe for concurrent use.
type Handler struct {
	src    Source
	store  *Store
	cfg    func() Config
	public bool
}

// NewHandler returns a handler over src and store (nil: no incidents). cfg returns the current
// `status:` section (nil: Defaults), read on every request so that a reload applies at once.
// public selects the redacted view (see the package documentation); a public handler answers
// 404 while cfg().Public is false, so the caller may route it unconditionally.
func NewHandler(src Source, store *Store, cfg func() Config, public bool) *Handler {
	if cfg == nil {
		cfg = Defaults
	}
	return &Handler{src: src, store: store, cfg: cfg, public: public}
}

func (h *Handler) now() time.Time {
	if h.src.Now != nil {
		return h.src.Now()
	}
	return time.Now()
}

// Overdue reports whether an incident is open and its latest update is older than
// update_interval: customers are owed an update. It backs fixedgate_status_update_overdue.
func (h *Handler) Overdue() bool {
	open := h.store.Open()
	return open != nil && overdue(open, h.now(), h.cfg().interval())
}

func overdue(open *Incident, now time.Time, interval time.Duration) bool {
	return now.Sub(open.UpdatedAt()) > interval
}

// State returns the state the page shows now (see Derive).
func (h *Handler) State() State {
	var probes []ProbeStatus
	if h.src.Probes != nil {
		probes = h.src.Probes()
	}
	return Derive(probes, h.store.Open(), h.now())
}

// snapshot is everything one response shows, gathered once, and already redacted for a public
// view: no render path can show what is not in it.
type snapshot struct {
	now         time.Time
	public      bool
	interval    time.Duration
	state       State
	probeState  State // what the probes alone show
	probes      []ProbeStatus
	notRun      []bool // per probe: it has no result yet (known before Checked is redacted)
	routes      []RouteStatus
	hasContract bool
	contract    []ContractChange // announced and draining, soonest first
	open        *Incident        // nil: none
	overdue     bool
	incidents   []Incident // newest first
	storeErr    string     // admin only
}

func (h *Handler) snapshot() *snapshot {
	now := h.now()
	s := &snapshot{now: now, public: h.public, interval: h.cfg().interval()}
	if h.src.Probes != nil {
		s.probes = slices.Clone(h.src.Probes())
	}
	if h.src.Routes != nil {
		s.routes = slices.Clone(h.src.Routes())
	}
	if h.src.Contract != nil {
		s.hasContract = true
		for _, c := range h.src.Contract() {
			if c.Status == ContractAnnounced || c.Status == ContractDraining {
				s.contract = append(s.contract, c)
			}
		}
		slices.SortStableFunc(s.contract, func(a, b ContractChange) int { return a.At.Compare(b.At) })
	}
	s.incidents = h.store.All()
	if len(s.incidents) > 0 && !s.incidents[0].Resolved() {
		s.open = &s.incidents[0]
	}
	s.notRun = make([]bool, len(s.probes))
	for i, p := range s.probes {
		s.notRun[i] = p.Checked.IsZero() && !p.Up && p.ConsecutiveFailures == 0
	}
	s.probeState = Derive(s.probes, nil, now)
	s.state = s.probeState.worse(Derive(nil, s.open, now))
	s.overdue = s.open != nil && overdue(s.open, now, s.interval)
	if err := h.store.Err(); err != nil {
		s.storeErr = err.Error()
	}
	if h.public {
		s.redact()
	}
	return s
}

// redact drops what is internal (see the package documentation).
func (s *snapshot) redact() {
	for i := range s.probes {
		p := &s.probes[i]
		p.LastError = ""
		p.Checked = time.Time{}
		p.LastFailure = time.Time{}
		p.ConsecutiveFailures = 0
	}
	for i := range s.routes {
		s.routes[i].Addresses = nil
		s.routes[i].Upstream = "" // a backend's name and port: the host customers use is enough
	}
	s.storeErr = ""
}

// hv makes a header value slice that cannot be appended to in place, so it can be shared by
// every response.
func hv(s string) []string { return []string{s}[:1:1] }

var (
	ctHTML    = hv("text/html; charset=utf-8")
	ctJSON    = hv("application/json")
	ctAtom    = hv("application/atom+xml")
	ctText    = hv("text/plain; charset=utf-8")
	noStore   = hv("no-store")
	nosniff   = hv("nosniff")
	allowGetH = hv("GET, HEAD")
	// The page needs nothing but its own inline CSS and inline SVG.
	cspHTML = hv("default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
)

// ServeHTTP answers GET and HEAD for Paths; other paths get 404 and other methods 405.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !slices.Contains(Paths, r.URL.Path) || h.public && !h.cfg().Public {
		fail(w, http.StatusNotFound, "not found")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header()["Allow"] = allowGetH
		fail(w, http.StatusMethodNotAllowed, r.Method+" not allowed: use GET or HEAD")
		return
	}
	s := h.snapshot()
	var buf bytes.Buffer
	var ctype []string
	var err error
	switch r.URL.Path {
	case PathHTML:
		ctype, err = ctHTML, renderHTML(&buf, s)
		w.Header()["Content-Security-Policy"] = cspHTML
	case PathJSON:
		ctype, err = ctJSON, renderJSON(&buf, s)
	case PathAtom:
		ctype, err = ctAtom, renderAtom(&buf, s)
	}
	if err != nil {
		delete(w.Header(), "Content-Security-Policy")
		fail(w, http.StatusInternalServerError, "the status page could not be rendered")
		return
	}
	hdr := w.Header()
	hdr["Content-Type"] = ctype
	hdr["Content-Length"] = hv(strconv.Itoa(buf.Len()))
	hdr["Cache-Control"] = noStore
	hdr["X-Content-Type-Options"] = nosniff
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(buf.Bytes())
	}
}

func fail(w http.ResponseWriter, code int, msg string) {
	hdr := w.Header()
	hdr["Content-Type"] = ctText
	hdr["X-Content-Type-Options"] = nosniff
	hdr["Cache-Control"] = noStore
	w.WriteHeader(code)
	w.Write([]byte(msg + "\n"))
}

// availability is the share of successful results, or false without data.
func availability(total, failures int) (float64, bool) {
	if total <= 0 {
		return 0, false
	}
	ok := max(total-failures, 0)
	return float64(ok) / float64(total), true
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }
