package main

// The proxy's /metrics as the demo reads them: sums and deltas of counters.

import (
	"bufio"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// demoMetrics is one scrape of the proxy's /metrics: series ("name{labels}") → value.
type demoMetrics map[string]float64

var metricLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$`)

// metrics scrapes the admin listener; a failed scrape is empty (the checks then fail).
func (d *demo) metrics() demoMetrics {
	m := demoMetrics{}
	resp, err := http.Get(d.metricsURL)
	if err != nil {
		return m
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if p := metricLine.FindStringSubmatch(sc.Text()); p != nil {
			if v, err := strconv.ParseFloat(p[3], 64); err == nil {
				m[p[1]+p[2]] = v
			}
		}
	}
	return m
}

func (d *demo) metric(name string, labels ...string) float64 { return d.metrics().sum(name, labels...) }

// sum adds the samples of name whose labels contain every one of labels.
func (m demoMetrics) sum(name string, labels ...string) float64 {
	var total float64
	for series, v := range m {
		n, l, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		ok := true
		for _, want := range labels {
			ok = ok && strings.Contains(l, want)
		}
		if ok {
			total += v
		}
	}
	return total
}

// counterDelta is how much each series of a counter grew between two scrapes.
type counterDelta struct {
	total  float64
	series map[string]float64 // labels → growth
}

func (m demoMetrics) delta(before demoMetrics, name string) counterDelta {
	d := counterDelta{series: map[string]float64{}}
	for series, v := range m {
		n, l, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		if g := v - before[series]; g > 0 {
			d.series["{"+l] = g
			d.total += g
		}
	}
	return d
}

func (c counterDelta) String() string {
	if c.total == 0 {
		return "none"
	}
	var parts []string
	for l, g := range c.series {
		parts = append(parts, fmt.Sprintf("%.0f %s", g, l))
	}
	slices.Sort(parts)
	return fmt.Sprintf("%.0f (%s)", c.total, strings.Join(parts, ", "))
}
