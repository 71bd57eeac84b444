package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Listener is one of the proxy's listeners, as a probe enters it.
type Listener struct {
	Address string // IP:port
	TLS     bool
}

// Options are what the runner needs of the rest of the process.
type Options struct {
	Listeners []Listener
	// ListenerName is the name the TLS listeners' certificate carries for clients that connect
	// to a listener by address (tls.default_name, or the ACME domain); empty: the address.
	ListenerName string
	// ListenerCA and TargetCA are PEM bundles that verify the proxy's own TLS listeners and the
	// targets behind CONNECT; nil: the system roots.
	ListenerCA, TargetCA []byte
	// HistoryPath keeps the hourly history across restarts; empty: in memory only.
	HistoryPath string
	Log         *zap.Logger
	Registerer  prometheus.Registerer
	Now         func() time.Time
}

// Runner runs the probes and holds their results. Reconfigure replaces the probes while it runs
// (a reload); a probe that keeps its name keeps its history.
type Runner struct {
	opts    Options
	log     *zap.Logger
	metrics *metrics

	mu      sync.Mutex
	probes  map[string]*probe
	history map[string]history
	dirty   bool
	stop    chan struct{}
	wg      sync.WaitGroup
	started bool
	closed  bool
}

// probe is one configured probe and its last results.
type probe struct {
	cfg    Config
	client *http.Client
	cancel context.CancelFunc

	// guarded by Runner.mu
	checked     time.Time
	up          bool
	consecutive int // failures in a row
	lastFailure time.Time
	lastError   string
}

// New checks the probes against opts and builds a runner; Start runs them.
func New(cfgs []Config, opts Options) (*Runner, error) {
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &Runner{opts: opts, log: opts.Log, probes: map[string]*probe{}, stop: make(chan struct{})}
	r.metrics = newMetrics(opts.Registerer)
	if opts.HistoryPath != "" {
		h, err := loadHistory(opts.HistoryPath)
		if err != nil {
			r.log.Error("probe history not loaded", zap.Error(err))
		}
		r.history = h
	} else {
		r.history = map[string]history{}
	}
	if err := r.set(cfgs); err != nil {
		return nil, err
	}
	return r, nil
}

// check reports whether set would accept cfgs, without changing anything.
func (r *Runner) check(cfgs []Config) error {
	if err := Validate(cfgs); err != nil {
		return fmt.Errorf("probes%w", err)
	}
	for i, c := range cfgs {
		if _, err := r.client(c.withDefaults()); err != nil {
			return fmt.Errorf("probes[%d]: %w", i, err)
		}
	}
	return nil
}

// set builds the probes of cfgs; r.mu is held or the runner is not shared yet.
func (r *Runner) set(cfgs []Config) error {
	if err := r.check(cfgs); err != nil {
		return err
	}
	next := make(map[string]*probe, len(cfgs))
	for i, c := range cfgs {
		c = c.withDefaults()
		client, err := r.client(c)
		if err != nil {
			return fmt.Errorf("probes[%d]: %w", i, err)
		}
		p := &probe{cfg: c, client: client}
		if old := r.probes[c.Name]; old != nil {
			p.checked, p.up, p.consecutive, p.lastFailure, p.lastError = old.checked, old.up, old.consecutive, old.lastFailure, old.lastError
		}
		next[c.Name] = p
	}
	for name, old := range r.probes {
		if old.cancel != nil {
			old.cancel()
		}
		if _, ok := next[name]; !ok {
			r.metrics.forget(name)
			delete(r.history, name)
			r.dirty = true
		}
	}
	r.probes = next
	return nil
}

// Start runs every probe now and then every interval, until Close.
func (r *Runner) Start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.started = true
	for _, p := range r.probes {
		r.launch(p)
	}
	if r.opts.HistoryPath != "" {
		r.wg.Add(1)
		go r.persist()
	}
}

// Check reports whether Reconfigure would accept cfgs and targetCA, changing nothing.
func (r *Runner) Check(cfgs []Config, targetCA []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	oldCA := r.opts.TargetCA
	r.opts.TargetCA = targetCA
	defer func() { r.opts.TargetCA = oldCA }()
	return r.check(cfgs)
}

// Reconfigure replaces the probes (a reload) and the trust for targets behind CONNECT
// (upstream_tls): the old probes stop, the new ones start at once. On error nothing changes.
func (r *Runner) Reconfigure(cfgs []Config, targetCA []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("probe runner closed")
	}
	old, oldCA := r.probes, r.opts.TargetCA
	r.opts.TargetCA = targetCA
	if err := r.check(cfgs); err != nil {
		r.opts.TargetCA = oldCA
		return err
	}
	if err := r.set(cfgs); err != nil {
		r.probes, r.opts.TargetCA = old, oldCA
		return err
	}
	if r.started {
		for _, p := range r.probes {
			r.launch(p)
		}
	}
	return nil
}

// launch starts p's loop; r.mu is held.
func (r *Runner) launch(p *probe) {
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		t := time.NewTicker(p.cfg.Interval)
		defer t.Stop()
		for {
			r.run(ctx, p)
			select {
			case <-ctx.Done():
				return
			case <-r.stop:
				return
			case <-t.C:
			}
		}
	}()
}

// Close stops the probes and writes the history.
func (r *Runner) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	close(r.stop)
	for _, p := range r.probes {
		if p.cancel != nil {
			p.cancel()
		}
	}
	r.mu.Unlock()
	r.wg.Wait()
	r.save()
}

// persist writes the history every minute while it changes, so a crash loses at most that.
func (r *Runner) persist() {
	defer r.wg.Done()
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.save()
		}
	}
}

func (r *Runner) save() {
	if r.opts.HistoryPath == "" {
		return
	}
	r.mu.Lock()
	if !r.dirty {
		r.mu.Unlock()
		return
	}
	cp := make(map[string]history, len(r.history))
	for k, v := range r.history {
		cp[k] = slices.Clone(v)
	}
	r.dirty = false
	r.mu.Unlock()
	if err := saveHistory(r.opts.HistoryPath, cp); err != nil {
		r.log.Error("probe history not saved", zap.Error(err))
	}
}

// run does one probe request and records it.
func (r *Runner) run(ctx context.Context, p *probe) {
	c := p.cfg
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	start := r.opts.Now()
	status, err := fetch(ctx, p.client, c.URL)
	d := r.opts.Now().Sub(start)
	if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled) && err != nil {
		return // stopped (a reload or Close), not a result
	}
	ok := err == nil && status == c.ExpectStatus
	reason := ""
	switch {
	case err != nil:
		reason = err.Error()
	case !ok:
		reason = fmt.Sprintf("status %d, want %d", status, c.ExpectStatus)
	}
	r.mu.Lock()
	if r.probes[c.Name] == p { // not replaced by a reload meanwhile
		p.checked, p.up = start, ok
		if ok {
			p.consecutive = 0
		} else {
			p.consecutive++
			p.lastFailure, p.lastError = start, reason
		}
		hs := r.history[c.Name]
		hs.record(start, ok, d)
		r.history[c.Name] = hs
		r.dirty = true
		r.metrics.observe(c.Name, ok, d) // under r.mu: a reload that removes the probe forgets its series
	}
	r.mu.Unlock()
	if ce := r.log.Check(zap.InfoLevel, "request"); ce != nil {
		f := []zap.Field{zap.String("door", "probe"), zap.String("probe", c.Name), zap.String("listener", c.Listener),
			zap.String("user", c.User), zap.String("target", c.URL), zap.Int("status", status),
			zap.Float64("duration_s", d.Seconds())}
		if reason != "" {
			f = append(f, zap.String("reason", reason))
		}
		ce.Write(f...)
	}
}

// fetch GETs u and reads the body (up to 64 KiB), so the time covers the whole response.
func fetch(ctx context.Context, client *http.Client, u string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("User-Agent", "fixedgate-probe")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)); err != nil {
		return resp.StatusCode, fmt.Errorf("reading the body: %w", err)
	}
	return resp.StatusCode, nil
}

// client builds the HTTP client of one probe: a new connection per run, entering through the
// probe's listener, verifying the listener and the target as a customer's client would.
func (r *Runner) client(c Config) (*http.Client, error) {
	var ln *Listener
	for i := range r.opts.Listeners {
		if r.opts.Listeners[i].Address == c.Listener {
			ln = &r.opts.Listeners[i]
		}
	}
	if ln == nil {
		return nil, fmt.Errorf("listener: %s is not one of listen[]", c.Listener)
	}
	listenerCA, targetCA := r.opts.ListenerCA, r.opts.TargetCA
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		if c.Via == ViaGateway {
			listenerCA = pem
		} else {
			targetCA = pem
		}
	}
	roots, err := pool(listenerCA, targetCA)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		DisableKeepAlives:   true, // every run crosses accept and the TLS handshake, as a new customer does
		TLSClientConfig:     &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: c.Timeout,
	}
	var d net.Dialer
	// The probe reaches the listener's address whatever name it uses for it.
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, c.Listener)
	}
	switch c.Via {
	case ViaConnect:
		scheme, host := "http", c.Listener
		if ln.TLS {
			scheme = "https"
			if r.opts.ListenerName != "" {
				_, port, _ := net.SplitHostPort(c.Listener)
				host = net.JoinHostPort(r.opts.ListenerName, port)
			}
		}
		pu := &url.URL{Scheme: scheme, Host: host}
		if c.User != "" {
			pu.User = url.UserPassword(c.User, c.Key)
		}
		tr.Proxy = http.ProxyURL(pu) // the target itself is dialled by the proxy
	case ViaGateway:
		if !ln.TLS {
			return nil, fmt.Errorf("listener: %s is a plain listener; the gateway door is served on TLS listeners", c.Listener)
		}
		if c.User != "" {
			return nil, errors.New("user: the gateway door takes no proxy credentials")
		}
	}
	return &http.Client{Transport: tr, Timeout: c.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, nil
}

// pool is the system roots, or the PEM bundles given, or both.
func pool(pems ...[]byte) (*x509.CertPool, error) {
	var p *x509.CertPool
	system := false
	for _, b := range pems {
		if b == nil {
			system = true
		}
	}
	if system {
		sp, err := x509.SystemCertPool()
		if err != nil {
			sp = x509.NewCertPool()
		}
		p = sp
	} else {
		p = x509.NewCertPool()
	}
	for _, b := range pems {
		if b != nil && !p.AppendCertsFromPEM(b) {
			return nil, errors.New("ca_file: no PEM certificate in it")
		}
	}
	return p, nil
}

// Status is a probe's results for the status page and /readyz.
type Status struct {
	Name                string
	Up                  bool
	Checked             time.Time // zero: not run yet
	LastFailure         time.Time
	ConsecutiveFailures int
	LastError           string
	Readiness           bool
	Windows             [3]Window // 1h, 24h, 7d
	Hours               []Hour    // the last 24, oldest first
}

// Windows are the spans of Status.Windows.
var Windows = [3]time.Duration{time.Hour, 24 * time.Hour, 7 * 24 * time.Hour}

// Statuses returns every probe's results, by name.
func (r *Runner) Statuses() []Status {
	now := r.opts.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Status, 0, len(r.probes))
	for name, p := range r.probes {
		s := Status{Name: name, Up: p.up, Checked: p.checked, LastFailure: p.lastFailure,
			ConsecutiveFailures: p.consecutive, LastError: p.lastError, Readiness: p.cfg.Readiness}
		hs := r.history[name]
		for i, span := range Windows {
			s.Windows[i] = hs.window(now, span)
		}
		s.Hours = hs.last24(now)
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Ready fails while a probe with readiness: true has failed 3 times in a row.
func (r *Runner) Ready() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, p := range r.probes {
		if p.cfg.Readiness && p.consecutive >= 3 {
			return fmt.Errorf("probe %s failed %d times in a row: %s", name, p.consecutive, p.lastError)
		}
	}
	return nil
}
