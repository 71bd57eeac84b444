package probe

import (
	"context"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestValidate(t *testing.T) {
	ok := Config{Name: "api", URL: "https://api.test/healthz", Via: ViaConnect, Listener: "127.0.0.10:3128"}
	for _, tc := range []struct {
		edit func(*Config)
		want string // "" valid
	}{
		{func(c *Config) {}, ""},
		{func(c *Config) { c.Via = ViaGateway }, ""},
		{func(c *Config) { c.URL = "http://api.test/" }, ""},
		{func(c *Config) { c.URL = "http://api.test/"; c.Via = ViaGateway }, "must be https://"},
		{func(c *Config) { c.Name = "Bad Name" }, "name:"},
		{func(c *Config) { c.URL = "" }, "url: empty"},
		{func(c *Config) { c.URL = "https://u:p@api.test/" }, "without credentials"},
		{func(c *Config) { c.Via = "tunnel" }, "via:"},
		{func(c *Config) { c.Listener = "" }, "listener: empty"},
		{func(c *Config) { c.User = "probe" }, "key: empty"},
		{func(c *Config) { c.Key = "k" }, "user: empty"},
		{func(c *Config) { c.Interval = 500 * time.Millisecond }, "interval:"},
		{func(c *Config) { c.Interval = 2 * time.Second; c.Timeout = 3 * time.Second }, "timeout:"},
		{func(c *Config) { c.ExpectStatus = 42 }, "expect_status:"},
	} {
		c := ok
		tc.edit(&c)
		err := Validate([]Config{c})
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", c, err, tc.want)
		}
	}
	if err := Validate([]Config{ok, ok}); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Errorf("duplicate names: %v", err)
	}
}

func TestHistoryWindowsAndPercentiles(t *testing.T) {
	now := time.Date(2026, 12, 3, 15, 30, 0, 0, time.UTC)
	var hs history
	// 8 days ago: trimmed. 2 days ago: in 7d only. This hour: 98 fast successes, 2 slow failures.
	hs.record(now.Add(-8*24*time.Hour), false, time.Second)
	hs.record(now.Add(-48*time.Hour), false, time.Second)
	for range 98 {
		hs.record(now, true, 40*time.Millisecond)
	}
	hs.record(now, false, 5*time.Second)
	hs.record(now, false, 5*time.Second)
	if len(hs) != 2 {
		t.Fatalf("%d hours kept, want 2 (older than 7 days trimmed)", len(hs))
	}
	w1 := hs.window(now, time.Hour)
	if w1.Total != 100 || w1.Failures != 2 {
		t.Errorf("1h: %+v", w1)
	}
	if w1.P50 < 30*time.Millisecond || w1.P50 > 50*time.Millisecond {
		t.Errorf("p50 %s, want within the 30-50 ms bucket", w1.P50)
	}
	if w1.P99 < 3*time.Second || w1.P99 > 5*time.Second {
		t.Errorf("p99 %s, want within the 3-5 s bucket", w1.P99)
	}
	if w7 := hs.window(now, 7*24*time.Hour); w7.Total != 101 || w7.Failures != 3 {
		t.Errorf("7d: %+v", w7)
	}
	h := hs.last24(now)
	if len(h) != 24 || h[23].Total != 100 || h[0].Total != 0 || !h[23].Start.Equal(now.Truncate(time.Hour)) {
		t.Errorf("last24: %d hours, last %+v first %+v", len(h), h[23], h[0])
	}
	if percentile(make([]uint32, len(latencyBounds)+1), 0.5) != 0 {
		t.Error("percentile of nothing is not 0")
	}
}

func TestHistoryPersistence(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "probe-history.json")
	now := time.Now()
	var hs history
	hs.record(now, true, 10*time.Millisecond)
	hs.record(now, false, time.Second)
	if err := saveHistory(path, map[string]history{"api": hs}); err != nil {
		t.Fatal(err)
	}
	got, err := loadHistory(path)
	if err != nil || len(got["api"]) != 1 || got["api"][0].Total != 2 || got["api"][0].Failures != 1 {
		t.Fatalf("loaded %+v, %v", got, err)
	}
	if err := os.WriteFile(path, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err = loadHistory(path)
	if err == nil || len(got) != 0 || !strings.Contains(err.Error(), "kept as") {
		t.Fatalf("corrupt file: %v, %v", got, err)
	}
	kept, _ := filepath.Glob(path + ".corrupt-*")
	if len(kept) != 1 {
		t.Fatalf("the corrupt file was not kept aside: %v", kept)
	}
	if b, _ := os.ReadFile(kept[0]); string(b) != "{not json" {
		t.Fatalf("kept %q", b)
	}
}

// TestRunnerGateway runs a gateway probe against a real TLS server standing in for the proxy's
// listener (the proxy itself is tested with probes end to end in cmd/fixedgate): results,
// metrics-independent status, readiness after 3 failures, and recovery.
func TestRunnerGateway(t *testing.T) {
	var status atomic.Int32
	status.Store(200)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host != "gw.test" || r.TLS == nil {
			http.Error(w, "wrong host "+r.Host, 500)
			return
		}
		w.WriteHeader(int(status.Load()))
		io.WriteString(w, "ok")
	}))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	addr := srv.Listener.Addr().String()
	now := time.Now()
	r, err := New([]Config{{Name: "gw", URL: "https://gw.test/healthz", Via: ViaGateway, Listener: addr,
		Interval: time.Hour, Timeout: 5 * time.Second, Readiness: true}},
		Options{Listeners: []Listener{{Address: addr, TLS: true}}, ListenerCA: caPEM, TargetCA: caPEM,
			HistoryPath: filepath.Join(t.TempDir(), "h.json"), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	p := r.probes["gw"]
	// httptest's certificate names example.com: the probe verifies against it by that name.
	p.client.Transport.(*http.Transport).TLSClientConfig.ServerName = "example.com"
	run := func() Status {
		r.run(context.Background(), p)
		return r.Statuses()[0]
	}
	if s := run(); !s.Up || s.ConsecutiveFailures != 0 || s.Windows[0].Total != 1 {
		t.Fatalf("first run: %+v", s)
	}
	status.Store(503)
	for i := 1; i <= 3; i++ {
		s := run()
		if s.Up || s.ConsecutiveFailures != i || !strings.Contains(s.LastError, "status 503, want 200") {
			t.Fatalf("failure %d: %+v", i, s)
		}
		if err := r.Ready(); (err != nil) != (i >= 3) {
			t.Fatalf("after %d failures Ready() = %v", i, err)
		}
	}
	status.Store(200)
	if s := run(); !s.Up || s.Windows[0].Failures != 3 || s.Windows[0].Total != 5 || r.Ready() != nil {
		t.Fatalf("recovered: %+v, ready %v", s, r.Ready())
	}
}

// TestRunnerConnect runs a connect probe through a minimal CONNECT proxy (a stand-in for the
// proxy's listener): the probe sends its credentials and reaches the target through the tunnel.
func TestRunnerConnect(t *testing.T) {
	target := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "up") }))
	t.Cleanup(target.Close)
	var auth atomic.Value
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth.Store(r.Header.Get("Proxy-Authorization"))
		up, err := net.Dial("tcp", target.Listener.Addr().String())
		if err != nil {
			http.Error(w, err.Error(), 502)
			return
		}
		c, _, _ := http.NewResponseController(w).Hijack()
		io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
		go func() { io.Copy(up, c); up.Close() }()
		io.Copy(c, up)
		c.Close()
	}))
	t.Cleanup(proxy.Close)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: target.Certificate().Raw})
	addr := proxy.Listener.Addr().String()
	r, err := New([]Config{{Name: "c", URL: "https://example.com/", Via: ViaConnect, Listener: addr, User: "probe", Key: "k",
		Interval: time.Hour}}, Options{Listeners: []Listener{{Address: addr}}, TargetCA: caPEM, ListenerCA: caPEM})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	r.run(context.Background(), r.probes["c"])
	if s := r.Statuses()[0]; !s.Up {
		t.Fatalf("connect probe: %+v", s)
	}
	if a, _ := auth.Load().(string); a != "Basic cHJvYmU6aw==" {
		t.Fatalf("Proxy-Authorization %q", a)
	}
}

// TestRunnerReconfigure: a reload keeps the results and history of a probe that keeps its name,
// drops those of a removed one, and refuses a bad list without changing anything.
func TestRunnerReconfigure(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	cfg := func(name string) Config {
		return Config{Name: name, URL: "https://gw.test/", Via: ViaGateway, Listener: addr, Interval: time.Hour}
	}
	reg := prometheus.NewRegistry()
	r, err := New([]Config{cfg("a"), cfg("b")}, Options{Listeners: []Listener{{Address: addr, TLS: true}}, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	r.run(context.Background(), r.probes["a"]) // fails (certificate name): a result either way
	r.run(context.Background(), r.probes["b"])
	if err := r.Reconfigure([]Config{cfg("a"), {Name: "bad"}}, nil); err == nil {
		t.Fatal("a bad probe list was accepted")
	}
	if len(r.Statuses()) != 2 {
		t.Fatal("a refused reload changed the probes")
	}
	if err := r.Reconfigure([]Config{cfg("a"), cfg("c")}, nil); err != nil {
		t.Fatal(err)
	}
	st := r.Statuses()
	if len(st) != 2 || st[0].Name != "a" || st[0].Checked.IsZero() || st[0].Windows[0].Total != 1 || st[1].Name != "c" || !st[1].Checked.IsZero() {
		t.Fatalf("after the reload: %+v", st)
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "probe" && l.GetValue() == "b" {
					t.Fatalf("%s still has a series for the removed probe b", mf.GetName())
				}
			}
		}
	}
}
