package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fixedgate/fixedgate/ipranges"
	"github.com/fixedgate/fixedgate/proxy/status"
)

// cmdStatus is `fixedgate status post`: an incident update, written beside the contract, that
// the running proxy shows without a reload.
func cmdStatus(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "post" {
		fmt.Fprintln(stderr, "usage: fixedgate status post --config FILE --state investigating|identified|monitoring|resolved --message TEXT [--impact degraded|outage]")
		return errUsage
	}
	fs := newFlags("status post", stderr)
	path := fs.String("config", "", "the proxy's config file (the incidents live beside its ipranges.state)")
	state := fs.String("state", "", "investigating, identified, monitoring or resolved")
	message := fs.String("message", "", "what customers should know, in a sentence or two")
	impact := fs.String("impact", "", "degraded or outage (default: as the open incident, or degraded)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *path == "" || *state == "" || *message == "" {
		fmt.Fprintln(stderr, "fixedgate status post: --config, --state and --message are required")
		return errUsage
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	dir := cfg.stateDir()
	if dir == "" {
		return errors.New("status post: the config sets no ipranges.state; incident updates are kept beside the contract")
	}
	inc, err := status.Post(dir, *state, *message, *impact, time.Now())
	if err != nil {
		return err // it says what it was doing
	}
	u := inc.Latest()
	fmt.Fprintf(stdout, "posted to incident %s: %s (%s) at %s; %d update(s)\n", inc.ID, u.State, u.Impact, u.At.Format(time.RFC3339), len(inc.Updates))
	return nil
}

// statusSource is what the status page reports, read from the running process at each request.
func (a *app) statusSource() status.Source {
	return status.Source{
		Probes: func() []status.ProbeStatus {
			ps := a.probes.Statuses()
			out := make([]status.ProbeStatus, len(ps))
			for i, p := range ps {
				out[i] = status.ProbeStatus{Name: p.Name, Up: p.Up, Checked: p.Checked, LastFailure: p.LastFailure,
					ConsecutiveFailures: p.ConsecutiveFailures, LastError: p.LastError}
				for j, w := range p.Windows {
					out[i].Windows[j] = status.Window(w)
				}
				for _, h := range p.Hours {
					out[i].Hours = append(out[i].Hours, status.Hour(h))
				}
			}
			return out
		},
		Routes: func() []status.RouteStatus {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			rs := a.proxy.RouteStates(ctx)
			out := make([]status.RouteStatus, len(rs))
			for i, r := range rs {
				out[i] = status.RouteStatus{Host: r.Host, PathPrefix: r.PathPrefix, Upstream: r.Upstream,
					Backends: len(r.Backends), Ejected: len(r.Ejected), Healthy: len(r.Backends) - len(r.Ejected)}
				for _, b := range r.Backends {
					out[i].Addresses = append(out[i].Addresses, status.BackendStatus{Addr: b, Ejected: containsAddr(r.Ejected, b)})
				}
			}
			return out
		},
		Contract: a.contractChanges(),
	}
}

func containsAddr(as []netip.Addr, a netip.Addr) bool {
	for _, x := range as {
		if x == a {
			return true
		}
	}
	return false
}

// contractChanges lists the contract's addresses announced and not live yet, and those retiring;
// nil without a contract.
func (a *app) contractChanges() func() []status.ContractChange {
	if a.contract == nil {
		return nil
	}
	return func() []status.ContractChange {
		now := time.Now()
		var out []status.ContractChange
		for _, p := range a.contract.Current().Prefixes {
			c := status.ContractChange{CIDR: p.CIDR.String(), Direction: string(p.Direction)}
			switch p.Status(now) {
			case ipranges.Announced:
				c.Status, c.At = status.ContractAnnounced, p.Enabled
			case ipranges.Draining:
				c.Status, c.At = status.ContractDraining, *p.Retired
			default:
				continue
			}
			out = append(out, c)
		}
		return out
	}
}

// startStatus opens the incidents beside the contract and builds the status pages: the full one
// for the admin listener, the public one (shown while status.public is on) for the proxy's.
func (a *app) startStatus(reg prometheus.Registerer) {
	a.incidents = status.OpenStore(a.cfg.stateDir(), a.log.Named("status"))
	conf := func() status.Config { return a.current.Load().Status }
	src := a.statusSource()
	a.statusAdmin = status.NewHandler(src, a.incidents, conf, false)
	a.statusPublic = status.NewHandler(src, a.incidents, conf, true)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "fixedgate_status_update_overdue",
		Help: "1 while an incident is open and its last update is older than status.update_interval: post an update.",
	}, func() float64 {
		if a.statusAdmin.Overdue() {
			return 1
		}
		return 0
	}))
}

// statusURLs are where the status page is, for the logs and the demo.
func (a *app) statusURLs() string {
	var b strings.Builder
	if a.cfg.Admin.Listen != "" {
		fmt.Fprintf(&b, "http://%s%s", a.cfg.Admin.Listen, status.PathHTML)
	}
	return b.String()
}
