package resolver

import (
	"slices"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// settings are what SetConfig replaces: the section and what derives from it. A value is
// immutable once published; each operation (a slow lookup, a refresh, a scheduler pass) loads it
// once, so that it sees one consistent set while a reload swaps them. The warm path needs none.
type settings struct {
	cfg        Config        // Servers is a private copy
	servers    []string      // host:port
	serverNote string        // why the fallback server is used; empty otherwise
	idle       time.Duration // a name is in use while looked up within this: 2×max_ttl
	udp, tcp   *dns.Client   // with cfg.Timeout
}

// newSettings derives the settings for a valid cfg, reading /etc/resolv.conf if cfg has no
// servers.
func newSettings(cfg Config) *settings {
	cfg.Servers = slices.Clone(cfg.Servers)
	s := &settings{
		cfg:  cfg,
		idle: 2 * cfg.MaxTTL,
		udp:  &dns.Client{Net: "udp", UDPSize: ednsSize, Timeout: cfg.Timeout},
		tcp:  &dns.Client{Net: "tcp", Timeout: cfg.Timeout},
	}
	s.servers, s.serverNote = servers(cfg.Servers)
	return s
}

// changes lists, as log fields holding the new values, what differs from s in next. The
// servers count as changed when the section's list or the one it resolves to changed.
func (s *settings) changes(next *settings) []zap.Field {
	o, n := s.cfg, next.cfg
	var f []zap.Field
	if !slices.Equal(o.Servers, n.Servers) || !slices.Equal(s.servers, next.servers) || s.serverNote != next.serverNote {
		f = append(f, zap.Strings("servers", next.servers))
	}
	if o.MinTTL != n.MinTTL {
		f = append(f, zap.Duration("min_ttl", n.MinTTL))
	}
	if o.MaxTTL != n.MaxTTL {
		f = append(f, zap.Duration("max_ttl", n.MaxTTL))
	}
	if o.StaleIfError != n.StaleIfError {
		f = append(f, zap.Duration("stale_if_error", n.StaleIfError))
	}
	if o.CacheSize != n.CacheSize {
		f = append(f, zap.Int("cache_size", n.CacheSize))
	}
	if o.Timeout != n.Timeout {
		f = append(f, zap.Duration("timeout", n.Timeout))
	}
	return f
}

// warnFallback logs that s uses the fallback server, if it does.
func (r *Resolver) warnFallback(s *settings) {
	if s.serverNote != "" {
		r.log.Warn("no usable DNS servers in "+resolvConf+"; using "+fallbackServer,
			zap.String("server", fallbackServer), zap.String("error", s.serverNote))
	}
}

// SetConfig applies a new `resolver:` section to the running resolver, for a configuration
// reload. An invalid cfg is refused with Validate's error (relative to `resolver:`, like
// Validate's) and changes nothing. Otherwise:
//
//   - Lookups and refreshes already in flight finish with the settings they started with; later
//     ones use cfg's servers and timeout. With cfg.Servers empty, /etc/resolv.conf is read again.
//   - Cached addresses keep the expiry they were given. The new min_ttl and max_ttl clamp the
//     next answer for each name, and its next refresh is scheduled from that answer.
//   - A smaller cache_size evicts the least recently used names at once.
//   - A new max_ttl (which sets how long an unused name is kept) or stale_if_error applies to
//     every cached name's schedule.
//
// When nothing differs (the same section, and the same servers from /etc/resolv.conf), it does
// nothing; otherwise it logs the changed settings. It is safe to call concurrently with lookups
// and with itself.
func (r *Resolver) SetConfig(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	r.setMu.Lock()
	defer r.setMu.Unlock()
	old, next := r.set.Load(), newSettings(cfg)
	changed := old.changes(next)
	if len(changed) == 0 {
		return nil
	}
	r.set.Store(next)
	if next.cfg.CacheSize != old.cfg.CacheSize {
		r.cache.Resize(next.cfg.CacheSize) // evictions go through onEvict, to the scheduler
	}
	if next.idle != old.idle || next.cfg.StaleIfError != old.cfg.StaleIfError {
		// Every cached name's next visit was computed from the old values: recompute it.
		for _, e := range r.cache.Values() {
			r.markDirty(e)
		}
	}
	r.warnFallback(next)
	r.log.Info("resolver settings changed", changed...)
	return nil
}
