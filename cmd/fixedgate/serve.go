package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/fixedgate/fixedgate/proxy"
	"github.com/fixedgate/fixedgate/proxy/egress"
	"github.com/fixedgate/fixedgate/proxy/probe"
	"github.com/fixedgate/fixedgate/proxy/resolver"
	"github.com/fixedgate/fixedgate/proxy/status"
	fgtls "github.com/fixedgate/fixedgate/tls"

	"github.com/fixedgate/fixedgate/ipranges"
	"github.com/fixedgate/fixedgate/ipranges/handler"
	"github.com/fixedgate/fixedgate/ipranges/live"
)

func cmdServe(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	path := fs.String("config", "", "config file (YAML); without it, a loopback dev setup starts")
	dataDir := fs.String("data", defaultDataDir(), "dev setup only: where the local CA is kept")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var cfg *Config
	var sum string
	dev := *path == ""
	if dev {
		c := devConfig(*dataDir)
		cfg = &c
	} else {
		var err error
		if cfg, sum, err = readConfig(*path); err != nil {
			return err
		}
	}
	log, level := newLeveledLogger(cfg.Log, stderr)
	defer log.Sync()
	a, err := startApp(cfg, log)
	if err != nil {
		return err
	}
	a.level = level
	a.setConfigInfo(sum)
	if dev {
		printDevHints(stdout, a)
	}
	a.logReady()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	for s := range sigs {
		if s == syscall.SIGHUP {
			a.onSIGHUP(*path)
			continue
		}
		log.Info("shutting down", zap.String("signal", s.String()), zap.Duration("grace", a.current.Load().ShutdownGrace))
		break
	}
	signal.Stop(sigs)
	ctx, cancel := context.WithTimeout(context.Background(), a.current.Load().ShutdownGrace)
	defer cancel()
	if err := a.shutdown(ctx); err != nil {
		log.Warn("shutdown grace period over; remaining connections were closed", zap.Error(err))
	}
	log.Info("stopped")
	return nil
}

// onSIGHUP reloads what SIGHUP reloads: the config file (when serve runs with --config), the
// certificate files and the contract. Each stands alone: a config that fails leaves the running
// one in force and does not stop the others.
func (a *app) onSIGHUP(path string) {
	if path == "" {
		a.log.Warn("SIGHUP: no --config to reload (dev setup)")
	} else if changed, sum, err := a.reload(path); err != nil {
		a.reloadMet.reloads.WithLabelValues("error").Inc()
		a.log.Error("SIGHUP: config not reloaded; the running config stays in force", zap.Error(err))
	} else {
		a.reloadMet.reloads.WithLabelValues("success").Inc()
		// The line is written at the old level or, when that one hides it, at the new.
		logged := a.level.Enabled(zapcore.InfoLevel)
		if logged {
			a.log.Info("SIGHUP: config reloaded", zap.String("sha256", sum), zap.Strings("changed", changed))
		}
		if l, err := zapcore.ParseLevel(a.current.Load().Log.Level); err == nil {
			a.level.SetLevel(l)
		}
		if !logged {
			a.log.Info("SIGHUP: config reloaded", zap.String("sha256", sum), zap.Strings("changed", changed))
		}
	}
	if a.tls != nil {
		if err := a.tls.Reload(context.Background()); err != nil {
			a.log.Error("SIGHUP: tls.files not reloaded; the previous certificates stay in use", zap.Error(err))
		}
	}
	if a.contract != nil {
		if err := a.contract.Reload(); err == nil {
			a.log.Info("SIGHUP: contract reloaded", zap.String("sync_token", a.contract.Current().SyncToken))
		}
	}
}

func defaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "fixedgate")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "fixedgate")
	}
	return "fixedgate-data"
}

// app is one running fixedgate: listeners, admin endpoint and what they share.
type app struct {
	cfg       *Config                // as started: the keys a reload cannot change are read here
	current   atomic.Pointer[Config] // as last loaded (SIGHUP)
	level     zap.AtomicLevel        // log.level
	dialer    *egress.Dialer         // egress, for the dial timeout
	reserved  []netip.AddrPort       // the admin listener, which the forward door never dials
	reg       *prometheus.Registry   // every metric
	reloadMet *reloadMetrics
	log       *zap.Logger
	tls       *fgtls.Manager
	resolver  *resolver.Resolver
	// contract is the ip-ranges contract in force (nil without ipranges.state); contractHTTP
	// serves it on every listener and the admin listener.
	contract     *live.Contract
	contractHTTP *handler.Handler
	proxyReady   atomic.Bool // a.proxy is set: contract changes reconcile its listeners
	proxy        *proxy.Server
	probes       *probe.Runner
	incidents    *status.Store   // the status page's incident updates, beside the contract
	statusAdmin  *status.Handler // /status on the admin listener: everything
	statusPublic *status.Handler // /status on the public listeners (status.public): nothing internal
	admin        *http.Server
	adminLn      net.Listener
}

// startApp builds everything from cfg, binds every socket and starts serving. Any failure
// (an egress address missing on the host, a listener that cannot bind) stops it with nothing left
// open.
func startApp(cfg *Config, log *zap.Logger) (_ *app, err error) {
	a := &app{cfg: cfg, log: log, level: zap.NewAtomicLevel()}
	a.current.Store(cfg)
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	if cfg.hasTLSListener() {
		tlsCfg := cfg.TLS
		if ss := tlsCfg.SelfSigned; ss != nil {
			cp := *ss
			cp.Names = append(slices.Clip(cp.Names), cfg.routeHosts()...)
			tlsCfg.SelfSigned = &cp
		}
		for _, l := range cfg.Listen {
			if l.TLS && tlsCfg.ListenerAddress == "" {
				tlsCfg.ListenerAddress = l.Address // ACME TLS-ALPN-01 is answered here
			}
		}
		if a.tls, err = fgtls.New(context.Background(), tlsCfg, cfg.listenIPs(), log.Named("tls")); err != nil {
			return nil, err
		}
	}
	upstreamTLS, err := cfg.UpstreamTLS.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("upstream_tls: %w", err)
	}
	dialer, err := egress.New(cfg.Egress, cfg.Limits.DialTimeout)
	if err != nil {
		return nil, err
	}
	a.dialer = dialer
	reg := prometheus.NewRegistry()
	a.reg = reg
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.reloadMet = newReloadMetrics(reg)
	if a.tls != nil {
		reg.MustRegister(a.tls) // fixedgate_tls_certificate_expiry_seconds
	}
	// The resolver exists before the proxy whose pools it tells about fleet changes.
	var srv atomic.Pointer[proxy.Server]
	res, err := resolver.NewWithOptions(cfg.Resolver, resolver.Options{
		Registerer: reg,
		Logger:     log.Named("resolver"),
		OnChange: func(host string, fleet []netip.Addr) {
			if s := srv.Load(); s != nil {
				s.FleetChanged(host, fleet)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("resolver: %w", err)
	}
	a.resolver = res
	// The contract: loaded before anything binds; a broken one stops the start.
	var doc *ipranges.Document
	if cfg.IPRanges.State != "" {
		var key ed25519.PrivateKey
		if cfg.IPRanges.SigningKey != "" {
			if key, err = ipranges.LoadSigningKey(cfg.IPRanges.SigningKey); err != nil {
				return nil, fmt.Errorf("ipranges.signing_key: %w", err)
			}
		}
		a.contractHTTP = handler.New(handler.Options{MaxAge: cfg.IPRanges.MaxAge, SigningKey: key, Logger: log.Named("ipranges")})
		a.contract, err = live.Open(live.Options{
			Path: cfg.IPRanges.State, Notice: cfg.IPRanges.Notice,
			Logger: log.Named("ipranges"), Registerer: reg,
			OnChange: func(d *ipranges.Document, now time.Time) { a.applyContract(d, now, dialer) },
		})
		if err != nil {
			return nil, err
		}
		doc = a.contract.Current()
	}
	if err := cfg.checkAgainstContract(doc, time.Now()); err != nil {
		return nil, fmt.Errorf("contract: %w", err)
	}
	if cfg.Admin.Listen != "" {
		a.reserved = append(a.reserved, netip.MustParseAddrPort(cfg.Admin.Listen))
	}
	// The probes and the status page exist before the proxy, whose listeners serve the public
	// page; the probes start once the listeners accept.
	if a.probes, err = probe.New(cfg.Probes, a.probeOptions(cfg)); err != nil {
		return nil, err
	}
	a.startStatus(reg)
	opts := a.proxyOptions(cfg, upstreamTLS)
	opts.StatusPage = a.statusPublic
	if a.contract != nil {
		opts.Contract = a.contractHTTP
		opts.IngressInUse = func(addr netip.Addr) bool {
			return addr.IsUnspecified() || a.contract.Current().InUse(addr, ipranges.Ingress, time.Now())
		}
	}
	if a.tls != nil {
		opts.TLS = a.tls
	}
	if a.proxy, err = proxy.New(opts); err != nil {
		return nil, err
	}
	srv.Store(a.proxy)
	a.proxyReady.Store(true)
	if cfg.Admin.Listen != "" {
		if a.adminLn, err = net.Listen("tcp", cfg.Admin.Listen); err != nil {
			return nil, fmt.Errorf("admin.listen %s: %w", cfg.Admin.Listen, err)
		}
	}
	if err = a.proxy.Listen(); err != nil {
		return nil, err
	}
	a.proxy.Serve()
	a.probes.Start()
	if a.tls != nil {
		// ACME starts once the TLS listeners accept: TLS-ALPN-01 is answered there.
		if err = a.tls.Start(); err != nil {
			return nil, err
		}
	}
	if a.adminLn != nil {
		a.admin = &http.Server{Handler: a.adminHandler(reg), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
		go func() {
			if err := a.admin.Serve(a.adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("admin listener stopped", zap.Error(err))
			}
		}()
	}
	return a, nil
}

// logReady writes the "ready" line that operators and the tests wait for; callers print
// anything meant for the terminal before it.
func (a *app) logReady() {
	egressIPs := make([]string, 0, len(a.cfg.Egress.Addresses))
	for _, e := range a.cfg.Egress.Addresses {
		egressIPs = append(egressIPs, e.String())
	}
	a.log.Info("ready", zap.String("version", versionString()), zap.Strings("egress", egressIPs), zap.String("admin", a.cfg.Admin.Listen),
		zap.String("status_page", a.statusURLs()))
}

func (a *app) adminHandler(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		// Every reason at once: an operator fixing one should not discover the next afterwards.
		var why []string
		if err := a.proxy.Ready(ctx); err != nil {
			why = append(why, err.Error())
		}
		if a.tls != nil {
			if err := a.tls.Ready(); err != nil {
				why = append(why, err.Error())
			}
		}
		if err := a.probes.Ready(); err != nil {
			why = append(why, err.Error())
		}
		if len(why) > 0 {
			http.Error(w, "not ready: "+strings.Join(why, "; "), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	for _, p := range status.Paths {
		mux.Handle(p, a.statusAdmin)
	}
	if a.contractHTTP != nil {
		for _, p := range handler.Paths {
			mux.Handle(p, a.contractHTTP)
		}
	}
	return mux
}

// shutdown drains the proxy within ctx, then stops the admin listener.
func (a *app) shutdown(ctx context.Context) error {
	a.probes.Close() // before the listeners they walk through go
	err := a.proxy.Shutdown(ctx)
	a.close()
	return err
}

// close releases whatever is open without waiting.
func (a *app) close() {
	if a.probes != nil {
		a.probes.Close()
	}
	a.incidents.Close() // nil-safe
	if a.admin != nil {
		a.admin.Close()
	} else if a.adminLn != nil {
		a.adminLn.Close()
	}
	if a.tls != nil {
		a.tls.Close()
	}
	if a.resolver != nil {
		a.resolver.Close()
	}
	if a.contract != nil {
		a.contract.Close()
	}
	if a.contractHTTP != nil {
		a.contractHTTP.Close()
	}
}

// applyContract puts the contract in force at now: the served document, the egress addresses
// new connections may use, and the listeners that may be bound. It runs at start, on every
// reload and at every transition time in the document.
func (a *app) applyContract(doc *ipranges.Document, now time.Time, dialer *egress.Dialer) {
	a.contractHTTP.Set(doc)
	in, waiting, use := egressInUse(doc, a.cfg.Egress.Addresses, now)
	dialer.SetActive(use)
	a.log.Info("contract in force", zap.String("sync_token", doc.SyncToken),
		zap.String("egress_in_use", joinOrNone(in)), zap.String("egress_waiting", joinOrNone(waiting)))
	if a.proxyReady.Load() {
		if err := a.proxy.Reconcile(); err != nil {
			a.log.Error("contract: a listener could not be bound", zap.Error(err))
		}
		var out []netip.Addr
		for _, e := range a.cfg.Egress.Addresses {
			if !slices.Contains(use, e.Unmap()) {
				out = append(out, e.Unmap())
			}
		}
		if n := a.proxy.EgressRetired(out); n > 0 {
			a.log.Info("contract: tunnels from egress addresses out of use closed", zap.Int("tunnels", n), zap.Stringers("egress", out))
		}
	}
}

func printDevHints(w io.Writer, a *app) {
	fmt.Fprintf(w, `fixedgate dev setup (no --config): loopback only, no credentials, SSRF guard on.
  plain proxy:  http://127.0.0.1:3128
  TLS proxy:    https://127.0.0.1:3129   (local CA: %s)
  admin:        http://%s/metrics

try:
  curl --proxy http://127.0.0.1:3128 https://example.com/
  curl --proxy https://127.0.0.1:3129 --proxy-cacert %s https://example.com/
`, a.tls.CAPath(), a.cfg.Admin.Listen, a.tls.CAPath())
}
