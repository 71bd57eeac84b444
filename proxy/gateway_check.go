package proxy

// Active health checks of the routes' backends, and the routes' state for the status page.

import (
	"context"
	"io"
	"net/http"
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/fixedgate/fixedgate/proxy/health"
)

// runChecks probes every backend of each route that has a `check:` until ctx ends: GET path,
// any status below 500 is a success. Results feed the same outlier detection as live traffic,
// so a dead backend is ejected before a customer's request finds it.
func (s *Server) runChecks(ctx context.Context, st *settings) {
	for _, rt := range st.gateway.routes {
		if rt.cfg.Check == nil {
			continue
		}
		go func() {
			t := time.NewTicker(rt.cfg.Check.Interval)
			defer t.Stop()
			for {
				s.checkRoute(ctx, st, rt)
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
}

// routeFleet returns the route's backend addresses: its IP literal, or what its name resolves to.
func (s *Server) routeFleet(ctx context.Context, rt *gwRoute) ([]netip.Addr, error) {
	if rt.literal != nil {
		return rt.literal, nil
	}
	return s.resolver.LookupNetIP(ctx, rt.name)
}

func (s *Server) checkRoute(ctx context.Context, st *settings, rt *gwRoute) {
	timeout := rt.cfg.Check.Timeout
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	fleet, err := s.routeFleet(ctx, rt)
	if err != nil {
		s.log.Warn("health check: cannot resolve upstream", zap.String("upstream", rt.name), zap.Error(err))
		return
	}
	for _, a := range fleet {
		if st.policy.CheckAddr(a, rt.port) != nil {
			continue
		}
		ap := netip.AddrPortFrom(a, rt.port)
		src, err := s.egress.Pick("health-check", a)
		if err != nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		req, _ := http.NewRequestWithContext(cctx, http.MethodGet, "https://"+ap.String()+rt.cfg.Check.Path, nil)
		req.Host = rt.authority
		req.Header.Set("User-Agent", "fixedgate-health-check")
		att := s.health.Start(ap)
		resp, err := s.backendTransport(src, rt.name, ap, false, proxyOut{version: rt.ppVersion, local: rt.ppVersion != 0}).RoundTrip(req)
		if err == nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		if ctx.Err() != nil {
			att.Done(health.Canceled)
			cancel()
			return
		}
		att.Done(outcome(resp, err, cctx))
		cancel()
		if err != nil {
			s.log.Debug("health check failed", zap.String("upstream", rt.name), zap.Stringer("backend", ap), zap.Error(err))
		}
	}
}

// RouteState is one route's fleet as the status page shows it.
type RouteState struct {
	Host, PathPrefix, Upstream string
	Backends                   []netip.Addr // known now (DNS within its TTL), after the SSRF guard
	Ejected                    []netip.Addr // of Backends, ejected by outlier detection now
}

// RouteStates returns every route's fleet, from the resolver's cache (a name not looked up yet
// is looked up, within ctx) and the outlier detection's state.
func (s *Server) RouteStates(ctx context.Context) []RouteState {
	st := s.cur()
	ejected := map[netip.AddrPort]bool{}
	for _, e := range s.health.Ejected() {
		ejected[e.Addr] = true
	}
	out := make([]RouteState, 0, len(st.gateway.routes))
	for _, rt := range st.gateway.routes {
		rs := RouteState{Host: rt.host, PathPrefix: rt.prefix, Upstream: rt.target}
		if fleet, err := s.routeFleet(ctx, rt); err == nil {
			for _, a := range fleet {
				if st.policy.CheckAddr(a, rt.port) != nil {
					continue
				}
				rs.Backends = append(rs.Backends, a)
				if ejected[netip.AddrPortFrom(a, rt.port)] {
					rs.Ejected = append(rs.Ejected, a)
				}
			}
		}
		out = append(out, rs)
	}
	return out
}
