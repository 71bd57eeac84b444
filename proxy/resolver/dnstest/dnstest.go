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

	"github.com/miekg/dns"
)

// Server answers A and AAAA queries from its table; unknown names get NXDOMAIN.
type Server struct {
	// Addr is the host:port both transports listen on.
	Addr string

	mu      sync.Mutex
	records map[string]entry
	queries atomic.Int64
	udp     *dns.Server
	tcp     *dns.Server
}

type entry struct {
	addrs []netip.Addr
	ttl   uint32
	rcode int
}

// Start listens on ip (port chosen by the kernel) for UDP and TCP and serves until Close.
func Start(ip string) (*Server, error) {
	s := &Server{records: map[string]entry{}}
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

// Set makes name answer with addrs (A and AAAA by family) and the given TTL in seconds.
func (s *Server) Set(name string, ttl uint32, addrs ...netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records[dns.Fqdn(strings.ToLower(name))] = entry{addrs: addrs, ttl: ttl}
}

// SetRcode makes name answer with rcode (e.g. dns.RcodeServerFailure) and no records.
func (s *Server) SetRcode(name string, rcode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records[dns.Fqdn(strings.ToLower(name))] = entry{rcode: rcode}
}

// Queries returns how many questions the server has answered.
func (s *Server) Queries() int64 { return s.queries.Load() }

// Close stops both transports.
func (s *Server) Close() {
	s.udp.Shutdown()
	s.tcp.Shutdown()
}

// ServeDNS implements dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	s.queries.Add(1)
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	s.mu.Lock()
	e, ok := s.records[strings.ToLower(q.Name)]
	s.mu.Unlock()
	switch {
	case !ok:
		m.Rcode = dns.RcodeNameError
	case e.rcode != 0:
		m.Rcode = e.rcode
	default:
		for _, a := range e.addrs {
			hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: e.ttl}
			switch {
			case a.Is4() && q.Qtype == dns.TypeA:
				hdr.Rrtype = dns.TypeA
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: a.AsSlice()})
			case a.Is6() && q.Qtype == dns.TypeAAAA:
				hdr.Rrtype = dns.TypeAAAA
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
			}
		}
	}
	if _, isUDP := w.RemoteAddr().(*net.UDPAddr); isUDP {
		size := uint16(dns.MinMsgSize)
		if opt := req.IsEdns0(); opt != nil {
			size = opt.UDPSize()
		}
		m.Truncate(int(size))
	}
	w.WriteMsg(m)
}
