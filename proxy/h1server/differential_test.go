package h1server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// served is what a handler saw of one request, in the fields that decide how a proxy forwards
// it: if two servers agree on these, they forward the same message.
type served struct {
	Method, URI, Host, Proto string
	Header                   http.Header
	ContentLength            int64
	TransferEncoding         []string
	Close                    bool
	Body                     string
	BodyErr                  bool
}

// twoServers runs this package's Server and net/http's Server side by side on loopback, with
// the same recording handler, so that one connection's bytes can be sent to each.
type twoServers struct {
	ours, theirs string // listener addresses
	mu           sync.Mutex
	seen         map[string][]served // by the client's address
	done         sync.Map            // client address -> chan struct{}, closed when our ServeConn returns
}

func startTwoServers(tb testing.TB) *twoServers {
	ts := &twoServers{seen: map[string][]served{}}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		h := r.Header.Clone()
		delete(h, "Host")   // net/http's server removes it from the map, ReadRequest does not
		delete(h, "Expect") // ours answers 100-continue itself and removes the field, by design
		s := served{Method: r.Method, URI: r.RequestURI, Host: r.Host, Proto: r.Proto, Header: h,
			ContentLength: r.ContentLength, TransferEncoding: r.TransferEncoding, Close: r.Close,
			Body: string(b), BodyErr: err != nil}
		ts.mu.Lock()
		ts.seen[r.RemoteAddr] = append(ts.seen[r.RemoteAddr], s)
		ts.mu.Unlock()
		io.WriteString(w, "ok")
	})
	quiet := log.New(io.Discard, "", 0)
	lnOurs, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	lnTheirs, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ts.ours, ts.theirs = lnOurs.Addr().String(), lnTheirs.Addr().String()
	ours := &Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second, ErrorLog: quiet}
	theirs := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second, ErrorLog: quiet,
		DisableGeneralOptionsHandler: true} // "OPTIONS *" reaches the handler, as with ours
	go theirs.Serve(lnTheirs)
	go func() {
		for {
			c, err := lnOurs.Accept()
			if err != nil {
				return
			}
			ch, _ := ts.done.LoadOrStore(c.RemoteAddr().String(), make(chan struct{}))
			go func() {
				ours.ServeConn(context.Background(), c, nil)
				close(ch.(chan struct{}))
			}()
		}
	}()
	tb.Cleanup(func() {
		lnOurs.Close()
		ours.Close()
		theirs.Close()
	})
	return ts
}

// exchange sends raw on a new connection to addr, half-closes, reads until the server closes,
// and returns what the handler saw on that connection.
func (ts *twoServers) exchange(tb testing.TB, addr string, raw []byte) []served {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	go func() {
		c.Write(raw)
		c.(*net.TCPConn).CloseWrite()
	}()
	if _, err := io.Copy(io.Discard, c); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			tb.Fatalf("server at %s kept the connection open 20s after the client finished", addr)
		}
	}
	local := c.LocalAddr().String()
	if addr == ts.ours {
		// The handler has returned when the connection is closed, and ServeConn soon after.
		ch, _ := ts.done.LoadOrStore(local, make(chan struct{}))
		<-ch.(chan struct{})
		ts.done.Delete(local) // the port may be used again by a later connection
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	s := ts.seen[local]
	delete(ts.seen, local)
	return s
}

// compareWithNetHTTP is the differential check: the requests this package's server hands to
// its handler are the requests net/http's server hands to its handler, field for field, except
// that ours may stop earlier (it refuses more: strict.go). What net/http refuses, ours refuses.
func compareWithNetHTTP(tb testing.TB, ts *twoServers, raw []byte) {
	ours := ts.exchange(tb, ts.ours, raw)
	theirs := ts.exchange(tb, ts.theirs, raw)
	if len(ours) > len(theirs) {
		tb.Fatalf("ours served %d requests, net/http %d, for %q\nours:   %s\ntheirs: %s", len(ours), len(theirs), raw, fmtServed(ours), fmtServed(theirs))
	}
	for i := range ours {
		if !reflect.DeepEqual(ours[i], theirs[i]) {
			tb.Fatalf("request %d of %q differs\nours:   %+v\ntheirs: %+v", i, raw, ours[i], theirs[i])
		}
	}
}

func fmtServed(s []served) string {
	var b strings.Builder
	for _, r := range s {
		fmt.Fprintf(&b, "[%s %s %s CL=%d TE=%v] ", r.Method, r.URI, r.Proto, r.ContentLength, r.TransferEncoding)
	}
	return b.String()
}

// differentialSeeds are request streams where the two servers could part ways: framing,
// pipelining, HTTP/1.0 keep-alive, Expect, and the heads strict.go refuses.
var differentialSeeds = []string{
	"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nT: 1\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nhello\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 40\r\n\r\n" + smuggled,
	"POST / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello" + smuggled,
	"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\nGET /c HTTP/1.0\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabcGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET http://b/x?y HTTP/1.1\r\nHost: c\r\n\r\n",
	"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
	"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
	"GET / HTTP/1.1\nHost: a\n\n",
	"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
	"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	// found by the fuzzer: an absolute-form target does not excuse a missing or malformed Host
	"0 A://0 HTTP/1.1\r\n\r\n",
	"0 A://0 HTTP/1.0\r\nHost:\"\r\n\r\n",
}

// TestDifferentialSeeds runs the differential check on the seeds (the fuzz target's corpus
// replays the same in every test run; this names each case on failure).
func TestDifferentialSeeds(t *testing.T) {
	ts := startTwoServers(t)
	for _, s := range slices.Concat(differentialSeeds, ambiguousHeads()) {
		compareWithNetHTTP(t, ts, []byte(s))
	}
}

// FuzzStricterThanNetHTTP feeds arbitrary bytes as one connection to this package's server and
// to net/http's: ours must serve a prefix of what net/http serves, request for request.
func FuzzStricterThanNetHTTP(f *testing.F) {
	for _, s := range slices.Concat(differentialSeeds, ambiguousHeads()) {
		f.Add([]byte(s))
	}
	ts := startTwoServers(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > 16<<10 {
			return
		}
		compareWithNetHTTP(t, ts, raw)
	})
}
