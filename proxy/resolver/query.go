package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/zap"
)

// answer is what one lookup (A and AAAA) learnt about a name.
type answer struct {
	addrs  []seenAddr
	nx     bool   // NXDOMAIN
	nodata bool   // NOERROR without A or AAAA records, for both types
	negTTL uint32 // from an SOA in the authority section, if hasSOA
	hasSOA bool
	err    error // the name could not be resolved; transient
}

type seenAddr struct {
	addr netip.Addr
	ttl  uint32
}

// typeResult is the outcome of one query type over the servers.
type typeResult struct {
	ok     bool // a server answered NOERROR or NXDOMAIN
	rcode  int
	addrs  []seenAddr
	negTTL uint32
	hasSOA bool
	err    error
}

var (
	errServFail = errors.New("SERVFAIL")
	errRefused  = errors.New("REFUSED")
)

// query asks s's servers for A and AAAA in parallel and combines the results.
func (r *Resolver) query(ctx context.Context, s *settings, name string) answer {
	var res [2]typeResult
	var wg sync.WaitGroup
	for i, qt := range [2]uint16{dns.TypeA, dns.TypeAAAA} {
		wg.Go(func() { res[i] = r.queryType(ctx, s, name, qt) })
	}
	wg.Wait()

	var ans answer
	for _, t := range res {
		ans.addrs = append(ans.addrs, t.addrs...)
		if t.hasSOA && (!ans.hasSOA || t.negTTL < ans.negTTL) {
			ans.negTTL, ans.hasSOA = t.negTTL, true
		}
	}
	a, aaaa := res[0], res[1]
	switch {
	case len(ans.addrs) > 0:
	case a.ok && a.rcode == dns.RcodeNameError || aaaa.ok && aaaa.rcode == dns.RcodeNameError:
		ans.nx = true
	case a.ok && aaaa.ok:
		ans.nodata = true
	default:
		ans.err = joinErrors(a.err, aaaa.err)
	}
	if ans.err != nil && s.serverNote != "" {
		ans.err = fmt.Errorf("%w (using %s: %s: %s)", ans.err, fallbackServer, resolvConf, s.serverNote)
	}
	return ans
}

// queryType asks the servers in order for one type until one answers NOERROR or NXDOMAIN. Each
// server gets an equal share of what remains of ctx's deadline.
func (r *Resolver) queryType(ctx context.Context, s *settings, name string, qt uint16) typeResult {
	fqdn := dns.Fqdn(name)
	m := new(dns.Msg)
	m.SetQuestion(fqdn, qt)
	m.SetEdns0(ednsSize, false)
	deadline, _ := ctx.Deadline()
	var errs []error
	for i, srv := range s.servers {
		budget := time.Until(deadline) / time.Duration(len(s.servers)-i)
		if budget <= 0 || ctx.Err() != nil {
			break
		}
		sctx, cancel := context.WithTimeout(ctx, budget)
		resp, err := r.exchange(sctx, s, srv, m, name, qt)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("server %s: %w", srv, err))
			continue
		}
		res := typeResult{ok: true, rcode: resp.Rcode}
		res.addrs = extract(resp, fqdn, qt)
		for _, rr := range resp.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				ttl := min(soa.Hdr.Ttl, soa.Minttl)
				if !res.hasSOA || ttl < res.negTTL {
					res.negTTL, res.hasSOA = ttl, true
				}
			}
		}
		return res
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		errs = append(errs, context.DeadlineExceeded)
	}
	return typeResult{err: fmt.Errorf("%s: %w", dns.TypeToString[qt], joinErrors(errs...))}
}

// exchange sends m to srv over UDP, and again over TCP if the answer was truncated, with s's
// clients. It returns an error for anything but a NOERROR or NXDOMAIN answer.
func (r *Resolver) exchange(ctx context.Context, s *settings, srv string, m *dns.Msg, name string, qt uint16) (*dns.Msg, error) {
	resp, err := r.exchangeOn(ctx, s.udp, srv, m)
	if err == nil && resp.Truncated {
		r.count(name, srv, qt, resTruncated, nil)
		resp, err = r.exchangeOn(ctx, s.tcp, srv, m)
	}
	if err == nil {
		if q := resp.Question; len(q) != 1 || q[0].Qtype != qt || !strings.EqualFold(q[0].Name, m.Question[0].Name) {
			err = errors.New("answer does not match the question")
		} else {
			switch resp.Rcode {
			case dns.RcodeSuccess, dns.RcodeNameError:
			case dns.RcodeServerFailure:
				err = errServFail
			case dns.RcodeRefused:
				err = errRefused
			default:
				err = fmt.Errorf("rcode %s", dns.RcodeToString[resp.Rcode])
			}
		}
	}
	r.count(name, srv, qt, classify(resp, err), err)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// exchangeOn is one exchange whose socket is unblocked as soon as ctx ends (miekg/dns only
// applies ctx's deadline, not its cancellation).
func (r *Resolver) exchangeOn(ctx context.Context, c *dns.Client, srv string, m *dns.Msg) (*dns.Msg, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	co, err := c.DialContext(ctx, srv)
	if err != nil {
		return nil, err
	}
	defer co.Close()
	stop := context.AfterFunc(ctx, func() { co.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	resp, _, err := c.ExchangeWithConnContext(ctx, m, co)
	if err != nil && errors.Is(ctx.Err(), context.Canceled) {
		err = context.Canceled
	}
	return resp, err
}

func classify(resp *dns.Msg, err error) result {
	switch {
	case errors.Is(err, errServFail):
		return resServFail
	case errors.Is(err, errRefused):
		return resRefused
	case err != nil && isTimeout(err):
		return resTimeout
	case err != nil:
		return resError
	case resp.Rcode == dns.RcodeNameError:
		return resNXDomain
	}
	return resOK
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// count records one exchange in the metrics and the debug log.
func (r *Resolver) count(name, srv string, qt uint16, res result, err error) {
	t := typeA
	if qt == dns.TypeAAAA {
		t = typeAAAA
	}
	r.met.queries[t][res].Add(1)
	if ce := r.log.Check(zap.DebugLevel, "dns query"); ce != nil {
		fields := []zap.Field{zap.String("name", name), zap.String("server", srv),
			zap.String("type", dns.TypeToString[qt]), zap.String("result", resultNames[res])}
		if err != nil {
			fields = append(fields, zap.String("error", err.Error()))
		}
		ce.Write(fields...)
	}
}

// extract returns the addresses of type qt in resp that belong to fqdn or to the CNAME chain
// starting at it, each with the smallest TTL along its chain.
func extract(resp *dns.Msg, fqdn string, qt uint16) []seenAddr {
	chain := []string{fqdn}
	chainTTL := ^uint32(0)
	for range resp.Answer {
		found := false
		for _, rr := range resp.Answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, chain[len(chain)-1]) {
				chain = append(chain, c.Target)
				chainTTL = min(chainTTL, c.Hdr.Ttl)
				found = true
				break
			}
		}
		if !found {
			break
		}
	}
	inChain := func(owner string) bool {
		for _, n := range chain {
			if strings.EqualFold(owner, n) {
				return true
			}
		}
		return false
	}
	var out []seenAddr
	for _, rr := range resp.Answer {
		var ip net.IP
		switch rr := rr.(type) {
		case *dns.A:
			if qt == dns.TypeA && inChain(rr.Hdr.Name) {
				ip = rr.A
			}
		case *dns.AAAA:
			if qt == dns.TypeAAAA && inChain(rr.Hdr.Name) {
				ip = rr.AAAA
			}
		}
		if a, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, seenAddr{addr: a.Unmap(), ttl: min(rr.Header().Ttl, chainTTL)})
		}
	}
	return out
}

// multiError is errors.Join on one line: "A: …; AAAA: …".
type multiError []error

func (m multiError) Error() string {
	msgs := make([]string, len(m))
	for i, err := range m {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (m multiError) Unwrap() []error { return m }

func joinErrors(errs ...error) error {
	var m multiError
	for _, err := range errs {
		if err != nil {
			m = append(m, err)
		}
	}
	switch len(m) {
	case 0:
		return nil
	case 1:
		return m[0]
	}
	return m
}
