// Package dnstest runs a real DNS server (miekg/dns, UDP and TCP on one loopback port) whose
// answers a test or the demo programs at run time, like net/http/httptest does for HTTP.
package dnstest

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// DefaultNegativeTTL is the SOA minimum, in seconds, that NXDOMAIN and NODATA answers carry
// until SetNegativeTTL changes it.
const DefaultNegativeTTL = 5

// Server answers A and AAAA queries from its table; unknown names get NXDOMAIN. Negative answers
// (NXDOMAIN, and NOERROR without records of the asked type) carry an SOA in the authority section
// so that clients can cache them for the negative TTL (RFC 2308).
type Server struct {
	// Addr is the host:port both transports listen on.
	Addr string

	mu      sync.Mutex
	records map[string]*entry
	counts  map[string]int64
	negTTL  uint32
	maxUDP  int
	queries atomic.Int64
	tcpQs   atomic.Int64
	udp     *dns.Server
	tcp     *dns.Server
	closed  chan struct{}
	once    sync.Once
}

type entry struct {
	addrs  []netip.Addr
	ttl    uint32
	rcode  int
	subset int    // >0: answer with the next window of this many addresses per family
	next   [2]int // rotation position for A and AAAA
	drop   bool   // never answer
	delay  time.Duration
}

// Start listens on ip (port chosen by the kernel) for UDP and TCP and serves until Close.
func Start(ip string) (*Server, error) {
	s := &Server{records: map[string]*entry{}, counts: map[string]int64{}, negTTL: DefaultNegativeTTL, closed: make(chan struct{})}
	var lastErr error
	for range 10 { // the UDP port must also be free for TCP; retry a few random ports
		pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return nil, fmt.Errorf("dnstest: listen udp: %w", err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			lastErr = err
			continue
		}
		s.Addr = pc.LocalAddr().String()
		udpUp, tcpUp := make(chan struct{}), make(chan struct{})
		s.udp = &dns.Server{PacketConn: pc, Handler: s, NotifyStartedFunc: func() { close(udpUp) }}
		s.tcp = &dns.Server{Listener: ln, Handler: s, NotifyStartedFunc: func() { close(tcpUp) }}
		go s.udp.ActivateAndServe()
		go s.tcp.ActivateAndServe()
		<-udpUp
		<-tcpUp
		return s, nil
	}
	return nil, fmt.Errorf("dnstest: no port free for both udp and tcp: %w", lastErr)
}

func key(name string) string { return dns.Fqdn(strings.ToLower(name)) }

// Set makes name answer with addrs (A and AAAA by family) and the given TTL in seconds. It
// replaces any earlier programming of name, including SetDrop and SetDelay.
func (s *Server) Set(name string, ttl uint32, addrs ...netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records[key(name)] = &entry{addrs: addrs, ttl: ttl}
}

// SetRotating makes name answer like a provider that returns only part of a large fleet: each
// A (or AAAA) answer holds the next subsetSize addresses of that family, wrapping around, so
// successive queries walk through all of addrs.
func (s *Server) SetRotating(name string, ttl uint32, subsetSize int, addrs ...netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records[key(name)] = &entry{addrs: addrs, ttl: ttl, subset: max(subsetSize, 1)}
}

// SetRcode makes name answer with rcode (e.g. dns.RcodeServerFailure) and no records;
// dns.RcodeSuccess gives a NODATA answer and dns.RcodeNameError an NXDOMAIN.
func (s *Server) SetRcode(name string, rcode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records[key(name)] = &entry{rcode: rcode}
}

// SetDrop makes the server ignore questions for name (drop true), so clients time out, or
// answer them again (drop false) as programmed before. Queries are still counted.
func (s *Server) SetDrop(name string, drop bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.records[key(name)]
	if e == nil {
		e = &entry{rcode: dns.RcodeNameError}
		s.records[key(name)] = e
	}
	e.drop = drop
}

// SetDelay makes answers for name wait d before they are sent (0: answer at once). Close cuts
// the wait short.
func (s *Server) SetDelay(name string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.records[key(name)]
	if e == nil {
		e = &entry{rcode: dns.RcodeNameError}
		s.records[key(name)] = e
	}
	e.delay = d
}

// SetNegativeTTL sets the SOA minimum (seconds) sent with NXDOMAIN and NODATA answers.
func (s *Server) SetNegativeTTL(ttl uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.negTTL = ttl
}

// SetMaxUDP caps UDP answers at size bytes (0: no cap) even when the client's EDNS0 buffer is
// larger; bigger answers are truncated (TC set) so the client must retry over TCP.
func (s *Server) SetMaxUDP(size int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxUDP = size
}

// Queries returns how many questions the server has received (both transports).
func (s *Server) Queries() int64 { return s.queries.Load() }

// TCPQueries returns how many of those questions came over TCP.
func (s *Server) TCPQueries() int64 { return s.tcpQs.Load() }

// QueriesFor returns how many questions (any type, both transports) named name.
func (s *Server) QueriesFor(name string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[key(name)]
}

// Close stops both transports.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.closed)
		s.udp.Shutdown()
		s.tcp.Shutdown()
	})
}

// ServeDNS implements dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	s.queries.Add(1)
	_, isUDP := w.RemoteAddr().(*net.UDPAddr)
	if !isUDP {
		s.tcpQs.Add(1)
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)

	s.mu.Lock()
	s.counts[name]++
	e, ok := s.records[name]
	var (
		addrs       []netip.Addr
		ttl         uint32
		rcode       int
		drop        bool
		delay       time.Duration
		negTTL      = s.negTTL
		maxUDP      = s.maxUDP
		family      = 0
		wantV4      = q.Qtype == dns.TypeA
		answersType = q.Qtype == dns.TypeA || q.Qtype == dns.TypeAAAA
	)
	if !wantV4 {
		family = 1
	}
	if ok {
		ttl, rcode, drop, delay = e.ttl, e.rcode, e.drop, e.delay
		for _, a := range e.addrs {
			if answersType && a.Is4() == wantV4 {
				addrs = append(addrs, a)
			}
		}
		if e.subset > 0 && len(addrs) > e.subset {
			start := e.next[family] % len(addrs)
			e.next[family] = (start + e.subset) % len(addrs)
			window := make([]netip.Addr, 0, e.subset)
			for i := range e.subset {
				window = append(window, addrs[(start+i)%len(addrs)])
			}
			addrs = window
		}
	}
	s.mu.Unlock()

	if drop {
		return
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-s.closed:
			t.Stop()
			return
		}
	}
	switch {
	case !ok:
		m.Rcode = dns.RcodeNameError
	case rcode != 0:
		m.Rcode = rcode
	default:
		for _, a := range addrs {
			hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: ttl}
			if a.Is4() {
				hdr.Rrtype = dns.TypeA
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: a.AsSlice()})
			} else {
				hdr.Rrtype = dns.TypeAAAA
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
			}
		}
	}
	if (m.Rcode == dns.RcodeNameError || m.Rcode == dns.RcodeSuccess) && len(m.Answer) == 0 {
		m.Ns = append(m.Ns, &dns.SOA{
			Hdr:     dns.RR_Header{Name: q.Name, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: negTTL},
			Ns:      "ns.dnstest.",
			Mbox:    "hostmaster.dnstest.",
			Serial:  1,
			Refresh: 3600,
			Retry:   600,
			Expire:  86400,
			Minttl:  negTTL,
		})
	}
	if isUDP {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = max(int(opt.UDPSize()), dns.MinMsgSize)
		}
		if maxUDP > 0 {
			size = min(size, max(maxUDP, dns.MinMsgSize))
		}
		m.Truncate(size)
	}
	w.WriteMsg(m)
}
