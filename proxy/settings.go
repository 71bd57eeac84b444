package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/fixedgate/fixedgate/proxy/limit"
	"github.com/fixedgate/fixedgate/proxy/policy"
)

// settings is everything a reload replaces: built whole from Options, swapped in atomically,
// and taken by each request and tunnel when it starts, which keeps it to its end. Nothing in it
// changes after newSettings.
type settings struct {
	forward     ForwardConfig
	gw          GatewayConfig
	limits      Limits
	upstreamTLS *tls.Config
	policy      *policy.Policy
	auth        *authenticator // nil: no forward.users, no credentials asked
	gateway     *gateway
	userLimits  map[string]limit.Config // forward.users' own limits, over limits.per_client
}

// newSettings checks the reloadable parts of opts and builds them; self is the proxy's own
// listeners and admin address, which the policy always refuses.
func newSettings(opts Options, self []netip.AddrPort) (*settings, error) {
	pol, err := policy.New(policy.Config{
		Allow:         opts.Forward.Allow,
		AllowNetworks: opts.Forward.AllowNetworks,
		Self:          self,
		LocalAddrs:    localAddrs(),
	})
	if err != nil {
		return nil, fmt.Errorf("forward: %w", err)
	}
	gw, err := newGateway(opts.Routes)
	if err != nil {
		return nil, err
	}
	ul := make(map[string]limit.Config, len(opts.Forward.Users))
	for _, u := range opts.Forward.Users {
		ul[u.Name] = opts.Limits.PerClient.Over(u.Limits)
	}
	return &settings{
		userLimits:  ul,
		forward:     opts.Forward,
		gw:          opts.Gateway,
		limits:      opts.Limits,
		upstreamTLS: opts.UpstreamTLS,
		policy:      pol,
		auth:        newAuthenticator(opts.Forward.Users),
		gateway:     gw,
	}, nil
}

// cur returns the settings in force now.
func (s *Server) cur() *settings { return s.set.Load() }

// Reconfigure applies opts live: forward (users, allow, allow_networks), routes, gateway,
// health, limits and upstream_tls. Requests and tunnels in flight finish under the settings they
// started with, except tunnels the new settings refuse (their user is gone or its key changed,
// credentials are now required, or their destination is no longer allowed): those are closed,
// and their summary line says reason=policy_reload. New connections take the new limits. The
// other Options (listeners, TLS, egress, resolver, contract) are not reloaded here; their
// fields in opts are ignored. On error nothing changes.
func (s *Server) Reconfigure(opts Options) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	next, err := newSettings(opts, s.self)
	if err != nil {
		return err
	}
	if err := s.health.SetConfig(opts.Health); err != nil {
		return fmt.Errorf("health: %w", err)
	}
	for _, rt := range next.gateway.routes {
		rt.backendDuration = s.metrics.backendDuration.WithLabelValues(rt.name)
	}
	prev := s.set.Swap(next)
	s.retryBudget.SetRatio(float64(opts.Gateway.RetryBudgetPercent) / 100)
	if connLimits(prev.limits) != connLimits(next.limits) {
		s.applyLimits(next.limits)
	}
	if !sameUpstreamTLS(prev.upstreamTLS, next.upstreamTLS) ||
		prev.limits.ResponseHeaderTimeout != next.limits.ResponseHeaderTimeout ||
		prev.limits.MaxHeaderBytes != next.limits.MaxHeaderBytes {
		s.retirePools(func(netip.Addr) bool { return true }, func(transportKey) bool { return true })
	}
	s.restartChecks(next)
	s.metrics.forgetUsers(removedUsers(prev.forward.Users, next.forward.Users))
	s.metrics.forgetRoutes(removedUpstreams(prev.gateway.routes, next.gateway.routes))
	revoked := s.tunnels.revoke(next)
	s.log.Info("proxy settings reloaded", zap.Int("routes", len(next.gateway.routes)),
		zap.Int("users", len(next.forward.Users)), zap.Int("allow_rules", len(next.forward.Allow)),
		zap.Int("tunnels_revoked", revoked))
	return nil
}

// refuses says why t may not stay open under st: "" when it may.
func (st *settings) refuses(t *tunnelEntry) string {
	if st.auth != nil {
		switch {
		case t.viaCert:
			if !st.auth.known(t.user) {
				return "client certificate subject " + t.user + " is no longer in forward.users"
			}
		case t.user == "":
			return "proxy credentials are now required"
		default:
			if k, ok := st.auth.keys[t.user]; !ok || k != t.key {
				return "user " + t.user + " was removed or its key changed"
			}
		}
	}
	if _, err := st.policy.Allow(t.target); err != nil {
		return deniedReason(err)
	}
	if err := st.policy.CheckAddr(t.dialed.Addr(), t.dialed.Port()); err != nil {
		return deniedReason(err)
	}
	return ""
}

// applyLimits hands new limits to every listener: new connections take them.
func (s *Server) applyLimits(l Limits) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ls := range s.listeners {
		if ll, ok := ls.ln.(*limitListener); ok {
			ll.setMax(l.MaxConnsPerListener)
		}
		for _, cs := range ls.srvs {
			cs.setLimits(l)
		}
	}
}

// retirePools drops the pools of connections to origins (forward door, by egress address) and
// to backends (gateway) that match: requests in flight finish on their connections, idle ones
// are closed, and the next request dials anew. A nil matcher matches nothing.
func (s *Server) retirePools(fwd func(src netip.Addr) bool, gw func(transportKey) bool) {
	var old []*http.Transport
	if fwd != nil {
		s.mu.Lock()
		for src, t := range s.transports {
			if fwd(src) {
				old = append(old, t)
				delete(s.transports, src)
			}
		}
		for src := range s.unpooled { // nothing idle to close: made again with the new settings
			if fwd(src) {
				delete(s.unpooled, src)
			}
		}
		s.mu.Unlock()
	}
	now := time.Now()
	s.poolsMu.Lock()
	defer s.poolsMu.Unlock()
	for _, t := range old {
		t.CloseIdleConnections()
		s.retired = append(s.retired, retiredTransport{t: t, at: now})
	}
	if gw != nil {
		for k, t := range s.gwTransports {
			if gw(k) {
				t.CloseIdleConnections()
				delete(s.gwTransports, k)
				s.retired = append(s.retired, retiredTransport{t: t, at: now})
			}
		}
	}
	// A retired pool's busy connections become idle later; close them as they do, for as long
	// as a response may take.
	keep := s.retired[:0]
	for _, r := range s.retired {
		r.t.CloseIdleConnections()
		if now.Sub(r.at) < s.cur().limits.ResponseHeaderTimeout+time.Minute {
			keep = append(keep, r)
		}
	}
	s.retired = keep
}

// restartChecks stops the active health checks of the previous routes and starts those of st's.
func (s *Server) restartChecks(st *settings) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.serving || s.shutdown {
		return
	}
	if s.stopChecks != nil {
		s.stopChecks()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stopChecks = cancel
	s.runChecks(ctx, st)
}

// sameUpstreamTLS reports whether two client TLS templates verify and present the same: the
// pools built on one serve the other.
func sameUpstreamTLS(a, b *tls.Config) bool {
	switch {
	case a == b:
		return true
	case a == nil || b == nil:
		return false
	case a.MinVersion != b.MinVersion, a.MaxVersion != b.MaxVersion,
		a.InsecureSkipVerify != b.InsecureSkipVerify, !slices.Equal(a.CurvePreferences, b.CurvePreferences),
		!slices.Equal(a.CipherSuites, b.CipherSuites), len(a.Certificates) != len(b.Certificates):
		return false
	case (a.RootCAs == nil) != (b.RootCAs == nil), a.RootCAs != nil && !a.RootCAs.Equal(b.RootCAs):
		return false
	}
	for i := range a.Certificates {
		if !slices.EqualFunc(a.Certificates[i].Certificate, b.Certificates[i].Certificate, bytes.Equal) {
			return false
		}
	}
	return true
}

// removedUsers returns the names in prev that next no longer has.
func removedUsers(prev, next []User) []string {
	var out []string
	for _, u := range prev {
		if !slices.ContainsFunc(next, func(n User) bool { return n.Name == u.Name }) {
			out = append(out, u.Name)
		}
	}
	return out
}

// removedUpstreams returns the upstream names of prev's routes that no route of next has.
func removedUpstreams(prev, next []*gwRoute) []string {
	var out []string
	for _, r := range prev {
		if !slices.ContainsFunc(next, func(n *gwRoute) bool { return n.name == r.name }) && !slices.Contains(out, r.name) {
			out = append(out, r.name)
		}
	}
	return out
}

// connLimits is what of l the listeners' connection servers use.
func connLimits(l Limits) Limits {
	l.PerClient, l.AuthFailures = limit.Config{}, limit.AuthFailures{}
	return l
}

// clientLimits are the limits of the request's customer: its user's, or limits.per_client.
func (st *settings) clientLimits(user string) limit.Config {
	if c, ok := st.userLimits[user]; ok {
		return c
	}
	return st.limits.PerClient
}
