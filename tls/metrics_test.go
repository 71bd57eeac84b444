package tls

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestCertificateExpiryMetric: one series per certificate name, with the seconds left.
func TestCertificateExpiryMetric(t *testing.T) {
	ca := newCA(t, "files CA")
	m := newManager(t, Config{Files: []FilePair{writePair(t, ca, []string{"a.example.test", "b.example.test"}, nil)}, DefaultName: "a.example.test"})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 1 || mfs[0].GetName() != "fixedgate_tls_certificate_expiry_seconds" {
		t.Fatalf("metric families %v", mfs)
	}
	got := map[string]float64{}
	for _, mt := range mfs[0].GetMetric() {
		got[mt.GetLabel()[0].GetValue()] = mt.GetGauge().GetValue()
	}
	for _, name := range []string{"a.example.test", "b.example.test"} {
		// writePair issues for an hour.
		if v, ok := got[name]; !ok || v < 3000 || v > 3600 {
			t.Errorf("%s: %v (present %v), want about 3600", name, v, ok)
		}
	}
	if len(got) != 2 {
		t.Errorf("series %v, want a.example.test and b.example.test", got)
	}
}

// TestReloadFiles: rewritten files replace the served certificate; a broken file or one that
// drops the default name changes nothing.
func TestReloadFiles(t *testing.T) {
	ca := newCA(t, "files CA")
	fp := writePair(t, ca, []string{"a.example.test"}, nil)
	m := newManager(t, Config{Files: []FilePair{fp}, DefaultName: "a.example.test"})
	srv := startServer(t, "127.0.0.1", m.ServerConfig(nil))
	pool := ca.Pool()
	serial := func() string {
		t.Helper()
		cs, err := dial(t, srv.addr, clientFor(pool, "a.example.test"))
		if err != nil {
			t.Fatal(err)
		}
		srv.next(t)
		return cs.PeerCertificates[0].SerialNumber.String()
	}
	first := serial()
	if err := m.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := serial(); got != first {
		t.Fatalf("reload of unchanged files: serial %s, want %s", got, first)
	}

	next := writePair(t, ca, []string{"a.example.test"}, nil)
	copyFile(t, next.Cert, fp.Cert)
	copyFile(t, next.Key, fp.Key)
	if err := m.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	second := serial()
	if second == first {
		t.Fatal("reload did not replace the certificate")
	}
	if n := len(m.cache.AllMatchingCertificates("a.example.test")); n != 1 {
		t.Fatalf("%d cached certificates for the name after reload, want 1", n)
	}

	other := writePair(t, ca, []string{"b.example.test"}, nil)
	copyFile(t, other.Cert, fp.Cert)
	copyFile(t, other.Key, fp.Key)
	if err := m.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), `no longer cover "a.example.test"`) {
		t.Fatalf("reload dropping the default name: %v", err)
	}
	writeFile(t, fp.Cert, []byte("garbage"))
	if err := m.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "tls.files[0]: load certificate") {
		t.Fatalf("reload of a broken file: %v", err)
	}
	if got := serial(); got != second {
		t.Fatalf("after failed reloads: serial %s, want %s", got, second)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, to, b)
}
