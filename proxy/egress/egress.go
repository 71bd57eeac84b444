// Package egress dials outbound connections from the proxy's fixed source addresses, so that
// origins and partners only ever see the IPs published for them. The source is chosen per client
// identity with rendezvous hashing: one customer keeps one egress IP while the set is unchanged,
// and adding an address moves only the identities that now hash to it.
package egress

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"
)

// Config is the `egress:` section of the configuration.
type Config struct {
	// Addresses are the outbound source IPs; empty lets the kernel choose (development only).
	Addresses []netip.Addr `yaml:"addresses"`
}

// Validate checks the section without touching the network.
func (c Config) Validate() error {
	seen := map[netip.Addr]bool{}
	for i, a := range c.Addresses {
		switch {
		case !a.IsValid():
			return fmt.Errorf("addresses[%d]: empty", i)
		case a.Zone() != "":
			return fmt.Errorf("addresses[%d]: %s: zones are not supported", i, a)
		case a.IsUnspecified() || a.IsMulticast():
			return fmt.Errorf("addresses[%d]: %s is not a unicast address", i, a)
		case seen[a.Unmap()]:
			return fmt.Errorf("addresses[%d]: %s is listed twice", i, a)
		}
		seen[a.Unmap()] = true
	}
	return nil
}

// ErrNoFamily is returned when no egress address has the destination's IP family.
var ErrNoFamily = errors.New("no egress address of the destination's IP family")

// ErrNoneActive is returned when egress addresses are configured but none is in use now (all
// still announced, or retired): the kernel must not pick a source the contract does not list.
var ErrNoneActive = errors.New("no egress address is in use in the contract now")

// Dialer opens TCP connections from one of the configured source addresses.
type Dialer struct {
	addrs      atomic.Pointer[[]netip.Addr]
	configured bool         // addresses were configured: an empty active set refuses, never lets the kernel choose
	timeout    atomic.Int64 // time.Duration; a reload may change it
}

// New returns a Dialer for cfg. It fails when an address is not configured on this host, since
// dialling from it would fail for every request later.
func New(cfg Config, dialTimeout time.Duration) (*Dialer, error) {
	addrs := make([]netip.Addr, 0, len(cfg.Addresses))
	for _, a := range cfg.Addresses {
		a = a.Unmap()
		if err := CheckLocal(a); err != nil {
			return nil, err
		}
		addrs = append(addrs, a)
	}
	d := &Dialer{configured: len(addrs) > 0}
	d.timeout.Store(int64(dialTimeout))
	d.addrs.Store(&addrs)
	return d, nil
}

// SetTimeout changes the dial timeout of connections started from now on (limits.dial_timeout
// on a reload).
func (d *Dialer) SetTimeout(t time.Duration) { d.timeout.Store(int64(t)) }

// CheckLocal reports whether a is assigned to this host, by binding a socket to it.
func CheckLocal(a netip.Addr) error {
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, 0)))
	if err != nil {
		return fmt.Errorf("egress address %s is not configured on this host: %w", a, err)
	}
	return ln.Close()
}

// SetActive replaces the set of addresses new connections may use (existing ones are untouched).
// An empty set on a Dialer that was configured with addresses refuses every dial.
func (d *Dialer) SetActive(addrs []netip.Addr) {
	cp := slices.Clone(addrs)
	d.addrs.Store(&cp)
}

// Addresses returns the addresses currently in use.
func (d *Dialer) Addresses() []netip.Addr { return slices.Clone(*d.addrs.Load()) }

// Pick returns the source address for identity when dialling dst. It returns the zero Addr when
// no egress addresses are configured (the kernel picks), and ErrNoFamily when some are but none
// matches dst's family.
func (d *Dialer) Pick(identity string, dst netip.Addr) (netip.Addr, error) {
	addrs := *d.addrs.Load()
	if len(addrs) == 0 {
		if d.configured {
			return netip.Addr{}, fmt.Errorf("dial %s: %w", dst, ErrNoneActive)
		}
		return netip.Addr{}, nil
	}
	dst4 := dst.Unmap().Is4()
	var best netip.Addr
	var bestScore uint64
	for _, a := range addrs {
		if a.Is4() != dst4 {
			continue
		}
		h := fnv.New64a()
		h.Write([]byte(identity))
		h.Write([]byte{0})
		b := a.As16()
		h.Write(b[:])
		if s := h.Sum64(); !best.IsValid() || s > bestScore {
			best, bestScore = a, s
		}
	}
	if !best.IsValid() {
		fam := "IPv6"
		if dst4 {
			fam = "IPv4"
		}
		return netip.Addr{}, fmt.Errorf("dial %s: %w (%s)", dst, ErrNoFamily, fam)
	}
	return best, nil
}

// Dial connects to dst from src (zero src: kernel's choice) within the dial timeout.
func (d *Dialer) Dial(ctx context.Context, src netip.Addr, dst netip.AddrPort) (*net.TCPConn, error) {
	nd := net.Dialer{Timeout: time.Duration(d.timeout.Load()), KeepAlive: 30 * time.Second}
	if src.IsValid() {
		nd.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
		nd.Control = bindNoPort
	}
	network := "tcp4"
	if !dst.Addr().Unmap().Is4() {
		network = "tcp6"
	}
	c, err := nd.DialContext(ctx, network, netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port()).String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}
