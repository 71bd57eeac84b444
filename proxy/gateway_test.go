package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"testing"
)

// countingResolver counts lookups: an IP-literal upstream must never reach DNS.
type countingResolver struct{ n int }

func (r *countingResolver) LookupNetIP(context.Context, string) ([]netip.Addr, error) {
	r.n++
	return nil, errors.New("no DNS in this test")
}

func TestRouteFleet(t *testing.T) {
	for _, tc := range []struct {
		upstream  string
		fleet     []netip.Addr // nil: resolved by name
		authority string
	}{
		{"https://127.0.1.5:8443", []netip.Addr{netip.MustParseAddr("127.0.1.5")}, "127.0.1.5:8443"},
		{"https://[::1]", []netip.Addr{netip.MustParseAddr("::1")}, "[::1]"},
		{"https://api.example.test", nil, "api.example.test"},
	} {
		g, err := newGateway([]RouteConfig{{Host: "gw.test", Upstream: tc.upstream}})
		if err != nil {
			t.Fatal(err)
		}
		rt := g.routes[0]
		res := &countingResolver{}
		s := &Server{resolver: res}
		a, errA := s.routeFleet(context.Background(), rt)
		b, _ := s.routeFleet(context.Background(), rt)
		if rt.authority != tc.authority {
			t.Errorf("%s: authority %q, want %q", tc.upstream, rt.authority, tc.authority)
		}
		if tc.fleet == nil {
			if res.n != 2 || errA == nil {
				t.Errorf("%s: %d lookups (err %v), want 2 failing ones", tc.upstream, res.n, errA)
			}
			continue
		}
		if res.n != 0 || errA != nil || !slices.Equal(a, tc.fleet) {
			t.Errorf("%s: fleet %v (err %v) after %d lookups, want %v and none", tc.upstream, a, errA, res.n, tc.fleet)
		}
		// The same slice every time, so the SSRF-guarded view of it is computed once.
		if !sameSlice(a, b) {
			t.Errorf("%s: a new fleet slice per call", tc.upstream)
		}
	}
}

func TestHostWithoutPort(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"gw.example", "gw.example"},
		{"gw.example:8443", "gw.example"},
		{"gw.example:", "gw.example"},
		{"192.0.2.1:80", "192.0.2.1"},
		{"[2001:db8::1]:443", "2001:db8::1"},
		{"[2001:db8::1]", "2001:db8::1"},
		{"2001:db8::1", "2001:db8::1"},
		{"", ""},
	} {
		if got := hostWithoutPort(tc.in); got != tc.want {
			t.Errorf("hostWithoutPort(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { hostWithoutPort("gw.example") }); n != 0 {
		t.Errorf("hostWithoutPort allocates %v times", n)
	}
}

// chunky hands out its data in reads of at most step bytes, counting the reads.
type chunky struct {
	data  []byte
	step  int
	reads int
}

func (c *chunky) Read(p []byte) (int, error) {
	c.reads++
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.step)], c.data)
	c.data = c.data[n:]
	return n, nil
}

func (c *chunky) Close() error { return nil }

// TestBigReads: a large HTTP/2 body is read from the backend in big steps once a read fills the
// caller's buffer, and every byte arrives in order; a small body is passed through as it is.
func TestBigReads(t *testing.T) {
	data := make([]byte, 3<<20+123)
	for i := range data {
		data[i] = byte(i * 7)
	}
	for _, tc := range []struct {
		name     string
		size     int
		maxReads int // reads of the backend body at most
		takesBuf bool
	}{
		{"small body", 100, 2, false},
		{"large body", len(data), 1 + len(data)/(16<<10) + 2, true},
	} {
		src := &chunky{data: data[:tc.size], step: 1 << 20}
		b := &bigReads{ReadCloser: src}
		var got bytes.Buffer
		p := make([]byte, 16<<10) // ReverseProxy's copy buffer
		took := false
		for {
			n, err := b.Read(p)
			got.Write(p[:n])
			took = took || b.buf != nil
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
		}
		b.Close()
		if !bytes.Equal(got.Bytes(), data[:tc.size]) {
			t.Fatalf("%s: %d bytes out differ from the %d in", tc.name, got.Len(), tc.size)
		}
		if took != tc.takesBuf || b.buf != nil {
			t.Errorf("%s: took a big buffer %v (want %v), still held after Close %v", tc.name, took, tc.takesBuf, b.buf != nil)
		}
		// 16 KiB reads would make one backend read per 16 KiB; big steps make far fewer.
		if tc.takesBuf && src.reads > 1+len(data)/bigBufSize+3 {
			t.Errorf("%s: %d reads of the backend body for %d bytes", tc.name, src.reads, tc.size)
		}
	}
}

func TestGatewayClient(t *testing.T) {
	st := &settings{gw: GatewayConfig{TrustedProxies: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}}}
	for _, tc := range []struct {
		name, remote string
		xff          []string
		want         string // "": not limited
	}{
		{"untrusted peer: its own address, whatever it claims", "192.0.2.1:5000", []string{"198.51.100.9"}, "192.0.2.1"},
		{"trusted peer names the client", "10.1.1.1:5000", []string{"198.51.100.9"}, "198.51.100.9"},
		{"spoofed entries left of the balancer's are not believed", "10.1.1.1:5000", []string{"1.2.3.4, 198.51.100.9"}, "198.51.100.9"},
		{"chain of trusted balancers is walked", "10.1.1.1:5000", []string{"198.51.100.9, 10.2.2.2", "fd00::7"}, "198.51.100.9"},
		{"last of several fields", "10.1.1.1:5000", []string{"203.0.113.1", "198.51.100.9"}, "198.51.100.9"},
		{"mapped IPv6 is unmapped", "10.1.1.1:5000", []string{"::ffff:198.51.100.9"}, "198.51.100.9"},
		{"trusted peer without a client: not limited", "10.1.1.1:5000", nil, ""},
		{"only trusted entries: not limited", "10.1.1.1:5000", []string{"10.3.3.3"}, ""},
		{"garbage where the client should be: not limited", "10.1.1.1:5000", []string{"unknown"}, ""},
	} {
		r := &http.Request{RemoteAddr: tc.remote, Header: http.Header{}}
		for _, v := range tc.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		got, ok := st.gatewayClient(r)
		if !ok {
			got = ""
		}
		if got != tc.want {
			t.Errorf("%s: gatewayClient = %q, want %q", tc.name, got, tc.want)
		}
	}
}
