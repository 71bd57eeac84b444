package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/fixedgate/fixedgate/proxy/probe"
	"github.com/fixedgate/fixedgate/proxy/status"
)

// demoProbes are the demo's probes: a customer's CONNECT through the plain listener, and a
// gateway request through the TLS listener, each once a second.
func demoProbes(plainAddr, tlsAddr string, fleetPort int) []probe.Config {
	return []probe.Config{
		{Name: "fleet-connect", URL: fmt.Sprintf("https://%s:%d/", demoFleetName, fleetPort), Via: probe.ViaConnect,
			Listener: plainAddr, User: demoUser, Key: demoKey, Interval: time.Second, Timeout: time.Second},
		{Name: "gateway", URL: "https://" + demoGateway + "/", Via: probe.ViaGateway,
			Listener: tlsAddr, Interval: time.Second, Timeout: time.Second},
	}
}

// statusDoor shows the probes seeing what a customer sees and the status page telling it: the
// fleet dies, the probes go down, the page says outage; an operator posts an incident; the
// fleet comes back, the probes recover, the incident is resolved.
func (d *demo) statusDoor(stateDir string) error {
	d.section("probes and the status page: " + d.statusURL)
	up := func(want float64) func() bool {
		return func() bool {
			m := d.metrics()
			return m.sum("fixedgate_probe_up", `probe="fleet-connect"`) == want && m.sum("fixedgate_probe_up", `probe="gateway"`) == want
		}
	}
	d.check(pollUntil(10*time.Second, up(1)), "both probes up through the proxy's own listeners (fleet-connect: CONNECT on the plain one; gateway: GET on the TLS one)")
	s := d.statusJSON()
	d.check(s.State == "operational", "the page says %q (want operational)", s.State)

	t0 := time.Now()
	for i := range d.fleet.backends {
		if err := d.fleet.setMode(i, demoDown); err != nil {
			return err
		}
	}
	fmt.Fprintf(d.out, "  every fleet backend is down\n")
	d.check(pollUntil(15*time.Second, up(0)), "both probes down after %.1fs, and the proxy's own metrics say so (fixedgate_probe_up 0)", time.Since(t0).Seconds())
	d.check(pollUntil(10*time.Second, func() bool { return d.statusJSON().State == "outage" }), "the page says outage (3 failed runs in a row)")
	if _, err := status.Post(stateDir, "investigating", "Requests to the fleet fail; we are looking into it.", "outage", time.Now()); err != nil {
		return err
	}
	d.check(pollUntil(10*time.Second, func() bool { s := d.statusJSON(); return s.Incident != nil && s.Incident.State == "investigating" }),
		"an operator's update (fixedgate status post --state investigating) is on the page without a reload")

	for i := range d.fleet.backends {
		if err := d.fleet.setMode(i, demoUp); err != nil {
			return err
		}
	}
	t0 = time.Now()
	d.check(pollUntil(20*time.Second, up(1)), "the fleet is back: both probes up after %.1fs", time.Since(t0).Seconds())
	if _, err := status.Post(stateDir, "resolved", "Requests to the fleet succeed again.", "", time.Now()); err != nil {
		return err
	}
	d.check(pollUntil(10*time.Second, func() bool { s := d.statusJSON(); return s.Incident == nil && s.State != "outage" }),
		"resolved: no open incident, the page no longer says outage (%s)", d.statusJSON().State)
	return nil
}

// demoStatus is what the demo reads of /status.json.
type demoStatus struct {
	State    string `json:"state"`
	Incident *struct {
		State string `json:"state"`
	} `json:"incident"`
}

func (d *demo) statusJSON() demoStatus {
	var s demoStatus
	resp, err := http.Get(d.statusURL + ".json")
	if err != nil {
		return s
	}
	defer resp.Body.Close()
	json.NewDecoder(resp.Body).Decode(&s)
	return s
}

// pollUntil polls cond until it holds or d passes (the demo watches another process's state: no
// signal to wait on).
func pollUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}
