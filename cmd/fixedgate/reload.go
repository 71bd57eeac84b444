package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/fixedgate/fixedgate/proxy"
	"github.com/fixedgate/fixedgate/proxy/probe"
)

// What SIGHUP applies live, and what it does not: the sections a reload swaps in while the proxy
// runs are forward, routes, gateway, health, resolver, upstream_tls, limits (for new
// connections), log.level and shutdown_grace. The others fix sockets, certificates or files the
// running process holds: a reload that changes one of them is refused as a whole, naming the
// keys, and the running config stays in force until a restart.

// restartOnly names the keys of next that differ from cur and cannot change without a restart.
func restartOnly(cur, next *Config) []string {
	var keys []string
	for _, k := range []struct {
		key  string
		a, b any
	}{
		{"listen", cur.Listen, next.Listen},
		{"public_ips", cur.PublicIPs, next.PublicIPs},
		{"tls", cur.TLS, next.TLS},
		{"egress", cur.Egress, next.Egress},
		{"admin", cur.Admin, next.Admin},
		{"ipranges", cur.IPRanges, next.IPRanges},
		{"log.format", cur.Log.Format, next.Log.Format},
		{"log.flush_interval", cur.Log.FlushInterval, next.Log.FlushInterval},
	} {
		if !reflect.DeepEqual(k.a, k.b) {
			keys = append(keys, k.key)
		}
	}
	return keys
}

// changedSections names the sections of next that differ from cur, for the reload's log line.
func changedSections(cur, next *Config) []string {
	var out []string
	cv, nv := reflect.ValueOf(*cur), reflect.ValueOf(*next)
	for i := range cv.NumField() {
		if !reflect.DeepEqual(cv.Field(i).Interface(), nv.Field(i).Interface()) {
			tag, _, _ := strings.Cut(cv.Type().Field(i).Tag.Get("yaml"), ",")
			out = append(out, tag)
		}
	}
	return out
}

// errRestartNeeded marks a reload refused because a key that needs a restart changed.
var errRestartNeeded = errors.New("a restart is needed")

// reload reads path again and applies it live; on any error nothing changes. It returns the
// sections that changed and the file's SHA-256. The caller applies log.level, after logging the
// reload if the level in force lets it.
func (a *app) reload(path string) (changed []string, sum string, err error) {
	next, sum, err := readConfig(path)
	if err != nil {
		return nil, "", err
	}
	cur := a.current.Load()
	if keys := restartOnly(cur, next); len(keys) > 0 {
		return nil, "", fmt.Errorf("config %s: %s changed: %w to apply %s (the running config stays in force)",
			path, strings.Join(keys, ", "), errRestartNeeded, map[bool]string{true: "it", false: "them"}[len(keys) == 1])
	}
	upstreamTLS, err := next.UpstreamTLS.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("config %s: upstream_tls: %w", path, err)
	}
	if a.tls != nil {
		// A self-signed certificate names the routes' hosts: a new one needs a new certificate.
		if err := a.tls.CoverNames(context.Background(), next.routeHosts()); err != nil {
			return nil, "", fmt.Errorf("config %s: routes: %w", path, err)
		}
	}
	targetCA, err := readOptional(next.UpstreamTLS.CAFile)
	if err != nil {
		return nil, "", fmt.Errorf("config %s: upstream_tls.ca_file: %w", path, err)
	}
	if err := a.probes.Check(next.Probes, targetCA); err != nil {
		return nil, "", fmt.Errorf("config %s: %w", path, err)
	}
	if err := a.proxy.Reconfigure(a.proxyOptions(next, upstreamTLS)); err != nil {
		return nil, "", fmt.Errorf("config %s: %w", path, err)
	}
	if err := a.probes.Reconfigure(next.Probes, targetCA); err != nil {
		a.log.Error("probes not reloaded", zap.Error(err)) // Check accepted them: not expected
	}
	// Validated with the file: these cannot fail now.
	if err := a.resolver.SetConfig(next.Resolver); err != nil {
		a.log.Error("resolver settings not applied", zap.Error(err))
	}
	a.dialer.SetTimeout(next.Limits.DialTimeout)
	a.current.Store(next)
	a.setConfigInfo(sum)
	return changedSections(cur, next), sum, nil
}

// proxyOptions builds the proxy's Options from cfg; the collaborators that live as long as the
// process (TLS manager, egress, resolver, contract, metrics) are the app's.
func (a *app) proxyOptions(cfg *Config, upstreamTLS *tls.Config) proxy.Options {
	return proxy.Options{
		Listen:      cfg.Listen,
		Forward:     cfg.Forward,
		Routes:      cfg.Routes,
		Gateway:     cfg.Gateway,
		Health:      cfg.Health,
		Limits:      cfg.Limits,
		UpstreamTLS: upstreamTLS,
		Egress:      a.dialer,
		Resolver:    a.resolver,
		Reserved:    a.reserved,
		Log:         a.log,
		Registerer:  a.reg,
	}
}

// reloadMetrics are fixedgate_config_reloads_total{result} and fixedgate_config_info{sha256}.
type reloadMetrics struct {
	reloads *prometheus.CounterVec
	info    *prometheus.GaugeVec
}

func newReloadMetrics(reg prometheus.Registerer) *reloadMetrics {
	m := &reloadMetrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fixedgate_config_reloads_total",
			Help: "Config reloads (SIGHUP) by result: success, or error (the running config stayed in force).",
		}, []string{"result"}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fixedgate_config_info",
			Help: "The config running now: 1, labelled with the SHA-256 of its file (empty without --config).",
		}, []string{"sha256"}),
	}
	reg.MustRegister(m.reloads, m.info)
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("error")
	return m
}

func (a *app) setConfigInfo(sum string) {
	a.reloadMet.info.Reset()
	a.reloadMet.info.WithLabelValues(sum).Set(1)
}

// probeOptions is what the probe runner needs of cfg and the running process.
func (a *app) probeOptions(cfg *Config) probe.Options {
	o := probe.Options{Log: a.log, Registerer: a.reg}
	for _, l := range cfg.Listen {
		o.Listeners = append(o.Listeners, probe.Listener{Address: l.AddrPort().String(), TLS: l.TLS})
	}
	switch {
	case cfg.TLS.DefaultName != "":
		o.ListenerName = cfg.TLS.DefaultName
	case cfg.TLS.ACME != nil && len(cfg.TLS.ACME.Domains) > 0:
		o.ListenerName = cfg.TLS.ACME.Domains[0]
	}
	if a.tls != nil && cfg.TLS.SelfSigned != nil {
		o.ListenerCA, _ = os.ReadFile(a.tls.CAPath()) // the local CA the listeners' certificate comes from
	}
	o.TargetCA, _ = readOptional(cfg.UpstreamTLS.CAFile) // validated with the config
	if cfg.IPRanges.State != "" {
		o.HistoryPath = filepath.Join(filepath.Dir(cfg.IPRanges.State), "probe-history.json")
	}
	return o
}

// readOptional reads path, or returns nil for an empty path.
func readOptional(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	return os.ReadFile(path)
}
