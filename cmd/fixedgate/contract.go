package main

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/fixedgate/fixedgate/ipranges"
)

// checkAgainstContract is the start-up rule of the contract: every address the proxy is
// configured to bind or dial from must be listed in it for that direction (active now, or
// announced and put into service at its enabled time); a wildcard listener needs public_ips,
// each active as ingress. Without a contract only loopback addresses may be used, so that a
// production setup cannot forget it.
func (c *Config) checkAgainstContract(doc *ipranges.Document, now time.Time) error {
	var errs []error
	if doc == nil {
		for i, l := range c.Listen {
			if a := l.AddrPort().Addr(); !a.IsLoopback() {
				errs = append(errs, fmt.Errorf("listen[%d]: %s is not loopback, so it must be announced in an ip-ranges contract: set ipranges.state (create it with `fixedgate ipranges init`)", i, a))
			}
		}
		for i, a := range c.Egress.Addresses {
			if !a.IsLoopback() {
				errs = append(errs, fmt.Errorf("egress.addresses[%d]: %s is not loopback, so it must be announced in an ip-ranges contract: set ipranges.state", i, a))
			}
		}
		return errors.Join(errs...)
	}
	wildcard := false
	for i, l := range c.Listen {
		a := l.AddrPort().Addr()
		if a.IsUnspecified() {
			wildcard = true
			continue
		}
		if err := listed(doc, a, ipranges.Ingress, now); err != nil {
			errs = append(errs, fmt.Errorf("listen[%d]: %w", i, err))
		}
	}
	if wildcard && len(c.PublicIPs) == 0 {
		errs = append(errs, errors.New("listen: a wildcard address (0.0.0.0 or ::) is only allowed with public_ips: the ingress addresses customers see behind your load balancer or NAT"))
	}
	for i, a := range c.PublicIPs {
		if !doc.InUse(a, ipranges.Ingress, now) {
			errs = append(errs, fmt.Errorf("public_ips[%d]: %s must be active as ingress in the contract (%s)", i, a, statusOf(doc, a, ipranges.Ingress, now)))
		}
	}
	for i, a := range c.Egress.Addresses {
		if err := listed(doc, a, ipranges.Egress, now); err != nil {
			errs = append(errs, fmt.Errorf("egress.addresses[%d]: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

// listed accepts an address that is in use, or announced (it is put into service on time).
func listed(doc *ipranges.Document, a netip.Addr, dir ipranges.Direction, now time.Time) error {
	p := doc.Lookup(a, dir)
	if p == nil {
		return fmt.Errorf("%s is not in the contract as %s: announce it first (`fixedgate ipranges announce --%s %s`); it can be used 14 days later", a, dir, dir, a)
	}
	if p.Status(now) == ipranges.Retired {
		return fmt.Errorf("%s was retired from the contract at %s", a, p.Retired.Format(time.RFC3339))
	}
	return nil
}

func statusOf(doc *ipranges.Document, a netip.Addr, dir ipranges.Direction, now time.Time) string {
	p := doc.Lookup(a, dir)
	if p == nil {
		return "not listed"
	}
	s := string(p.Status(now))
	if p.Status(now) == ipranges.Announced {
		s += " until " + p.Enabled.Format(time.RFC3339)
	}
	return s
}

// egressInUse returns the configured egress addresses the contract allows at now.
func egressInUse(doc *ipranges.Document, addrs []netip.Addr, now time.Time) (in, waiting []string, use []netip.Addr) {
	for _, a := range addrs {
		if doc == nil || doc.InUse(a, ipranges.Egress, now) {
			use = append(use, a.Unmap())
			in = append(in, a.String())
		} else {
			waiting = append(waiting, a.String()+" ("+statusOf(doc, a, ipranges.Egress, now)+")")
		}
	}
	return in, waiting, use
}

func joinOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
