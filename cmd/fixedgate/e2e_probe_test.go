package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// startProbedGateway starts the gateway fixture with two probes that walk the customer's path:
// one CONNECTs through the plain listener with credentials, one GETs through the TLS listener
// and its route. The connect one counts for readiness.
func startProbedGateway(t *testing.T, f *fixture, fl *fleet, extra string) *proc {
	t.Helper()
	return startGatewayEdit(t, f, fl, "5s", extra, func(cfg string) string {
		plain := strings.SplitN(strings.SplitN(cfg, `{address: "`, 2)[1], `"`, 2)[0]
		tlsAddr := strings.SplitN(strings.SplitN(cfg, `{address: "`, 3)[2], `"`, 2)[0]
		return cfg + fmt.Sprintf(`probes:
  - {name: fleet-connect, url: "https://%s:%d/", via: connect, listener: "%s", user: %s, key: %s, interval: 1s, timeout: 1s, readiness: true}
  - {name: gw, url: "https://%s/", via: gateway, listener: "%s", interval: 1s, timeout: 1s}
`, fleetName, fl.port, plain, testUser, testKey, gwHost, tlsAddr)
	})
}

// TestProbesWalkTheCustomersPath: probes succeed through the proxy's own listeners, fail when
// the fleet is down (and /readyz with them, after 3 failures in a row), and recover; each run is
// a summary line with door=probe.
func TestProbesWalkTheCustomersPath(t *testing.T) {
	f := newFixture(t)
	fl := startFleet(t, 2)
	f.dns.Set(fleetName, 60, fl.addrs(0, 2)...)
	p := startProbedGateway(t, f, fl, "")
	up := func(name string) func() bool {
		return func() bool { return metric(t, p, "fixedgate_probe_up", `probe="`+name+`"`) == 1 }
	}
	waitMetric(t, p, 30*time.Second, "both probes up", func() bool { return up("fleet-connect")() && up("gw")() })
	if n := metric(t, p, "fixedgate_probe_total", `probe="gw"`, `result="success"`); n < 1 {
		t.Errorf("fixedgate_probe_total{probe=gw,result=success} = %v", n)
	}
	if n := metric(t, p, "fixedgate_probe_duration_seconds_count", `probe="fleet-connect"`); n < 1 {
		t.Errorf("no probe duration observed")
	}
	// The probe's requests crossed the listeners like a customer's: the proxy logged them.
	log := p.log()
	for _, want := range []string{`"door":"probe","probe":"fleet-connect"`, `"door":"probe","probe":"gw"`, `"door":"connect","target":"` + fleetName, `"door":"gateway"`} {
		if !strings.Contains(log, want) {
			t.Errorf("log has no %s", want)
		}
	}

	for i, b := range fl.backends { // the fleet dies: no new connections, and the pooled ones go too
		fl.setMode(i, modeDown)
		b.mu.Lock()
		for _, s := range b.srvs {
			s.Close()
		}
		b.mu.Unlock()
	}
	waitMetric(t, p, 30*time.Second, "both probes down", func() bool {
		return metric(t, p, "fixedgate_probe_up", `probe="fleet-connect"`) == 0 && metric(t, p, "fixedgate_probe_up", `probe="gw"`) == 0
	})
	waitMetric(t, p, 30*time.Second, "/readyz failing on the readiness probe", func() bool {
		resp, err := http.Get("http://" + p.admin + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b := body(t, resp)
		return resp.StatusCode == 503 && strings.Contains(b, "probe fleet-connect failed")
	})

	fl.setMode(0, modeUp)
	fl.setMode(1, modeUp)
	waitMetric(t, p, 60*time.Second, "both probes up again", func() bool { return up("fleet-connect")() && up("gw")() })
}

// TestProbeConfigChecked: a probe naming a listener, user, key or route that does not exist is
// refused by validate, naming the key.
func TestProbeConfigChecked(t *testing.T) {
	base := minimalConfig + "  users: [{name: probe, key_sha256: " + keySHA("right") + "}]\n"
	for _, tc := range []struct{ probes, want string }{
		{`[{name: a, url: "https://x.test/", via: connect, listener: "127.0.0.99:1"}]`, "probes[0].listener: 127.0.0.99:1 is not one of listen[]"},
		{`[{name: a, url: "https://x.test/", via: connect, listener: "127.0.0.10:3128", user: probe, key: wrong}]`, "probes[0].key: does not match forward.users[0].key_sha256"},
		{`[{name: a, url: "https://x.test/", via: connect, listener: "127.0.0.10:3128", user: nobody, key: k}]`, `probes[0].user: "nobody" is not a forward.users name`},
		{`[{name: a, url: "https://x.test/", via: gateway, listener: "127.0.0.10:3128"}]`, "via: gateway needs a TLS one"},
		{`[{name: a, url: "https://x.test/", via: connect, listener: "127.0.0.10:3128", interval: 100ms}]`, "probes[0].interval"},
	} {
		_, err := loadConfig(writeConfig(t, base+"probes: "+tc.probes+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.probes, err, tc.want)
		}
	}
	if _, err := loadConfig(writeConfig(t, base+`probes: [{name: a, url: "https://x.test/", via: connect, listener: "127.0.0.10:3128", user: probe, key: right}]`+"\n")); err != nil {
		t.Errorf("a valid probe: %v", err)
	}
}
